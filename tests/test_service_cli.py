"""`atm faults` and `atm counters` as a field engineer types them, on journals the demo wrote."""

import getpass
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from agent.journal import Journal
from fsm.clock import VirtualClock

ATM = os.path.join(os.path.dirname(sys.executable), "atm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def atm(*args, timeout=60):
    return subprocess.run([ATM, *args], capture_output=True, text=True, timeout=timeout)


def demo(scenario, journal, *extra):
    proc = atm("demo", "--scenario", scenario, "--journal", str(journal), *extra)
    assert proc.returncode == 0, proc.stderr
    return journal


def as_json(*args):
    proc = atm(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one_line_refusal(proc, *words):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def rows(journal):
    with sqlite3.connect(journal) as db:
        return db.execute("SELECT kind, name, data FROM entries ORDER BY seq").fetchall()


def fault(device, code, state):
    return {"device": device, "code": code, "severity": "error", "state": state, "message": "m", "action": "reset"}


@pytest.fixture
def fault_journal(tmp_path):
    """A journal with a jam raised and cleared, then a chip fault raised and left."""
    path = str(tmp_path / "journal.db")
    clock = VirtualClock()
    journal = Journal(path, clock)
    journal.fault(fault("dispenser", "jam", "raised"))
    clock.advance(60)
    journal.fault(fault("dispenser", "jam", "cleared"))
    clock.advance(3600)
    journal.fault(fault("chip", "chip_unavailable", "raised"))
    journal.close()
    return path


# -- atm faults ---------------------------------------------------------------------------
def test_faults_lists_the_raised_and_cleared_history_with_times(fault_journal):
    report = as_json("faults", "--journal", fault_journal)
    got = [(f["ts"], f["device"], f["code"], f["state"]) for f in report["faults"]]
    assert got == [
        ("2026-01-01T00:00:00.000+00:00", "dispenser", "jam", "raised"),
        ("2026-01-01T00:01:00.000+00:00", "dispenser", "jam", "cleared"),
        ("2026-01-01T01:01:00.000+00:00", "chip", "chip_unavailable", "raised"),
    ]
    assert report["faults"][0]["action"] == "reset" and report["faults"][0]["message"] == "m"
    assert report["journal"] == fault_journal


def test_faults_active_are_the_raised_ones_not_cleared_since(fault_journal):
    report = as_json("faults", "--active", "--journal", fault_journal)
    assert [(f["device"], f["code"]) for f in report["faults"]] == [("chip", "chip_unavailable")]


def test_faults_since_an_iso_time_or_a_relative_one(fault_journal):
    report = as_json("faults", "--since", "2026-01-01T09:00:30+09:00", "--journal", fault_journal)
    assert [f["state"] for f in report["faults"]] == ["cleared", "raised"]
    assert report["since"] == "2026-01-01T00:00:30+00:00"
    assert as_json("faults", "--since", "30m", "--journal", fault_journal)["faults"] == []  # months ago
    now = datetime.now(UTC)
    days = (now - datetime(2026, 1, 1, tzinfo=UTC)).days + 1
    report = as_json("faults", "--since", f"{days}d", "--journal", fault_journal)
    assert len(report["faults"]) == 3


def test_faults_table_is_readable(fault_journal):
    proc = atm("faults", "--journal", fault_journal)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["time", "device", "code", "state", "action", "message"]
    assert lines[1].split()[:5] == ["2026-01-01T00:00:00.000+00:00", "dispenser", "jam", "raised", "reset"]
    assert len(lines) == 4
    none = atm("faults", "--active", "--since", "2026-06-01", "--journal", fault_journal)
    assert none.returncode == 0 and none.stdout.startswith("no active faults since 2026-")


def test_faults_of_the_dispenser_jam_scenario(tmp_path):
    journal = demo("dispenser-jam", tmp_path / "journal.db")
    report = as_json("faults", "--journal", str(journal))
    assert [(f["device"], f["code"], f["state"]) for f in report["faults"]] == [
        ("dispenser", "jam", "raised"),
        ("dispenser", "jam", "cleared"),
    ]
    assert as_json("faults", "--active", "--journal", str(journal))["faults"] == []


@pytest.mark.parametrize("since", ["yesterday", "2h30", "-1h", "0x10m", "", "99999999d", "2026-13-01"])
def test_a_bad_since_is_one_line_and_exit_2(fault_journal, since):
    one_line_refusal(atm("faults", f"--since={since}", "--journal", fault_journal), "--since")


@pytest.mark.parametrize("command", [["faults"], ["counters"], ["counters", "reset"]])
def test_a_journal_that_does_not_exist_is_one_line_and_is_not_made(tmp_path, command):
    missing = tmp_path / "nothing.db"
    one_line_refusal(atm(*command, "--journal", str(missing)), str(missing))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["faults"], ["counters"], ["counters", "reset"]])
def test_a_file_that_is_not_a_journal_is_one_line(tmp_path, command):
    bogus = tmp_path / "journal.db"
    bogus.write_text("not a database, just text\n" * 100)
    one_line_refusal(atm(*command, "--journal", str(bogus)), str(bogus))
    assert bogus.read_text() == "not a database, just text\n" * 100
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    one_line_refusal(atm(*command, "--journal", str(empty)), str(empty))


def test_the_default_journal_is_the_configs_else_the_atm_ids(tmp_path, fault_journal):
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{fault_journal}"\n')
    assert len(as_json("faults", "--config", str(config))["faults"]) == 3
    config.write_text('[atm]\nid = "atm-test-no-such-journal"\n')
    expected = os.path.join(ROOT, "var", "atm-test-no-such-journal", "journal.db")
    one_line_refusal(atm("counters", "--config", str(config)), expected)
    assert not os.path.exists(os.path.dirname(expected))  # never made
    config.write_text('[journal]\npath = ":memory:"\n')
    one_line_refusal(atm("faults", "--config", str(config)), ":memory:")


# -- atm counters --------------------------------------------------------------------------
def cassette(report, cid):
    return next(c for c in report["cassettes"] if c["id"] == cid)


def test_counters_of_a_withdrawal_survive_a_restart(tmp_path):
    journal = str(demo("withdrawal", tmp_path / "journal.db"))
    report = as_json("counters", "--journal", journal)
    reader, dispenser = report["devices"]["card_reader"], report["devices"]["dispenser"]
    assert (reader["cards_inserted"], reader["cards_read"], reader["cards_retained"]) == (1, 1, 0)
    assert (dispenser["dispenses"], dispenser["notes_dispensed"], dispenser["jams"]) == (1, 3, 0)
    a = cassette(report, "A")
    assert (a["denomination"], a["initial"], a["presented"], a["rejected"], a["unknown"], a["count"]) == (
        10_000,
        500,
        3,
        0,
        0,
        497,
    )
    demo("forgotten-cash", journal)  # the agent again, on the same journal: 3 more notes
    report = as_json("counters", "--journal", journal)
    assert report["devices"]["dispenser"]["notes_dispensed"] == 6
    assert report["devices"]["card_reader"]["cards_inserted"] == 2
    assert (cassette(report, "A")["presented"], cassette(report, "A")["count"]) == (6, 494)


def test_counters_of_the_forgotten_card_scenario_count_the_retained_card(tmp_path):
    journal = str(demo("forgotten-card", tmp_path / "journal.db"))
    reader = as_json("counters", "--journal", journal)["devices"]["card_reader"]
    assert (reader["cards_inserted"], reader["cards_read"], reader["cards_retained"]) == (1, 1, 1)


def test_counters_of_the_dispenser_jam_scenario(tmp_path):
    journal = str(demo("dispenser-jam", tmp_path / "journal.db"))
    report = as_json("counters", "--journal", journal)
    dispenser = report["devices"]["dispenser"]
    assert (dispenser["dispenses"], dispenser["notes_dispensed"], dispenser["notes_rejected"]) == (1, 1, 1)
    assert dispenser["jams"] == 1 and report["devices"]["card_reader"]["cards_inserted"] == 2
    a = cassette(report, "A")
    assert (a["initial"], a["presented"], a["rejected"], a["count"]) == (500, 1, 1, 498)


def test_counters_of_forgotten_cash_behind_a_shutter_count_the_retracted_notes(tmp_path):
    rig = tmp_path / "rig.toml"
    rig.write_text(open(os.path.join(ROOT, "rigs", "sim.toml")).read().replace("lcdm2000+emu://", "sim://"))
    journal = str(demo("forgotten-cash", tmp_path / "journal.db", "--rig", str(rig)))
    report = as_json("counters", "--journal", journal)
    dispenser = report["devices"]["dispenser"]
    assert (dispenser["notes_dispensed"], dispenser["notes_retracted"]) == (3, 3)
    a = cassette(report, "A")
    assert (a["presented"], a["retracted"]) == (3, 3)


def test_counters_table_is_readable(tmp_path):
    journal = str(demo("withdrawal", tmp_path / "journal.db"))
    proc = atm("counters", "--journal", journal)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "since 2026-01-01T00:00:00.000+00:00" in lines[0] and "never reset" in lines[0]
    assert ["dispenser", "notes_dispensed", "3"] in [line.split() for line in lines]
    header = next(line for line in lines if line.startswith("cassette"))
    assert header.split() == [
        "cassette",
        "denomination",
        "initial",
        "presented",
        "rejected",
        "retracted",
        "unknown",
        "count",
        "since",
    ]
    assert lines[lines.index(header) + 1].split()[:8] == ["A", "10000", "500", "3", "0", "0", "0", "497"]


def test_counters_reset_is_journalled_and_the_counters_start_again(tmp_path):
    journal = str(demo("withdrawal", tmp_path / "journal.db"))
    before = as_json("counters", "--journal", journal)
    proc = atm("counters", "reset", "--engineer", "Tanaka Hanako", "--journal", journal, "--json")
    assert proc.returncode == 0, proc.stderr
    reset = json.loads(proc.stdout)
    assert reset["engineer"] == "Tanaka Hanako" and reset["counters"]["devices"] == before["devices"]
    kind, name, data = rows(journal)[-1]
    assert (kind, name) == ("event", "counters_reset")
    assert json.loads(data)["engineer"] == "Tanaka Hanako" and json.loads(data)["counts"] == {"A": 497, "B": 1000}
    after = as_json("counters", "--journal", journal)
    assert after["reset"]["engineer"] == "Tanaka Hanako" and after["reset"]["seq"] == reset["seq"]
    assert after["devices"]["dispenser"]["notes_dispensed"] == 0
    a = cassette(after, "A")
    assert (a["initial"], a["presented"], a["count"]) == (497, 0, 497)
    demo("forgotten-cash", journal)
    again = as_json("counters", "--journal", journal)
    assert again["devices"]["dispenser"]["notes_dispensed"] == 3
    assert (cassette(again, "A")["initial"], cassette(again, "A")["presented"]) == (497, 3)


def test_counters_reset_names_the_unix_user_by_default_and_says_so(fault_journal):
    journal = fault_journal
    proc = atm("counters", "reset", "--journal", journal)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("counters reset by " + getpass.getuser())
    assert json.loads(rows(journal)[-1][2])["engineer"] == getpass.getuser()


def test_counters_reset_is_refused_while_an_agent_holds_the_journal(fault_journal):
    journal = fault_journal
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from agent.journal import JournalLock; JournalLock({journal!r}); print(1, flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "1\n"
        before = rows(journal)
        one_line_refusal(atm("counters", "reset", "--journal", journal), f"PID {holder.pid}")
        assert rows(journal) == before
        assert as_json("counters", "--journal", journal)["devices"]["dispenser"]["jams"] == 1  # reading is fine
    finally:
        holder.communicate("\n", timeout=10)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--engineer", "tanaka"], ["--engineer"]),  # without `reset`
        (["reset", "--engineer", ""], ["--engineer"]),
        (["reset", "--engineer", "a\nb"], ["--engineer"]),
        (["reset", "--engineer", "x" * 200], ["--engineer"]),
    ],
)
def test_bad_counters_arguments_are_one_line_and_change_nothing(fault_journal, args, words):
    journal = fault_journal
    before = rows(journal)
    one_line_refusal(atm("counters", *args, "--journal", journal), *words)
    assert rows(journal) == before


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"), reason="needs root to act as another user"
)
def test_an_engineer_who_cannot_write_the_folder_still_reads_a_stopped_agents_journal(tmp_path):
    """The journal is WAL: read-only, SQLite would make a -shm file it may not make there."""
    import subprocess as sp
    import tempfile

    from agent.journal import Journal
    from fsm.clock import VirtualClock

    folder = tempfile.mkdtemp(prefix="atm-ro-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "journal.db")
    journal = Journal(path, VirtualClock())
    journal.event(None, "remote_command", command="status", ok=True)
    journal.close()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from agent.journal_reader import open_readonly, read_entries\n"
        f"print(len(read_entries(open_readonly({path!r}), {path!r})))\n"
    )

    def nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    proc = sp.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, preexec_fn=nobody, cwd="/")
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr[-500:]
    # nothing made by the reader (the lock and the signing key are the writer's)
    assert sorted(os.listdir(folder)) == ["journal.db", "journal.db-signing.key", "journal.db.lock"]
