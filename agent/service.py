"""A field engineer's commands on a journal: ``atm faults`` and ``atm counters``.

Both read the journal read-only (the agent may be running); only ``atm counters
reset`` writes, one ``counters_reset`` event row, and only with the journal's lock,
so never while an agent runs on it.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from agent.counters import CASSETTE_COUNTERS, RESET, derive
from agent.fault_history import history
from agent.journal import Journal
from agent.journal_reader import open_readonly, read_cassettes, read_entries
from agent.tables import table
from fsm.clock import RealClock


# -- atm faults ---------------------------------------------------------------------------
def faults_report(path: str, active: bool, since: datetime | None) -> dict[str, Any]:
    db = open_readonly(path)
    try:
        rows = read_entries(db, path, kind="fault")
    finally:
        db.close()
    return {
        "journal": path,
        "active": active,
        "since": since.isoformat() if since else None,
        "faults": history(rows, active, since),
    }


def faults_text(report: dict[str, Any]) -> str:
    faults = report["faults"]
    if not faults:
        what = "no active faults" if report["active"] else "no faults"
        return what + (f" since {report['since']}" if report["since"] else "") + f" in {report['journal']}"
    headers = ("time", "device", "code", "state", "action", "message")
    return table(headers, [[f[h if h != "time" else "ts"] for h in headers] for f in faults])


# -- atm counters -------------------------------------------------------------------------
def counters_report(path: str) -> dict[str, Any]:
    db = open_readonly(path)
    try:
        figures = derive(read_entries(db, path), read_cassettes(db))
    finally:
        db.close()
    return {"journal": path, **figures}


def counters_text(report: dict[str, Any]) -> str:
    reset = report["reset"]
    since = report["since"] or "the start"
    head = f"counters of {report['journal']} since {since}" + (
        f" (reset by {reset['engineer']}, journal row {reset['seq']})" if reset else " (never reset)"
    )
    devices = [[d, k, v] for d, counters in report["devices"].items() for k, v in counters.items()]
    devices.append(["agent", "sessions_interrupted", report["sessions_interrupted"]])
    headers = ("cassette", "denomination", "initial", *CASSETTE_COUNTERS, "count", "since")
    cassettes = [[c["id" if h == "cassette" else h] for h in headers] for c in report["cassettes"]]
    parts = [head, "", table(("device", "counter", "value"), devices)]
    if cassettes:
        parts += ["", table(headers, cassettes)]
    return "\n".join(parts)


def reset_figures(db: sqlite3.Connection, path: str) -> dict[str, Any]:
    """What a ``counters_reset`` row records: the counters it ends, the cassette counts,
    and the newest row they cover (``through``)."""
    (through,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
    figures = derive(read_entries(db, path), read_cassettes(db))
    counts = {c["id"]: c["count"] for c in figures["cassettes"] if c["count"] is not None}
    return {"through": through, "counters": figures, "counts": counts}


def reset_counters(path: str, engineer: str, signing_key: str = "") -> dict[str, Any]:
    """With no agent running: append a ``counters_reset`` row with the engineer and the
    counters it ends; the journal's lock is taken for it (``JournalBusy`` names the agent
    holding it)."""
    open_readonly(path).close()  # a journal, before the lock file or a schema is made
    journal = Journal(path, RealClock(), signing_key=signing_key)
    try:
        reset = reset_figures(journal.db, path)
        journal.event(None, RESET, engineer=engineer, **reset)
        seq, ts = journal.head()
    finally:
        journal.close()
    return {"journal": path, "seq": seq, "ts": ts, "engineer": engineer, **reset}


def reset_request(path: str) -> dict[str, Any]:
    """The ``counters_reset`` request for the agent running on ``path``: the figures read
    here, read-only (never on the agent's loop: a journal of years takes a while)."""
    db = open_readonly(path)
    try:
        return reset_figures(db, path)
    finally:
        db.close()


def reset_text(reset: dict[str, Any]) -> str:
    return (
        f"counters reset by {reset['engineer']} at {reset['ts']} (journal row {reset['seq']} of {reset['journal']});"
        " the counters it ended are in that row (atm counters reset --json shows them)"
    )
