"""A durable telemetry outbox in SQLite: every message is stored before it is sent.

A message leaves the outbox only when the broker acknowledges it with a
success reason code. Rows keep their insertion order (``rowid``), which is the
send order, so order per topic survives outages and restarts.

**Durability.** The database is in WAL mode. Messages that must never be lost
(``critical``: faults and events, such as session summaries and card retentions) are
committed with ``synchronous=FULL``: the WAL is fsynced before ``put`` returns,
so they survive a power cut. Messages that are superseded by the next one
anyway (``coalesce``: cash levels, heartbeats, status) are committed with
``synchronous=NORMAL``: they survive a crash of the agent (``kill -9``), and a
power cut can lose only the last few, which the birth message and the next
report restate. Deleting acknowledged rows is batched.

**Bounds.** The outbox holds at most ``max_bytes`` of payload and messages no
older than ``max_age`` seconds. When a bound is hit, coalescing messages give
way first: only the newest per topic is kept. Critical messages are never
dropped, even over the bound. Whatever was coalesced or dropped is counted and
reported (:meth:`Outbox.take_report`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass

CRITICAL, COALESCE = "critical", "coalesce"

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    class TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Stored:
    """A row of the outbox."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    cls: str
    created: float


class Outbox:
    """The stored messages, safe to use from several threads."""

    def __init__(self, path: str, max_bytes: int = 64 * 1024 * 1024, max_age: float = 7 * 86400, clock=time.time):
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self._sync = ""
        self._set_sync("NORMAL")
        self.db.executescript(SCHEMA)
        self.bytes = self.db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
        self.coalesced = self.dropped = 0
        self._reported = (0, 0)
        self._acked: list[int] = []

    def close(self) -> None:
        with self._lock:
            self._delete_acked()
            self.db.close()

    def _set_sync(self, mode: str) -> None:
        if mode != self._sync:
            self.db.execute(f"PRAGMA synchronous={mode}")
            self._sync = mode

    # counters that live with the data ---------------------------------------------
    def next_counter(self, name: str) -> int:
        """Increment and return a persistent counter (the boot number, the bdSeq)."""
        with self._lock:
            self._set_sync("FULL")
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1", (name,)
            )
            value = self.db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()[0]
            self.db.execute("COMMIT")
            return value

    # storing --------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int, retain: bool, cls: str) -> int:
        """Store one message (committed on return); returns its id."""
        now = self.clock()
        with self._lock:
            self._set_sync("FULL" if cls == CRITICAL else "NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute(
                    "INSERT INTO outbox(topic, payload, qos, retain, class, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), cls, now),
                )
                self.bytes += len(payload)
                if self.bytes > self.max_bytes:
                    self._trim(now)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            row_id = cur.lastrowid
            assert row_id is not None  # an INSERT sets it
            return row_id

    def _trim(self, now: float) -> None:
        """Over a bound: drop what is too old (coalescing only), then keep only the newest
        coalescing message per topic. Critical messages stay."""
        cur = self.db.execute(
            "DELETE FROM outbox WHERE class = ? AND created < ? RETURNING LENGTH(payload)",
            (COALESCE, now - self.max_age),
        )
        for (size,) in cur.fetchall():
            self.bytes -= size
            self.dropped += 1
        cur = self.db.execute(
            "DELETE FROM outbox WHERE class = ? AND id NOT IN "
            "(SELECT MAX(id) FROM outbox WHERE class = ? GROUP BY topic) RETURNING LENGTH(payload)",
            (COALESCE, COALESCE),
        )
        for (size,) in cur.fetchall():
            self.bytes -= size
            self.coalesced += 1

    def expire(self) -> None:
        """Drop coalescing messages older than ``max_age`` (called now and then)."""
        with self._lock:
            self._set_sync("NORMAL")
            cur = self.db.execute(
                "DELETE FROM outbox WHERE class = ? AND created < ? RETURNING LENGTH(payload)",
                (COALESCE, self.clock() - self.max_age),
            )
            for (size,) in cur.fetchall():
                self.bytes -= size
                self.dropped += 1

    def take_report(self) -> dict | None:
        """What was coalesced or dropped since the last report, or None."""
        with self._lock:
            now = (self.coalesced, self.dropped)
            if now == self._reported:
                return None
            report = {"coalesced": now[0] - self._reported[0], "dropped": now[1] - self._reported[1]}
            self._reported = now
            return report

    # sending ----------------------------------------------------------------------------
    def pending(self, after: int = 0, limit: int = 1000, upto: int | None = None) -> list[Stored]:
        """Stored messages with ``after`` < id <= ``upto``, oldest first (acked ones excluded)."""
        with self._lock:
            self._delete_acked()
            rows = self.db.execute(
                "SELECT id, topic, payload, qos, retain, class, created FROM outbox WHERE id > ? AND id <= ? "
                "ORDER BY id LIMIT ?",
                (after, upto if upto is not None else 2**62, limit),
            ).fetchall()
        return [Stored(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows]

    def max_id(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]

    def topic_counts(self, upto: int) -> dict[str, int]:
        """Unacknowledged messages per topic with id <= ``upto``."""
        with self._lock:
            self._delete_acked()
            rows = self.db.execute("SELECT topic, COUNT(*) FROM outbox WHERE id <= ? GROUP BY topic", (upto,))
            return dict(rows.fetchall())

    def ack(self, message_id: int) -> None:
        """The broker has it: forget it (deleted in batches)."""
        with self._lock:
            self._acked.append(message_id)
            if len(self._acked) >= 256:
                self._delete_acked()

    def flush_acks(self) -> None:
        with self._lock:
            self._delete_acked()

    def _delete_acked(self) -> None:
        if not self._acked:
            return
        self._set_sync("NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        sizes = 0
        for chunk_start in range(0, len(self._acked), 500):
            chunk = self._acked[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            cur = self.db.execute(f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING LENGTH(payload)", chunk)
            sizes += sum(size for (size,) in cur.fetchall())
        self.db.execute("COMMIT")
        self.bytes -= sizes
        self._acked.clear()

    def count(self) -> int:
        with self._lock:
            self._delete_acked()
            return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
