"""Reading a journal from another process, read-only, while its agent may be running.

The agent holds ``<journal>.lock`` and is the only writer; a reader opens the SQLite
file with ``mode=ro`` and never takes the lock. (SQLite may make the WAL's ``-shm`` and
``-wal`` files where the reader may write; where it may not, a stopped agent's journal is
read as immutable.)
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
    uri = Path(path).absolute().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        tables = _tables(db)
    except sqlite3.OperationalError as exc:
        db.close()
        if os.path.exists(path + "-wal") or "readonly" not in str(exc):
            raise JournalError(f"{path}: cannot be read: {exc}") from None
        # a stopped agent's WAL journal, in a folder this user cannot write: SQLite would have
        # to make its -shm file; with no -wal there is nothing it could be missing
        db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        try:
            tables = _tables(db)
        except sqlite3.DatabaseError as again:
            db.close()
            raise JournalError(f"{path} is not a journal: {again}") from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise JournalError(f"{path} is not a journal: {exc}") from None
    if not {"entries", "cassettes"} <= tables:
        db.close()
        raise JournalError(f"{path} is not a journal: it has no entries and cassettes tables")
    return db


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


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
