"""Reading a journal from another process, read-only, while its agent may be running.

The agent holds ``<journal>.lock`` and is the only writer; a reader opens the SQLite
file with ``mode=ro`` and never takes the lock, so it changes nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from agent.journal import Entry, JournalError


def open_readonly(path: str) -> sqlite3.Connection:
    """The journal at ``path``, read-only; a file that is missing or no journal is refused."""
    if path == ":memory:":
        raise JournalError("the journal is ':memory:': nothing is kept to read; name its file with --journal FILE")
    if not os.path.isfile(path):
        raise JournalError(f"no journal at {path} (the journal: --journal FILE, else the config's journal.path)")
    db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        db.close()
        raise JournalError(f"{path} is not a journal: {exc}") from None
    if not {"entries", "cassettes"} <= tables:
        db.close()
        raise JournalError(f"{path} is not a journal: it has no entries and cassettes tables")
    return db


def read_entries(db: sqlite3.Connection, path: str, kind: str | None = None) -> list[Entry]:
    """The journal's rows in order (of one kind); a row that cannot be read is refused."""
    sql = "SELECT seq, ts, session, kind, name, intent, data FROM entries"
    rows = db.execute(sql + " WHERE kind = ? ORDER BY seq", (kind,)) if kind else db.execute(sql + " ORDER BY seq")
    entries = []
    for seq, ts, session, kind_, name, intent, data in rows:
        try:
            value = json.loads(data)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict) or not isinstance(ts, str):
            raise JournalError(f"{path}: row {seq} ({kind_} {name!r}) is corrupt: its data is not a JSON object")
        entries.append(Entry(seq, ts, session, kind_, name, intent, value))
    return entries


def read_cassettes(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The cassette counts the agent keeps (``id``, ``denomination``, ``count``)."""
    rows = db.execute("SELECT id, denomination, count FROM cassettes ORDER BY id")
    return [{"id": r[0], "denomination": r[1], "count": r[2]} for r in rows]
