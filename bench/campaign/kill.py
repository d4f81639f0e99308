"""A randomized SIGKILL campaign against the agent, with an audit after every kill and restart.

Written apart from the agent: it reads the journal with plain SQL and its own
idea of what must hold, never with the agent's journal code.

After each kill (nothing is running):
- the cassette counts equal the initial counts minus every note out in the
  dispense outcome rows (a successful replenish resets them to what it loaded).

After each restart (the new agent says it is ready):
- no intent written before the restart is left without an outcome;
- no session begun before the restart is left without its end;
- at any time, once a dispense or a session was found interrupted (or a
  dispense went unanswered), no dispense is sent before a replenishment.

And after each kill, ``atm journal verify`` passes (bench/campaign/chain.py runs it): the
hash chain and the signed checkpoints are whole.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.campaign.chain import verify_journal

ROOT = Path(__file__).resolve().parents[2]
INITIAL = {"A": 2_000, "B": 2_000}  # bench/campaign/kill_child.py's cassettes
READY_TIMEOUT = 30.0


@dataclass
class CampaignReport:
    kills: int = 0
    during_startup: int = 0
    mismatches: list[str] = field(default_factory=list)
    restart_failures: list[str] = field(default_factory=list)
    chain_failures: list[str] = field(default_factory=list)  # atm journal verify after a kill
    windows: Counter = field(default_factory=Counter)  # the last journal row before each kill
    dispense_to_present: int = 0  # kills after a dispense outcome, before the present
    interrupted_sessions: int = 0
    recovered_dispenses: int = 0
    sessions: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.kills} kills ({self.during_startup} during start-up, {self.dispense_to_present} between a"
            f" dispense and its present), {self.sessions} sessions, {self.interrupted_sessions} sessions and"
            f" {self.recovered_dispenses} dispenses recovered, {len(self.mismatches)} mismatches,"
            f" {len(self.restart_failures)} restart failures, {len(self.chain_failures)} verify failures,"
            f" {self.seconds:.0f} s"
        )


class Auditor:
    """Reads the journal as it grows (only the new rows each time) and keeps what must hold."""

    def __init__(self, path: str):
        self.path = path
        self.seq = 0  # the last row read
        self.counts = dict(INITIAL)
        self.unanswered: dict[int, str] = {}  # intent seq -> name
        self.open_sessions: dict[str, int] = {}  # session -> first row
        self.blocked_by: int | None = None
        self.blocking: list[str] = []
        self.last: tuple[str, str] = ("", "")
        self.table: dict[str, int] = {}  # the cassettes table at the last read
        self.since_dispense: str | None = None  # what followed the last dispense outcome, if nothing else did
        self.sessions = self.interrupted_sessions = self.recovered_dispenses = 0

    def read(self) -> None:
        if not Path(self.path).exists():
            return
        db = sqlite3.connect(self.path, timeout=10)
        try:
            rows = db.execute(
                "SELECT seq, session, kind, name, intent, data FROM entries WHERE seq > ? ORDER BY seq", (self.seq,)
            ).fetchall()
            self.table = dict(db.execute("SELECT id, count FROM cassettes").fetchall())
        finally:
            db.close()
        for seq, session, kind, name, intent, data in rows:
            self._row(seq, session, kind, name, intent, json.loads(data))

    def _row(self, seq: int, session: str | None, kind: str, name: str, intent: int | None, data: dict) -> None:
        self.seq, self.last = seq, (kind, name)
        if session is not None:
            self.open_sessions.setdefault(session, seq)
        if kind == "intent":
            self.unanswered[seq] = name
            if name == "dispense" and self.blocked_by is not None:
                self.blocking.append(f"dispense {seq} sent while withdrawals were blocked by row {self.blocked_by}")
        elif kind == "outcome":
            self.unanswered.pop(intent or 0, None)
            if name == "dispense":
                for cid, n in (data.get("picked") or {}).items():
                    self.counts[cid] -= n
                if data.get("reconcile") == "required":
                    self.blocked_by = self.blocked_by or seq
            elif name == "replenish" and data.get("ok"):
                self.counts = {c["id"]: c["count"] for c in data["after"]}
                self.blocked_by = None
        elif kind == "recovery":
            self.interrupted_sessions += name == "session"
            self.recovered_dispenses += name == "dispense"
            if name == "dispense" or (name == "session" and data.get("reconcile")):
                self.blocked_by = self.blocked_by or seq
        elif kind == "event" and name == "session_end" and session is not None:
            self.open_sessions.pop(session, None)
            self.sessions += 1
        if (kind, name) == ("outcome", "dispense"):
            self.since_dispense = "dispense"
        elif name in ("present_cash", "purge_stacker", "session_end"):
            self.since_dispense = None

    def counts_problems(self) -> list[str]:
        """The cassette table against the notes out in the outcome rows (nothing running)."""
        self.read()
        if not self.table and not self.seq:  # killed before it saved anything
            return []
        return [] if self.table == self.counts else [f"cassettes {self.table} but the outcome rows say {self.counts}"]

    def restart_problems(self, boundary: int) -> list[str]:
        """What a restart must have closed: everything written up to ``boundary``."""
        self.read()
        problems = [
            f"intent {s} ({n}) has no outcome after the restart" for s, n in self.unanswered.items() if s <= boundary
        ]
        problems += [f"session {ses} never ended" for ses, first in self.open_sessions.items() if first <= boundary]
        return problems

    def blocking_problems(self) -> list[str]:
        """No dispense between an interruption that needs a count and the next replenishment."""
        self.read()
        return list(self.blocking)


class Child:
    """One agent process on the journal."""

    def __init__(self, journal: str, seed: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.campaign.kill_child", journal, str(seed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started = time.monotonic()

    def wait_ready(self, timeout: float) -> str | None:
        """None once ready; else why not."""
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), True)
        line = _readline(self.proc, timeout)
        if line == "ready":
            return None
        self.proc.kill()
        _out, err = self.proc.communicate(timeout=10)
        return f"no ready (exit {self.proc.returncode}): {err.strip().splitlines()[-1:] or line!r}"

    def kill(self) -> str | None:
        """SIGKILL it; None if it was still running, else how it had ended."""
        if self.proc.poll() is not None:
            _out, err = self.proc.communicate(timeout=10)
            return f"exited by itself ({self.proc.returncode}): {err.strip().splitlines()[-1:]}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=10)
        return None


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


def _last_row(path: str) -> tuple[str, str]:
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute("SELECT kind, name FROM entries ORDER BY seq DESC LIMIT 1").fetchone() or ("", "")
    finally:
        db.close()


def _kill_at_a_dispense(child: Child, path: str, timeout: float = 5.0) -> None:
    """Wait (polling the journal) until a dispense has just been answered, or its card
    is being given back before the cash."""
    aims = {("intent", "dispense"), ("outcome", "dispense"), ("intent", "eject_card")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.proc.poll() is None:
        try:
            if _last_row(path) in aims:
                return
        except sqlite3.Error:
            pass


def run_campaign(
    journal: str, kills: int, seed: int = 1, startup_share: float = 0.2, aimed_share: float = 0.3
) -> CampaignReport:
    """``kills`` SIGKILLs: at random moments, during start-up, and aimed at the dispense;
    each followed by the audits."""
    rng = random.Random(seed)
    report = CampaignReport()
    audit = Auditor(journal)
    began = time.monotonic()
    audit.read()
    boundary = audit.seq
    child = Child(journal, rng.randrange(1 << 30))
    for n in range(kills):
        mode = rng.random()
        if mode < startup_share:  # before or during its start-up and recovery
            time.sleep(rng.uniform(0.0, 0.4))
            report.during_startup += 1
        else:
            reason = child.wait_ready(READY_TIMEOUT)
            if reason:
                report.restart_failures.append(f"start before kill {n}: {reason}")
            else:
                time.sleep(0.05)  # the recovery's purge completes on the dispenser's queue
                report.mismatches += [f"start before kill {n}: {p}" for p in audit.restart_problems(boundary)]
                if mode < startup_share + aimed_share:
                    _kill_at_a_dispense(child, journal)
                else:
                    time.sleep(rng.uniform(0.0, 0.5))
        ended = child.kill()
        report.kills += 1
        if ended:
            report.restart_failures.append(f"kill {n}: {ended}")
        report.mismatches += [f"kill {n}: {p}" for p in audit.counts_problems()]
        if Path(journal).exists():
            rc, answer = verify_journal(journal)
            if rc != 0:
                report.chain_failures.append(f"kill {n}: verify exit {rc}: {answer}")
        report.windows[audit.last] += 1
        report.dispense_to_present += audit.since_dispense is not None
        boundary = audit.seq
        child = Child(journal, rng.randrange(1 << 30))
    reason = child.wait_ready(READY_TIMEOUT)
    if reason:
        report.restart_failures.append(f"last start: {reason}")
    else:
        time.sleep(0.05)
        report.mismatches += [f"last start: {p}" for p in audit.restart_problems(boundary)]
    child.kill()
    report.mismatches += [f"at the end: {p}" for p in audit.counts_problems() + audit.blocking_problems()]
    report.sessions = audit.sessions
    report.interrupted_sessions = audit.interrupted_sessions
    report.recovered_dispenses = audit.recovered_dispenses
    report.seconds = time.monotonic() - began
    return report
