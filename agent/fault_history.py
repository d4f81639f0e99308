"""The faults' history from the journal's ``fault`` rows: raised and cleared, with times."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.counters import Row
from agent.journal import JournalError

FIELDS = ("device", "code", "severity", "state", "message", "action")
RELATIVE = re.compile(r"(\d{1,6})([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO time (local time unless it names its offset) or one ago, like ``2h``, ``30m``, ``1d``."""
    relative = RELATIVE.fullmatch(text)
    try:
        if relative:
            return now - timedelta(**{UNITS[relative[2]]: int(relative[1])})
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"{text!r} is neither an ISO time (2026-01-01T09:00+09:00) nor a time ago (45s, 30m, 2h, 1d)")


def row_time(row: Row) -> datetime:
    """A row's time (the journal writes UTC)."""
    try:
        when = datetime.fromisoformat(row.ts)
    except ValueError:
        raise JournalError(f"journal row {row.seq} is corrupt: its time {row.ts!r} is not an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def history(rows: Iterable[Row], active: bool = False, since: datetime | None = None) -> list[dict[str, Any]]:
    """The fault rows in order; ``active``: only each device and code's last state, when
    it is raised; ``since``: only the rows from then on."""
    chosen = list(rows)
    if active:
        last = {(r.data.get("device"), r.data.get("code")): r for r in chosen}
        chosen = sorted((r for r in last.values() if r.data.get("state") == "raised"), key=lambda r: r.seq)
    if since is not None:
        chosen = [r for r in chosen if row_time(r) >= since]
    return [{"seq": r.seq, "ts": r.ts, **{k: r.data.get(k) for k in FIELDS}} for r in chosen]
