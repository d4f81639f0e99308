"""The journal's rows and sessions in a time window, by card, session or row type.

What ``atm journal query`` prints (docs/journal-queries.md). The window is half-open:
a row is in it when ``start <= ts < end``. Without a card or session filter the answer is
the rows in the window, grouped by session; with one it is whole sessions: every row of each
session that matches (a card: its ``card_read`` row is in the window and has the token or
last 4 digits; ``--session``: any of its rows is in the window), and the rows of no session
(faults, service changes) written while it ran. No card number is ever read or written
here: a card is its token (or its last 4 digits).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.journal import JournalError

KINDS = ("step", "intent", "outcome", "fault", "event", "recovery")  # as the journal's CHECK has them
COLUMNS = "seq, ts, session, kind, name, intent, data"
# The same expressions as the journal's indexes entries_card_token and entries_card_last4.
CARD_SESSIONS = (
    "SELECT session FROM entries WHERE name = 'card_read' AND json_extract(data, '$.{field}') = ?"
    " AND ts >= ? AND ts < ?"
)
SESSION_IN_WINDOW = "SELECT session FROM entries WHERE session = ? AND ts >= ? AND ts < ? LIMIT 1"
WINDOW_ROWS = f"SELECT {COLUMNS} FROM entries WHERE ts >= ? AND ts < ?"
# json_each: any number of sessions in one parameter.
SESSION_ROWS = f"SELECT {COLUMNS} FROM entries WHERE session IN (SELECT value FROM json_each(?)) ORDER BY seq"
LOOSE_ROWS = f"SELECT {COLUMNS} FROM entries WHERE seq > ? AND seq < ? AND session IS NULL ORDER BY seq"


@dataclass(frozen=True)
class Query:
    """What to look for. ``start``/``end``: UTC, start inclusive, end exclusive."""

    start: datetime
    end: datetime
    token: str | None = None
    last4: str | None = None
    session: str | None = None
    type: str | None = None  # a row kind (KINDS), else a row name

    @property
    def by_session(self) -> bool:
        """Whole sessions are the answer (a card or a session was named)."""
        return bool(self.token or self.last4 or self.session)


def journal_time(when: datetime) -> str:
    """``when`` as the journal writes times (UTC, milliseconds), rounded up to the next
    millisecond: ``ts >= start`` and ``ts < end`` then compare as text exactly as times."""
    when = when.astimezone(UTC)
    if when.microsecond % 1000:
        when += timedelta(microseconds=1000 - when.microsecond % 1000)
    return when.isoformat(timespec="milliseconds")


def _row(raw: tuple, path: str) -> dict[str, Any]:
    seq, ts, session, kind, name, intent, data = raw
    try:
        value = json.loads(data)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        raise JournalError(f"{path}: row {seq} ({kind} {name!r}) is corrupt: its data is not a JSON object")
    return {"seq": seq, "ts": ts, "session": session, "kind": kind, "name": name, "intent": intent, "data": value}


def _type_clause(type_: str | None) -> tuple[str, list[str]]:
    """The SQL condition for ``--type``: a row kind, else a row name."""
    if type_ is None:
        return "", []
    return (" AND kind = ?", [type_]) if type_ in KINDS else (" AND name = ?", [type_])


def _check_type(db: sqlite3.Connection, path: str, type_: str | None) -> None:
    """Refuse a type that is no kind and no row's name: asked only when nothing matched, as
    it may read the whole journal (no index on names: they would cost more than they save)."""
    if type_ is None or type_ in KINDS:
        return
    if db.execute("SELECT 1 FROM entries WHERE name = ? LIMIT 1", (type_,)).fetchone() is None:
        raise JournalError(
            f"--type: {type_!r} is neither a row kind ({', '.join(KINDS)}) nor the name of any row in {path}"
        )


def _summary(session: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A session's card (token, last 4) and what it did, from its card_read and session_end rows."""
    card: dict[str, Any] = next((r["data"] for r in rows if r["name"] == "card_read"), {})
    end = next((r for r in rows if r["name"] == "session_end"), None)
    summary = end["data"] if end else {}
    return {
        "session": session,
        "started": rows[0]["ts"] if rows else None,
        "ended": end["ts"] if end else None,  # None: still running, or interrupted
        "last4": card.get("last4"),
        "token": card.get("token"),
        "function": summary.get("function"),
        "outcome": summary.get("outcome"),
        "amount": summary.get("amount"),
    }


def chosen_sessions(db: sqlite3.Connection, q: Query, start: str, end: str) -> list[str]:
    """The sessions a card or session filter matches, oldest first."""
    if q.token or q.last4:
        field, value = ("token", q.token) if q.token else ("last4", q.last4)
        sql, args = CARD_SESSIONS.format(field=field), [value, start, end]
        if q.session:
            sql, args = sql + " AND session = ?", [*args, q.session]
        found = [s for (s,) in db.execute(sql + " ORDER BY seq", args) if s is not None]
        return list(dict.fromkeys(found))
    assert q.session
    return [s for (s,) in db.execute(SESSION_IN_WINDOW, (q.session, start, end))]


def run(db: sqlite3.Connection, path: str, q: Query) -> dict[str, Any]:
    """The report: ``sessions`` (each its summary and ``rows``) and ``other_rows`` (rows of no
    session), every row with its data; in one read transaction, so one state of the journal."""
    start, end = journal_time(q.start), journal_time(q.end)
    if start >= end:
        raise JournalError(f"--from ({start}) is not before --to ({end}): the window is empty")
    db.execute("BEGIN")
    try:
        type_sql, type_args = _type_clause(q.type)
        if q.by_session:
            names = chosen_sessions(db, q, start, end)
            shown = None
        else:
            window = db.execute(WINDOW_ROWS + type_sql + " ORDER BY seq", [start, end, *type_args])
            shown = [_row(r, path) for r in window]
            names = list(dict.fromkeys(r["session"] for r in shown if r["session"] is not None))
        whole: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for raw in db.execute(SESSION_ROWS, (json.dumps(names),)):
            whole[raw[2]].append(_row(raw, path))
        if shown is None:  # whole sessions, and the device's rows while they ran
            picked = [r for rows in whole.values() for r in rows]
            spans = [(rows[0]["seq"], rows[-1]["seq"]) for rows in whole.values() if rows]
            loose = [_row(r, path) for span in spans for r in db.execute(LOOSE_ROWS, span)]
            if q.type is not None:
                picked = [r for r in picked if q.type in (r["kind"], r["name"])]
                loose = [r for r in loose if q.type in (r["kind"], r["name"])]
        else:
            picked = [r for r in shown if r["session"] is not None]
            loose = [r for r in shown if r["session"] is None]
        if not picked and not loose:
            _check_type(db, path, q.type)
    finally:
        db.execute("COMMIT")
    by_session: dict[str, list[dict[str, Any]]] = {}
    for r in picked:
        by_session.setdefault(r["session"], []).append(r)
    sessions = [{**_summary(name, whole[name]), "rows": rows} for name, rows in by_session.items()]
    return {
        "journal": path,
        "from": start,
        "to": end,
        "filters": {"token": q.token, "last4": q.last4, "session": q.session, "type": q.type},
        "matched": "sessions" if q.by_session else "rows",
        "rows": len(picked) + len(loose),
        "sessions": sessions,
        "other_rows": loose,
    }
