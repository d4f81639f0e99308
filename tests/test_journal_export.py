"""`atm journal export` and `atm journal verify-export`, as an investigator's office runs them:
the bundle verifies with the public key alone, and any change to it is found; the rows are
those the request selects; no card number anywhere."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile

import pytest

from agent.journal import Journal
from agent.journal_bundle import MEMBERS, SIGNED_MEMBERS, manifest_message, pack
from agent.journal_signing import load_private, parse_public
from agent.journal_verify_export import verify_bundle
from fsm.clock import VirtualClock
from tests.test_journal_query import (
    DOMESTIC,
    DOMESTIC2,
    KEY,
    KEY_HEX,
    OVERSEAS,
    assert_no_card_number,
    atm,
    card_session,
    card_token,
    refused,
)

WINDOW = ("--from", "2026-01-01T00:00Z", "--to", "2026-01-03T00:00Z")
TOKEN = card_token(DOMESTIC, KEY)


@pytest.fixture
def journal(tmp_path):
    """Five sessions of 4 rows (3 of S3: no card read), checkpoints at rows 8, 15 and 19:
    1-4 S1 domestic, 5-8 S2 domestic2, 9-11 S3 no card, 12-15 S4 domestic, 16-19 S5 overseas."""
    path = tmp_path / "journal.db"
    clock = VirtualClock()
    j = Journal(str(path), clock, checkpoint_rows=6, checkpoint_seconds=86_400)
    card_session(j, clock, "atm-0001-000001", DOMESTIC, "2026-01-01T09:00:00Z")
    card_session(j, clock, "atm-0001-000002", DOMESTIC2, "2026-01-01T10:00:00Z", "balance", 0)
    card_session(j, clock, "atm-0001-000003", None, "2026-01-01T11:00:00Z")
    card_session(j, clock, "atm-0001-000004", DOMESTIC, "2026-01-02T09:00:00Z")
    card_session(j, clock, "atm-0001-000005", OVERSEAS, "2026-01-02T10:00:00Z", "deposit", 5_000)
    j.close()
    with sqlite3.connect(path) as db:
        assert [s for (s,) in db.execute("SELECT seq FROM checkpoints ORDER BY seq")] == [8, 15, 19]
    return path


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "atm.toml"
    path.write_text(f'[security]\ncard_key = "{KEY_HEX}"\n')
    return path


def public_hex(journal) -> str:
    proc = atm("journal", "public-key", "--journal", str(journal), "--hex")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def export(journal, out, *args, request="CASE-2026-17"):
    proc = atm("journal", "export", "--journal", str(journal), "--request", request, *WINDOW, *args,
               "-o", str(out), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_no_card_number(out.read_bytes().decode("latin-1"))
    return json.loads(proc.stdout)


def verify_export(bundle, key, *extra):
    return atm("journal", "verify-export", str(bundle), "--public-key", key, *extra)


def members_of(bundle) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        return {name: tar.extractfile(name).read() for name in MEMBERS}  # type: ignore[union-attr]


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def resign(journal, members: dict[str, bytes]) -> bytes:
    """The bundle remade from changed members as someone holding the ATM's key file would:
    the manifest's sha256s updated and signed again. Only the chain can then tell."""
    manifest = json.loads(members["manifest.json"])
    for name in SIGNED_MEMBERS:
        manifest["members"][name] = {"sha256": hashlib.sha256(members[name]).hexdigest(), "bytes": len(members[name])}
    members["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    private = load_private(str(journal) + "-signing.key")
    members["manifest.sig"] = private.sign(manifest_message(members["manifest.json"])).hex().encode() + b"\n"
    return pack(members)


def problem_of(journal, blob: bytes) -> str | None:
    return verify_bundle(blob, "bundle.tar", parse_public(public_hex(journal), "key")).problem


# -- export, then verify-export ------------------------------------------------------------
def test_an_export_verifies_with_the_public_key_alone_and_says_what_was_verified(journal, tmp_path):
    out = tmp_path / "case.tar"
    report = export(journal, out, "--token", TOKEN)
    manifest = report["manifest"]
    assert manifest["request"] == "CASE-2026-17" and manifest["rows"] == 8 and manifest["atm_id"] == "atm-0001"
    assert [s["session"] for s in manifest["sessions"]] == ["atm-0001-000001", "atm-0001-000004"]
    assert report["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    key = public_hex(journal)
    proc = verify_export(out, key, "--json")
    assert proc.returncode == 0, proc.stdout
    verdict = json.loads(proc.stdout)
    assert verdict["ok"] and verdict["problem"] is None and verdict["request"] == "CASE-2026-17"
    assert verdict["rows"] == 8 and verdict["window"] == {
        "from": "2026-01-01T00:00:00.000+00:00",
        "to": "2026-01-03T00:00:00.000+00:00",
    }
    assert any("chain of 15 rows" in c for c in verdict["checked"]), verdict["checked"]
    text = verify_export(out, key)
    assert text.returncode == 0 and text.stdout.startswith("verified: request CASE-2026-17, ATM atm-0001: 8 rows")


def test_the_bundle_holds_the_selected_rows_and_only_the_chain_between_the_checkpoints_around_them(journal, tmp_path):
    out = tmp_path / "case.tar"
    manifest = export(journal, out, "--token", TOKEN)["manifest"]
    m = members_of(out)
    assert [r["seq"] for r in lines(m["rows.jsonl"])] == [1, 2, 3, 4, 12, 13, 14, 15]
    # the genesis to the checkpoint at 8 (S1), then 8 to 15 (S4): S2 and S3 are context; S5 is not there
    assert [r["seq"] for r in lines(m["context.jsonl"])] == [5, 6, 7, 8, 9, 10, 11]
    assert manifest["segments"] == [{"from_checkpoint": 0, "to_checkpoint": 15}]
    assert [c["seq"] for c in lines(m["checkpoints.jsonl"])] == [15]  # one walk from the genesis: 8 not needed
    assert b"atm-0001-000005" not in out.read_bytes()
    assert manifest["filters"] == {"by": "token", "token": TOKEN, "last4": None, "session": None}


def test_rows_after_a_checkpoint_start_there_and_the_checkpoint_before_them_is_signed_too(journal, tmp_path):
    out = tmp_path / "s5.tar"
    manifest = export(journal, out, "--last4", OVERSEAS[-4:])["manifest"]
    assert manifest["segments"] == [{"from_checkpoint": 15, "to_checkpoint": 19}] and manifest["context_rows"] == 0
    assert [c["seq"] for c in lines(members_of(out)["checkpoints.jsonl"])] == [15, 19]
    assert verify_export(out, public_hex(journal)).returncode == 0


@pytest.mark.parametrize(
    "args, sessions",
    [
        (("--token", TOKEN), ["atm-0001-000001", "atm-0001-000004"]),
        (("--last4", DOMESTIC2[-4:]), ["atm-0001-000002"]),
        (("--session", "atm-0001-000003"), ["atm-0001-000003"]),
        (("--token", TOKEN, "--session", "atm-0001-000004"), ["atm-0001-000004"]),
    ],
)
def test_a_card_a_token_last4_or_a_session_select_their_sessions(journal, tmp_path, args, sessions):
    report = export(journal, tmp_path / "out.tar", *args)
    assert [s["session"] for s in report["manifest"]["sessions"]] == sessions
    rows = lines(members_of(tmp_path / "out.tar")["rows.jsonl"])
    assert sorted({r["session"] for r in rows}) == sessions


def test_a_card_number_becomes_its_token_and_appears_nowhere(journal, tmp_path, config):
    out = tmp_path / "card.tar"
    proc = atm("journal", "export", "--journal", str(journal), "--config", str(config), "--request", "R-1",
               *WINDOW, "--card", "-", "-o", str(out), stdin=DOMESTIC + "\n")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    blob = out.read_bytes()
    assert_no_card_number(blob.decode("latin-1"), proc.stdout)
    assert DOMESTIC.encode() not in blob and TOKEN.encode() in blob
    manifest = json.loads(members_of(out)["manifest.json"])
    assert manifest["filters"]["by"] == "card" and manifest["filters"]["token"] == TOKEN
    assert [s["session"] for s in manifest["sessions"]] == ["atm-0001-000001", "atm-0001-000004"]
    by_argument = atm("journal", "export", "--journal", str(journal), "--config", str(config), "--request", "R-2",
                      *WINDOW, "--card", DOMESTIC, "-o", str(tmp_path / "card2.tar"))  # fmt: skip
    assert by_argument.returncode == 0 and DOMESTIC.encode() not in (tmp_path / "card2.tar").read_bytes()
    assert verify_export(out, public_hex(journal)).returncode == 0


# -- changes to the bundle -----------------------------------------------------------------
def test_a_flipped_byte_anywhere_in_the_bundle_is_detected(journal, tmp_path):
    out = tmp_path / "case.tar"
    export(journal, out, "--token", TOKEN)
    blob = out.read_bytes()
    public = parse_public(public_hex(journal), "key")
    missed = [
        i
        for i in range(0, len(blob), 5)
        if verify_bundle(blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :], "b", public).problem is None
    ]
    assert missed == [], f"flipped bytes not detected at offsets {missed[:10]}"


def test_a_flipped_first_middle_or_last_byte_of_each_member_fails_verify_export(journal, tmp_path):
    out = tmp_path / "case.tar"
    export(journal, out, "--token", TOKEN)
    blob, key = out.read_bytes(), public_hex(journal)
    with tarfile.open(out) as tar:
        spots = {(info.name, at) for info in tar for at in (info.offset, info.offset_data,
                 info.offset_data + info.size // 2, info.offset_data + info.size - 1)}  # fmt: skip
    for name, at in sorted(spots):
        bad = tmp_path / f"bad-{at}.tar"
        bad.write_bytes(blob[:at] + bytes([blob[at] ^ 0x20]) + blob[at + 1 :])
        proc = verify_export(bad, key)
        assert proc.returncode == 1, (name, at, proc.stdout, proc.stderr)
        assert proc.stdout.startswith(f"broken: {bad}: ") and proc.stdout.count("\n") == 1, proc.stdout


def test_a_changed_member_is_named(journal, tmp_path):
    out = tmp_path / "case.tar"
    export(journal, out, "--token", TOKEN)
    m = members_of(out)
    m["rows.jsonl"] = m["rows.jsonl"].replace(b'\\"amount\\":10000', b'\\"amount\\":90000', 1)
    assert problem_of(journal, pack(m)) == "rows.jsonl: its sha256 differs from the manifest's: the member was changed"


@pytest.mark.parametrize(
    "change, words",
    [
        ("remove", "row 3 is missing"),
        ("insert", "row 13: its content does not follow"),
        ("append", "row 99 is in the bundle but in no segment"),
        ("swap contents", "row 2: its content does not follow"),
        ("reorder lines", "rows were moved"),
        ("edit and rehash", "does not reach the head signed at row 15"),
    ],
)
def test_rows_removed_added_or_reordered_are_found_by_the_chain_even_with_the_manifest_signed_again(
    journal, tmp_path, change, words
):
    out = tmp_path / "case.tar"
    export(journal, out, "--token", TOKEN)
    m = members_of(out)
    rows = lines(m["rows.jsonl"])
    if change == "remove":
        del rows[2]
    elif change == "insert":  # a row of ours as row 13, the later ones renumbered
        fake = dict(rows[5], seq=13, name="cash_taken")
        rows = rows[:5] + [fake] + [dict(r, seq=r["seq"] + 1) for r in rows[5:]]
    elif change == "append":
        rows.append(dict(rows[-1], seq=99))
    elif change == "swap contents":
        rows[1], rows[2] = dict(rows[2], seq=2, hash=rows[1]["hash"]), dict(rows[1], seq=3, hash=rows[2]["hash"])
    elif change == "reorder lines":
        rows[0], rows[1] = rows[1], rows[0]
    else:  # the data of row 14 changed and every later hash recomputed, as a key holder could
        from agent.journal_chain import link

        assert "withdrawal" in rows[6]["data"]
        rows[6]["data"] = rows[6]["data"].replace("withdrawal", "balance")
        prev = bytes.fromhex(rows[5]["hash"])
        for r in rows[6:]:
            prev = link(prev, r["seq"], r["ts"], r["session"], r["kind"], r["name"], r["intent"], r["data"])
            r["hash"] = prev.hex()
    m["rows.jsonl"] = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows)
    problem = problem_of(journal, resign(journal, m))
    assert problem is not None and words in problem, problem


def test_a_removed_member_and_a_file_that_is_no_bundle_are_broken(journal, tmp_path):
    out = tmp_path / "case.tar"
    export(journal, out, "--token", TOKEN)
    short = io.BytesIO()
    with tarfile.open(out) as src, tarfile.open(fileobj=short, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for info in src:
            if info.name != "context.jsonl":
                dst.addfile(info, src.extractfile(info))
    missing = tmp_path / "missing.tar"
    missing.write_bytes(short.getvalue())
    key = public_hex(journal)
    proc = verify_export(missing, key)
    assert proc.returncode == 1 and "member context.jsonl missing" in proc.stdout, proc.stdout
    for bad, words in ((journal, "not a bundle"), (out, None)):
        if words is None:
            (tmp_path / "cut.tar").write_bytes(out.read_bytes()[:3000])
            bad, words = tmp_path / "cut.tar", "broken"
        proc = verify_export(bad, key)
        assert proc.returncode == 1 and words in proc.stdout and "Traceback" not in proc.stderr, proc


def test_another_key_is_detected(journal, tmp_path):
    out = tmp_path / "case.tar"
    export(journal, out, "--token", TOKEN)
    other = tmp_path / "other.db"
    Journal(str(other), VirtualClock()).close()
    proc = verify_export(out, public_hex(other), "--json")
    assert proc.returncode == 1
    verdict = json.loads(proc.stdout)
    assert not verdict["ok"] and "manifest.json is not signed by key" in verdict["problem"], verdict


# -- refusals --------------------------------------------------------------------------------
def test_an_existing_output_is_never_overwritten(journal, tmp_path):
    out = tmp_path / "case.tar"
    out.write_bytes(b"earlier")
    proc = atm("journal", "export", "--journal", str(journal), "--request", "R", *WINDOW, "--token", TOKEN,
               "-o", str(out))  # fmt: skip
    refused(proc, "exists", "never overwrites")
    assert out.read_bytes() == b"earlier"


def test_rows_no_checkpoint_covers_yet_are_refused(journal, tmp_path):
    with sqlite3.connect(journal) as db:
        db.execute("DELETE FROM checkpoints WHERE seq = 19")
    proc = atm("journal", "export", "--journal", str(journal), "--request", "R", *WINDOW, "--last4",
               OVERSEAS[-4:], "-o", str(tmp_path / "x.tar"))  # fmt: skip
    refused(proc, "no signed checkpoint covers the rows up to 19 yet", "journal.checkpoint_seconds")
    assert not (tmp_path / "x.tar").exists()


def test_a_journal_that_does_not_verify_is_not_exported(journal, tmp_path):
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE entries SET data = '{}' WHERE seq = 6")
    proc = atm("journal", "export", "--journal", str(journal), "--request", "R", *WINDOW, "--token", TOKEN,
               "-o", str(tmp_path / "x.tar"))  # fmt: skip
    refused(proc, "does not verify", "row 6")
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (("--from", "2026-01-01", "--to", "2026-01-02", "-o", "x.tar"), ["--request REF is required"]),
        (("--request", "R", "--to", "2026-01-02", "-o", "x.tar"), ["--from TIME is required"]),
        (("--request", "R", "--from", "2026-01-01", "-o", "x.tar"), ["--to TIME is required"]),
        (("--request", "R", *WINDOW), ["-o FILE is required"]),
        (("--request", "R", "--from", "soon", "--to", "2026-01-02", "-o", "x.tar"), ["--from", "'soon'"]),
        (("--request", "R", "--from", "2026-01-02", "--to", "2026-01-01", "-o", "x.tar"), ["not before"]),
        (("--request", "R", *WINDOW, "--card", DOMESTIC, "-o", "x.tar"), ["--card needs --config"]),
        (("--request", f"case {DOMESTIC}", *WINDOW, "-o", "x.tar"), ["--request", "may be a card number"]),
        (("--request", "R", *WINDOW, "--last4", "12", "-o", "x.tar"), ["--last4"]),
        (("--request", "R", *WINDOW, "--last4", "9999", "-o", "x.tar"), ["no rows match"]),
    ],
)
def test_bad_export_arguments_are_one_line(journal, tmp_path, args, words):
    proc = atm("journal", "export", "--journal", str(journal), *args)
    refused(proc, *words)
    assert not (tmp_path / "x.tar").exists()


def test_bad_verify_export_arguments_are_one_line(journal, tmp_path):
    key = public_hex(journal)
    refused(atm("journal", "verify-export", str(tmp_path / "none.tar"), "--public-key", key), "no bundle at")
    refused(atm("journal", "verify-export", str(journal)), "--public-key KEY is required")
    refused(atm("journal", "verify-export", str(journal), "--public-key", "abc"), "--public-key")
    refused(atm("journal", "export", "--journal", str(tmp_path / "none.db"), "--request", "R", *WINDOW,
                "-o", str(tmp_path / "x.tar")), "no journal at")  # fmt: skip


# -- a journal atm demo wrote ------------------------------------------------------------
def test_a_demo_journal_exports_the_jammed_withdrawal_by_card_and_verifies_with_the_pem_key(tmp_path):
    path = tmp_path / "demo.db"
    demo = atm("demo", "--scenario", "dispenser-jam", "--journal", str(path))
    assert demo.returncode == 0, demo.stderr
    config = tmp_path / "demo.toml"
    config.write_text("")  # the defaults: the demo's card key
    pem = tmp_path / "atm.pub"
    pem.write_text(atm("journal", "public-key", "--journal", str(path)).stdout)
    out = tmp_path / "jam.tar"
    window = ("--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z")
    proc = atm("journal", "export", "--journal", str(path), "--config", str(config), "--request", "JAM-1",
               *window, "--card", DOMESTIC, "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_no_card_number(out.read_bytes().decode("latin-1"))
    rows = lines(members_of(out)["rows.jsonl"])
    assert ("fault", "jam") in [(r["kind"], r["name"]) for r in rows]
    verdict = verify_export(out, str(pem))
    assert verdict.returncode == 0 and "request JAM-1" in verdict.stdout, verdict.stdout
