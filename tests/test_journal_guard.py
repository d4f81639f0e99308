"""One agent per journal, and a journal that cannot be read is refused in one line (exit 2)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.journal import Journal, JournalError
from fsm.clock import VirtualClock

ROOT = Path(__file__).resolve().parent.parent


def atm(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def one_line_error(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atm: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_second_agent_on_the_same_journal_is_refused_with_the_holders_pid(tmp_path):
    journal = tmp_path / "journal.db"
    first = atm("run", "--journal", str(journal), "--no-customers", "--duration", "60")
    try:
        for line in first.stdout:  # up and serving
            if line.startswith("ready:"):
                break
        assert first.poll() is None
        assert (tmp_path / "journal.db.lock").read_text().strip() == str(first.pid)
        before = sqlite3.connect(journal).execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        line = one_line_error(atm("run", "--journal", str(journal), "--no-customers", "--duration", "1"))
        assert f"is in use by another agent (PID {first.pid})" in line and str(journal) in line
        after = sqlite3.connect(journal).execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        assert after >= before  # the second agent wrote nothing of its own
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert first.returncode == 0
    Journal(str(journal), VirtualClock()).close()  # released on exit: the next agent may open it


def test_the_lock_goes_with_a_killed_agent(tmp_path):
    path = str(tmp_path / "j.db")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom agent.journal import Journal\n"
            "from fsm.clock import VirtualClock\nJournal(sys.argv[1], VirtualClock())\n"
            "print('locked', flush=True)\ntime.sleep(60)",
            path,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(JournalError, match=rf"in use by another agent \(PID {child.pid}\)"):
        Journal(path, VirtualClock())
    child.kill()
    child.wait(10)
    Journal(path, VirtualClock()).close()


def _journal_with(tmp_path, sql: str, *args) -> Path:
    path = tmp_path / "journal.db"
    Journal(str(path), VirtualClock()).close()
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()
    return path


def test_an_unreadable_interrupted_intent_is_refused_in_one_line(tmp_path):
    path = _journal_with(
        tmp_path,
        "INSERT INTO entries (ts, session, kind, name, data) VALUES ('t', 's1', 'intent', 'dispense', '{not json')",
    )
    line = one_line_error(atm("run", "--journal", str(path), "--no-customers", "--duration", "2"))
    assert "row 1 (intent 'dispense') is corrupt" in line
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    assert rows == 1  # nothing was recovered or written


def test_a_third_cassette_in_the_journal_is_refused_in_one_line(tmp_path):
    path = tmp_path / "journal.db"
    j = Journal(str(path), VirtualClock())
    j.close()
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO cassettes (id, denomination, count, low, empty) VALUES (?, ?, ?, ?, ?)",
        [("A", 10_000, 500, 10, 0), ("B", 1_000, 1000, 10, 0), ("C", 5_000, 100, 10, 0)],
    )
    db.commit()
    db.close()
    line = one_line_error(atm("run", "--journal", str(path), "--no-customers", "--duration", "2"))
    assert f"journal {path}: cassettes:" in line and "has 2 cassettes" in line


def test_the_lock_file_names_the_pid_of_its_holder(tmp_path):
    path = str(tmp_path / "j.db")
    journal = Journal(path, VirtualClock())
    try:
        assert Path(path + ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(JournalError, match=rf"PID {os.getpid()}"):
            Journal(path, VirtualClock())
    finally:
        journal.close()
