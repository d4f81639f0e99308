"""The journal's hash chain and signed checkpoints: `atm journal verify` finds every kind of
tampering and names the row; a clean, a migrated and a SIGKILLed journal verify."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.journal import Journal
from agent.journal_signing import SigningKeyError, checkpoint_message
from bench.campaign.chain import run_chain_campaign
from devices.dispenser import Cassette
from fsm.clock import VirtualClock
from hw_mocks.customer import Visit
from tests.helpers import RAW_PANS, make_agent, run_visits

ROOT = Path(__file__).resolve().parent.parent
OLD_SCHEMA = """
CREATE TABLE entries (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, session TEXT,
    kind TEXT NOT NULL, name TEXT NOT NULL, intent INTEGER REFERENCES entries(seq), data TEXT NOT NULL);
CREATE TABLE cassettes (id TEXT PRIMARY KEY, denomination INTEGER NOT NULL, count INTEGER NOT NULL,
    low INTEGER NOT NULL, empty INTEGER NOT NULL);
"""


def atm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def verify(path: Path, *extra: str) -> tuple[int, dict]:
    proc = atm("journal", "verify", "--journal", str(path), "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stderr == ""
    return proc.returncode, json.loads(proc.stdout)


def verify_text(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return atm("journal", "verify", "--journal", str(path), *extra)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atm: error: ") and "Traceback" not in proc.stderr
    return lines[0]


def make_journal(tmp_path: Path, sessions: int = 12, checkpoint_rows: int = 10) -> Path:
    """A journal of ``sessions`` withdrawals (6 rows each), checkpointed every 10 rows and at the end."""
    path = tmp_path / "journal.db"
    clock = VirtualClock()
    j = Journal(str(path), clock, checkpoint_rows=checkpoint_rows)
    count = 1000
    for n in range(1, sessions + 1):
        s = f"atm-0001-{n:06d}"
        j.step(s, "card_inserted", masked="411111******1111")
        j.step(s, "chosen", amount=10_000)
        i = j.intent(s, "dispense", plan={"A": 1})
        count -= 1
        j.outcome(i, s, "dispense", cassettes=[Cassette("A", 10_000, count)], ok=True, picked={"A": 1})
        j.step(s, "cash_taken")
        j.event(s, "session_end", outcome="completed")
        clock.advance(5)
    j.close()
    return path


def sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def first_problem(path: Path, *extra: str) -> dict:
    rc, report = verify(path, *extra)
    assert rc == 1 and report["ok"] is False, report
    return report["problems"][0]


# -- intact ------------------------------------------------------------------------------------
def test_a_clean_journal_verifies_with_its_checkpoints(tmp_path):
    path = make_journal(tmp_path)
    rc, report = verify(path)
    assert rc == 0 and report["ok"] and report["problems"] == []
    assert report["rows"] == report["last_seq"] == 72
    assert report["last_checkpoint"]["seq"] == 72 and report["unsigned_rows"] == 0  # close() signed the rest
    assert report["checkpoints"] >= 72 // 10
    text = verify_text(path)
    assert text.returncode == 0 and text.stdout.startswith("intact: 72 rows, head ")


def test_the_chain_is_the_documented_canonical_form(tmp_path):
    """Recomputed here from docs/journal.md's definition, apart from the agent's code."""
    path = make_journal(tmp_path, sessions=2)
    db = sqlite3.connect(path)

    def field(v):
        return "-" if v is None else f"{len(v)}:{v}"

    prev = hashlib.sha256(b"atm journal chain v1").digest()
    for seq, ts, session, kind, name, intent, data, stored in db.execute(
        "SELECT seq, ts, session, kind, name, intent, data, hash FROM entries ORDER BY seq"
    ):
        form = "|".join(
            [str(seq), field(ts), field(session), field(kind), field(name), "-" if intent is None else f"#{intent}"]
            + [field(data)]
        )
        prev = hashlib.sha256(prev + form.encode()).digest()
        assert prev == stored, seq
    seq, ts, head, key_id, public, signature = db.execute("SELECT * FROM checkpoints ORDER BY seq DESC").fetchone()
    assert head == prev.hex() and seq == 12
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
    key.verify(bytes.fromhex(signature), f"atm journal checkpoint v1|{seq}|{head}|{ts}".encode())
    assert checkpoint_message(seq, head, ts) == f"atm journal checkpoint v1|{seq}|{head}|{ts}".encode()
    assert key_id == hashlib.sha256(bytes.fromhex(public)).hexdigest()[:16]


def test_the_key_is_made_0600_and_public_key_prints_it_for_verify(tmp_path):
    path = make_journal(tmp_path, sessions=2)
    key_file = Path(str(path) + "-signing.key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    pem = atm("journal", "public-key", "--journal", str(path))
    assert pem.returncode == 0 and pem.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    hexed = atm("journal", "public-key", "--journal", str(path), "--hex").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", hexed)
    (tmp_path / "atm.pub").write_text(pem.stdout)
    for given in (hexed, str(tmp_path / "atm.pub")):
        rc, report = verify(path, "--public-key", given)
        assert rc == 0 and report["key_source"] == "--public-key", report


# -- each kind of tampering, with the row named ------------------------------------------------------
def test_an_edited_data_is_named(tmp_path):
    path = make_journal(tmp_path)
    sql(path, """UPDATE entries SET data = '{"plan":{"A":9}}' WHERE seq = 15""")
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("edited", 15), problem
    text = verify_text(path)
    assert text.returncode == 1 and text.stdout.startswith("broken at row 15: edited: ")
    assert len(text.stdout.strip().splitlines()) == 1


def test_an_edited_time_is_named(tmp_path):
    path = make_journal(tmp_path)
    sql(path, "UPDATE entries SET ts = '2025-12-31T23:59:59.000+00:00' WHERE seq = 40")
    assert (first_problem(path)["kind"], first_problem(path)["row"]) == ("edited", 40)


def test_a_value_of_another_type_is_an_edit(tmp_path):
    path = make_journal(tmp_path)
    sql(path, "UPDATE entries SET data = CAST(data AS BLOB) WHERE seq = 8")
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("edited", 8), problem


def test_a_deleted_middle_row_is_named(tmp_path):
    path = make_journal(tmp_path)
    sql(path, "DELETE FROM entries WHERE seq = 33")
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("deleted", 33) and "row 33 is missing" in problem["message"]


def test_rows_deleted_behind_the_last_checkpoint_are_a_truncation(tmp_path):
    path = make_journal(tmp_path)
    sql(path, "DELETE FROM entries WHERE seq > 66")
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("truncated", 67), problem
    assert "rows 67 to 72 were deleted" in problem["message"]


def test_an_inserted_row_is_named(tmp_path):
    path = make_journal(tmp_path)
    sql(  # the way SQL would: no hash
        path,
        "INSERT INTO entries (seq, ts, session, kind, name, data) VALUES"
        " (73, '2026-01-01T00:01:00.000+00:00', 'x', 'event', 'session_end', '{}')",
    )
    assert (first_problem(path)["kind"], first_problem(path)["row"]) == ("inserted", 73)


def test_a_row_inserted_in_the_middle_with_the_rest_renumbered_is_named(tmp_path):
    path = make_journal(tmp_path)
    sql(
        path,
        "UPDATE entries SET seq = -seq WHERE seq >= 20",
        "UPDATE entries SET seq = 1 - seq WHERE seq < 0",
        "INSERT INTO entries (seq, ts, session, kind, name, data, hash) VALUES"
        " (20, '2026-01-01T00:00:15.000+00:00', 'atm-0001-000004', 'step', 'chosen', '{}', randomblob(32))",
    )
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("inserted", 20), problem


def test_two_rows_swapped_are_a_reordering(tmp_path):
    path = make_journal(tmp_path)
    columns = ("ts", "session", "kind", "name", "intent", "data")
    db = sqlite3.connect(path)
    a, b = (db.execute(f"SELECT {', '.join(columns)} FROM entries WHERE seq = ?", (s,)).fetchone() for s in (25, 29))
    sets = ", ".join(f"{c} = ?" for c in columns)
    db.execute(f"UPDATE entries SET {sets} WHERE seq = 25", b)
    db.execute(f"UPDATE entries SET {sets} WHERE seq = 29", a)
    db.commit()
    db.close()
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("reordered", 25) and "29" in problem["message"], problem


def test_two_whole_rows_swapped_with_their_hashes_are_a_reordering(tmp_path):
    path = make_journal(tmp_path)
    sql(path, "UPDATE entries SET seq = -1 WHERE seq = 30", "UPDATE entries SET seq = 30 WHERE seq = 31")
    sql(path, "UPDATE entries SET seq = 31 WHERE seq = -1")
    problem = first_problem(path)
    assert (problem["kind"], problem["row"]) == ("reordered", 30), problem


def test_a_chain_rewritten_after_an_edit_is_caught_by_the_next_checkpoint(tmp_path):
    path = make_journal(tmp_path)
    sql(path, """UPDATE entries SET data = '{"plan":{"A":9}}' WHERE seq = 15""")
    from agent.journal_chain import rehash_all

    db = sqlite3.connect(path, isolation_level=None)
    prev = db.execute("SELECT hash FROM entries WHERE seq = 14").fetchone()[0]
    rehash_all(db, 14, prev)  # every later hash recomputed
    db.close()
    problem = first_problem(path)
    assert problem["kind"] == "rewritten" and 15 <= problem["row"] <= 25, problem


def test_a_forged_checkpoint_signature_is_named(tmp_path):
    path = make_journal(tmp_path)
    forged = Ed25519PrivateKey.generate().sign(b"anything").hex()
    sql(path, f"UPDATE checkpoints SET signature = '{forged}' WHERE seq = (SELECT MIN(seq) FROM checkpoints)")
    rc, report = verify(path)
    assert rc == 1 and [p["kind"] for p in report["problems"]] == ["bad_signature"]
    first = report["problems"][0]["row"]
    assert first == sqlite3.connect(path).execute("SELECT MIN(seq) FROM checkpoints").fetchone()[0]


def test_a_checkpoint_moved_to_cover_fewer_rows_does_not_verify(tmp_path):
    path = make_journal(tmp_path)
    sql(path, "DELETE FROM entries WHERE seq > 66", "UPDATE checkpoints SET seq = 66 WHERE seq = 72")
    kinds = [p["kind"] for p in verify(path)[1]["problems"]]
    assert "bad_signature" in kinds


def test_a_wrong_public_key_fails_every_checkpoint(tmp_path):
    path = make_journal(tmp_path)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    rc, report = verify(path, "--public-key", other)
    assert rc == 1 and {p["kind"] for p in report["problems"]} == {"bad_signature"}
    assert len(report["problems"]) == report["checkpoints"]
    text = verify_text(path, "--public-key", other)
    assert text.returncode == 1 and "is not signed by key" in text.stdout


# -- migration -----------------------------------------------------------------------------------
def _old_journal(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executemany(
        "INSERT INTO entries (ts, session, kind, name, intent, data) VALUES (?, ?, ?, ?, ?, ?)",
        [("2025-06-01T10:00:00.000+00:00", f"s{i // 5}", "step", "card_read", None, f'{{"n":{i}}}') for i in range(40)],
    )
    db.commit()
    db.close()
    return path


def test_a_journal_made_before_the_chain_is_refused_by_verify_then_migrated_at_open(tmp_path):
    path = _old_journal(tmp_path)
    line = one_line_error(verify_text(path))
    assert "has no hash chain yet" in line
    j = Journal(str(path), VirtualClock())
    assert j.migrated == 40
    j.step("s9", "card_read", n=40)
    j.close()
    rc, report = verify(path)
    assert rc == 0 and report["rows"] == 41 and report["checkpoints"] == 2  # at the migration and at close
    assert Journal(str(path), VirtualClock()).migrated == 0  # once


# -- the writer ------------------------------------------------------------------------------------------
def test_a_failed_transaction_leaves_the_chain_whole(tmp_path, monkeypatch):
    path = tmp_path / "journal.db"
    j = Journal(str(path), VirtualClock(), checkpoint_rows=3)
    j.step("s1", "card_inserted")
    i = j.intent("s1", "dispense", plan={"A": 1})

    def full_disk(cassettes):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(j, "_write_cassettes", full_disk)
    with pytest.raises(sqlite3.OperationalError):
        j.outcome(i, "s1", "dispense", cassettes=[Cassette("A", 10_000, 9)], ok=True)
    monkeypatch.undo()
    j.outcome(i, "s1", "dispense", cassettes=[Cassette("A", 10_000, 9)], ok=True)
    j.close()
    rc, report = verify(path)
    assert rc == 0 and report["rows"] == 3, report


def test_checkpoints_follow_rows_and_seconds(tmp_path):
    clock = VirtualClock()
    j = Journal(str(tmp_path / "j.db"), clock, checkpoint_rows=50, checkpoint_seconds=30)
    made = []
    j.on_checkpoint = made.append
    for _ in range(3):
        j.step(None, "tick")
        j.flush()
    assert made == []
    clock.advance(31)
    j.step(None, "tick")
    j.flush()  # 30 s since the open: due
    assert [c.seq for c in made] == [4]
    for _ in range(50):
        j.step(None, "tick")
    j.flush()
    assert [c.seq for c in made] == [4, 54]
    j.close()
    assert [c.seq for c in made] == [4, 54]  # nothing new to sign


def test_a_bad_signing_key_file_is_one_line(tmp_path):
    key = tmp_path / "j.db-signing.key"
    key.write_text("not a key")
    key.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM private key"):
        Journal(str(tmp_path / "j.db"), VirtualClock())
    Journal(str(tmp_path / "j.db"), VirtualClock(), signing_key=str(tmp_path / "k")).close()  # the lock was freed
    assert "not an unencrypted PEM" in one_line_error(atm("journal", "public-key", "--key", str(key)))
    key.chmod(0o644)
    assert "others may read it" in one_line_error(atm("journal", "public-key", "--key", str(key)))


def test_bad_input_is_one_line(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not a database" * 100)
    assert "is not a journal" in one_line_error(verify_text(garbage))
    assert "no journal at" in one_line_error(verify_text(tmp_path / "missing.db"))
    path = make_journal(tmp_path, sessions=1)
    bad = tmp_path / "bad.pub"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert "--public-key" in one_line_error(verify_text(path, "--public-key", str(bad)))
    assert "--public-key" in one_line_error(verify_text(path, "--public-key", "zz"))


# -- the agent: telemetry copies, crashes ---------------------------------------------------------------
def test_the_agent_sends_every_checkpoint_as_telemetry(tmp_path):
    journal = str(tmp_path / "journal.db")
    run = run_visits(
        [Visit("withdrawal", amount=30_000), Visit("balance")], {"journal": {"checkpoint_rows": 10}}, journal=journal
    )
    run.agent.stop()
    sent = [e for e in run.agent.telemetry.publishers[0].topics("event") if e["event"] == "journal_checkpoint"]
    db = sqlite3.connect(journal)
    table = db.execute("SELECT seq, head, ts, key_id, signature FROM checkpoints ORDER BY seq").fetchall()
    assert len(table) >= 2
    assert [(e["rows"], e["head"], e["signed_at"], e["key_id"], e["signature"]) for e in sent] == table
    (last,) = db.execute("SELECT MAX(seq) FROM entries").fetchone()
    assert sent[-1]["rows"] == last  # the stop signed every row, and told the centre
    assert verify(Path(journal))[0] == 0


def test_an_in_memory_journal_still_signs(tmp_path):
    agent = make_agent({"journal": {"checkpoint_rows": 5}})
    agent.journal.step(None, "x")
    agent.journal.checkpoint()
    sent = [e for e in agent.telemetry.publishers[0].topics("event") if e["event"] == "journal_checkpoint"]
    assert [e["rows"] for e in sent] == [agent.journal.head()[0]]
    agent.close()


def test_kill_9_at_105_random_points_and_verify_passes_after_every_one(tmp_path):
    report = run_chain_campaign(str(tmp_path / "journal.db"), kills=105, seed=14, subprocess_every=15)
    assert report.failures == [], report.summary()
    assert report.kills == 105 and report.verified == 106, report.summary()
    assert report.by_subprocess >= 8 and report.checkpoints > 100 and report.during_startup > 10, report.summary()


# -- no card data ---------------------------------------------------------------------------------------
def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_no_card_number_in_any_output(tmp_path):
    journal = tmp_path / "journal.db"
    run = run_visits([Visit("withdrawal", amount=30_000), Visit("balance")], journal=str(journal))
    run.agent.stop()
    outputs = [
        verify_text(journal),
        verify_text(journal, "--json"),
        atm("journal", "public-key", "--journal", str(journal)),
    ]
    outputs.append(atm("journal", "public-key", "--journal", str(journal), "--json"))
    sql(journal, "UPDATE entries SET ts = 'x' WHERE seq = 3")
    outputs += [verify_text(journal), verify_text(journal, "--json")]
    assert outputs[-1].returncode == 1
    events = [e for e in run.agent.telemetry.publishers[0].topics("event") if e["event"] == "journal_checkpoint"]
    texts = [p.stdout + p.stderr for p in outputs] + [json.dumps(events)]
    for text in texts:
        for pan in RAW_PANS:
            assert pan not in text
        runs = re.findall(r"(?<![0-9A-Za-z])[0-9]{13,19}(?![0-9A-Za-z])", text)
        assert [r for r in runs if _luhn(r)] == [], text
    assert events and os.path.getsize(journal) > 0


def test_an_idle_atm_signs_its_last_rows_within_checkpoint_seconds(tmp_path):
    """Rows written, then nothing for a night: a timer signs them (and sends the copy)."""
    from tests.helpers import make_agent

    agent = make_agent({"journal": {"checkpoint_seconds": 60}}, journal=str(tmp_path / "j.db"))
    agent.start()
    agent.loop.run_until_idle(max_time=agent.clock.now() + 5)
    agent.journal.event(None, "something")
    agent.journal.flush()
    (seq, _) = agent.journal.head()
    agent.loop.run_until_idle(max_time=agent.clock.now() + 130)  # idle: no other write
    assert agent.journal.last_checkpoint().seq >= seq
    sent = [
        r["payload"] for r in agent.recorder.of_type("telemetry") if r["payload"].get("event") == "journal_checkpoint"
    ]
    assert sent and sent[-1]["seq"] >= seq
    agent.stop()


def test_a_signed_journal_whose_key_file_is_lost_or_changed_is_refused_and_no_key_is_made(tmp_path):
    from agent.errors import SigningKeyError
    from agent.journal import Journal
    from agent.journal_signing import load_or_create
    from fsm.clock import VirtualClock

    path = str(tmp_path / "j.db")
    journal = Journal(path, VirtualClock())
    journal.event(None, "something")
    journal.close()  # signs a checkpoint
    key = tmp_path / "j.db-signing.key"
    saved = key.read_bytes()
    key.unlink()
    with pytest.raises(SigningKeyError, match="is missing: restore it"):
        Journal(path, VirtualClock())
    assert not key.exists()  # never made again
    other = tmp_path / "other.key"
    load_or_create(str(other))  # a key of its own
    with pytest.raises(SigningKeyError, match="signed with key .* holds key"):
        Journal(path, VirtualClock(), signing_key=str(other))
    key.write_bytes(saved)
    key.chmod(0o600)
    Journal(path, VirtualClock()).close()  # the journal's own key: fine
