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

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger("agent.outbox")

CRITICAL, COALESCE = "critical", "coalesce"
# rows acknowledged but not deleted yet (the delete failed) do not count as stored
NOT_ACKED = "id NOT IN (SELECT value FROM json_each(?))"

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


class OutboxError(Exception):
    """The outbox cannot be read or written (a full disk, a corrupt file); the message
    names the outbox and gives SQLite's own reason."""


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
        self._sync = ""
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self._set_sync("NORMAL")
            self.db.executescript(SCHEMA)
            self.bytes = self.db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self.coalesced = self.dropped = 0
        self._reported = (0, 0)
        self._acked: list[int] = []

    def close(self) -> None:
        with self._lock:
            self._delete_acked()
            self.db.close()

    def _error(self, exc: sqlite3.Error) -> OutboxError:
        return OutboxError(f"outbox {self.path}: {exc}")

    @contextlib.contextmanager
    def _write(self, sync: str) -> Iterator[None]:
        """One write transaction: committed at the end, rolled back on any error (unless
        SQLite already did, as it does on a full disk); SQLite errors become OutboxError."""
        try:
            self._set_sync(sync)
            self.db.execute("BEGIN IMMEDIATE")
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("outbox %s: rollback failed", self.path)
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise

    def _set_sync(self, mode: str) -> None:
        if mode != self._sync:
            self.db.execute(f"PRAGMA synchronous={mode}")
            self._sync = mode

    # counters that live with the data ---------------------------------------------
    def next_counter(self, name: str) -> int:
        """Increment and return a persistent counter (the boot number, the bdSeq)."""
        with self._lock, self._write("FULL"):
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1", (name,)
            )
            return self.db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()[0]

    def raise_counter(self, name: str, value: int) -> None:
        """Make a persistent counter at least ``value`` (one used while it could not be written)."""
        with self._lock, self._write("FULL"):
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = MAX(value, ?)",
                (name, value, value),
            )

    # storing --------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int, retain: bool, cls: str) -> int:
        """Store one message (committed on return); returns its id."""
        now = self.clock()
        with self._lock:
            before = (self.bytes, self.coalesced, self.dropped)
            try:
                with self._write("FULL" if cls == CRITICAL else "NORMAL"):
                    cur = self.db.execute(
                        "INSERT INTO outbox(topic, payload, qos, retain, class, created) VALUES (?, ?, ?, ?, ?, ?)",
                        (topic, payload, qos, int(retain), cls, now),
                    )
                    self.bytes += len(payload)
                    if self.bytes > self.max_bytes:
                        self._trim(now)
            except BaseException:
                self.bytes, self.coalesced, self.dropped = before  # rolled back: nothing changed
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
            try:
                with self._write("NORMAL"):
                    sizes = self.db.execute(
                        "DELETE FROM outbox WHERE class = ? AND created < ? RETURNING LENGTH(payload)",
                        (COALESCE, self.clock() - self.max_age),
                    ).fetchall()
            except OutboxError as exc:
                log.warning("%s; old messages are expired later", exc)
                return
            for (size,) in sizes:
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
                f"AND {NOT_ACKED} ORDER BY id LIMIT ?",
                (after, upto if upto is not None else 2**62, self._acked_json(), limit),
            ).fetchall()
        return [Stored(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows]

    def max_id(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]

    def topic_counts(self, upto: int) -> dict[str, int]:
        """Unacknowledged messages per topic with id <= ``upto``."""
        with self._lock:
            self._delete_acked()
            rows = self.db.execute(
                f"SELECT topic, COUNT(*) FROM outbox WHERE id <= ? AND {NOT_ACKED} GROUP BY topic",
                (upto, self._acked_json()),
            )
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

    def _acked_json(self) -> str:
        """The acknowledged ids not deleted yet (a full disk), for ``NOT_ACKED``."""
        return json.dumps(self._acked) if self._acked else "[]"

    def _delete_acked(self) -> None:
        if not self._acked:
            return
        sizes = 0
        try:
            with self._write("NORMAL"):
                for chunk_start in range(0, len(self._acked), 500):
                    chunk = self._acked[chunk_start : chunk_start + 500]
                    marks = ",".join("?" * len(chunk))
                    cur = self.db.execute(f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING LENGTH(payload)", chunk)
                    sizes += sum(size for (size,) in cur.fetchall())
        except OutboxError as exc:  # kept: deleted on a later call (a resend meanwhile is a duplicate)
            log.warning("%s; %d acknowledged messages are deleted later", exc, len(self._acked))
            return
        self.bytes -= sizes
        self._acked.clear()

    def count(self) -> int:
        """Messages not yet acknowledged; OutboxError when the file cannot be read."""
        with self._lock:
            self._delete_acked()
            try:
                query = f"SELECT COUNT(*) FROM outbox WHERE {NOT_ACKED}"
                return int(self.db.execute(query, (self._acked_json(),)).fetchone()[0])
            except sqlite3.Error as exc:
                raise self._error(exc) from None
