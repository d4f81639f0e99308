"""Electronic journal (SQLite).

Every session step is a row. Every device command that moves money or a card
is an *intent* row, committed before the command is sent, and an *outcome*
row after it; the outcome row updates the cassette counts in the same
transaction. After a crash, an intent with no outcome is exactly the command
whose result must be reconciled. Card numbers never reach the journal: only
masked numbers and tokens do.

Every row carries ``hash``, the link of a SHA-256 chain over all rows before it
(agent/journal_chain.py), computed here and written in the row's own transaction; every
``checkpoint_rows`` rows or ``checkpoint_seconds`` seconds (and at ``close()``) a
checkpoint (row count, chain head, time) signed with the ATM's Ed25519 key goes in the
``checkpoints`` table in that same transaction (docs/journal.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from agent import journal_signing as signing
from agent.errors import JournalBusy, JournalError, SigningKeyError
from agent.journal_chain import GENESIS, link, rehash_all
from agent.journal_signing import Checkpoint, Signer
from devices.dispenser import Cassette

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq     INTEGER PRIMARY KEY,  -- rows are never deleted, so rowids only grow
    ts      TEXT NOT NULL,
    session TEXT,
    kind    TEXT NOT NULL CHECK (kind IN ('step', 'intent', 'outcome', 'fault', 'event', 'recovery')),
    name    TEXT NOT NULL,
    intent  INTEGER REFERENCES entries(seq),
    data    TEXT NOT NULL,
    hash    BLOB  -- the chain's link (journal_chain.py); NULL only before the migration
);
CREATE INDEX IF NOT EXISTS entries_intent ON entries(intent) WHERE intent IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_session_end ON entries(seq) WHERE name = 'session_end';
-- for `atm journal query` (docs/journal-queries.md): a time window, a session, and a card
-- by token or last 4 digits (its card_read row only: one small entry a session)
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE INDEX IF NOT EXISTS entries_session ON entries(session) WHERE session IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_card_token ON entries(json_extract(data, '$.token'), ts) WHERE name = 'card_read';
CREATE INDEX IF NOT EXISTS entries_card_last4 ON entries(json_extract(data, '$.last4'), ts) WHERE name = 'card_read';
CREATE TABLE IF NOT EXISTS cassettes (
    id           TEXT PRIMARY KEY,
    denomination INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    low          INTEGER NOT NULL,
    empty        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq        INTEGER PRIMARY KEY,  -- the rows it covers: 1..seq
    ts         TEXT NOT NULL,
    head       TEXT NOT NULL,        -- the hash of row seq, hex
    key_id     TEXT NOT NULL,
    public_key TEXT NOT NULL,        -- raw Ed25519, hex
    signature  TEXT NOT NULL         -- over journal_signing.checkpoint_message, hex
);
"""
CHECKPOINT_ROWS = 500  # default: a checkpoint at least every this many rows (ours)
CHECKPOINT_SECONDS = 60.0  # default: and within this many seconds of a row (ours)


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: str
    session: str | None
    kind: str
    name: str
    intent: int | None
    data: dict


_encode_text = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(ensure_ascii=True, default=str, separators=(",", ":")).encode


def _encode(data: dict) -> str:
    """A row's data as JSON text; escaped to ASCII when it holds a lone surrogate, which
    SQLite could not store as UTF-8 (a row must never fail to be written)."""
    text = _encode_text(data)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _encode_ascii(data)
    return text


INSERT = "INSERT INTO entries (seq, ts, session, kind, name, intent, data, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_CHECKPOINT = "INSERT INTO checkpoints (seq, ts, head, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?, ?)"


class JournalLock:
    """An exclusive lock on ``<journal>.lock``, holding the owner's PID.

    The kernel drops it when the process dies, so a crash never leaves it behind.
    """

    def __init__(self, journal_path: str):
        self.path = journal_path + ".lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(self._fd)
            raise JournalBusy(journal_path, holder) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = -1


class Journal:
    """The journal of one ATM. Used from the state-machine thread only.

    Step and event rows are buffered and written together with the next
    intent or outcome (or ``flush()``), in one transaction: money and card
    movements are always on disk before the command is sent; at most the
    plain steps since the last of them can be lost in a power cut.

    ``signing_key``: the checkpoints' key file ('' for ``<journal>-signing.key``; a
    key made for the run with an in-memory journal). ``on_checkpoint`` is told each
    checkpoint once it is committed (the agent sends it as telemetry).
    """

    def __init__(
        self,
        path: str,
        clock,
        signing_key: str = "",
        checkpoint_rows: int = CHECKPOINT_ROWS,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
    ):
        self.path = path
        self.clock = clock
        self.checkpoint_rows = checkpoint_rows
        self.checkpoint_seconds = checkpoint_seconds
        self.on_checkpoint = on_checkpoint
        self._buffer: list[tuple] = []
        self._ts_at: float | None = None
        self._ts = ""
        self.closed = False
        self.lock = JournalLock(path) if path != ":memory:" else None  # one agent per journal
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed intent or outcome survives a power cut.
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self.check_pending()
            self.signer = Signer(self._signing_key(signing_key))
            self._check_key(signing_key)
            self.migrated = self._migrate()  # rows chained now: 0 for a journal made with the chain
            self._seq, self._head = self._last_link()
            (self._checkpoint_seq,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM checkpoints").fetchone()
            self._checkpoint_at = clock.now()
            self.made: Checkpoint | None = None  # by the last transaction
            if self.migrated:
                self.checkpoint()
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def _signing_key(self, path: str):
        if not path and self.path == ":memory:":
            return signing.Ed25519PrivateKey.generate()  # nothing kept: a key for this run
        where = path or signing.default_key_path(self.path)
        signed = self.db.execute("SELECT key_id FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        if signed is not None and not os.path.exists(where):  # never made again for a signed journal
            raise SigningKeyError(
                f"{self.path}: its checkpoints were signed with key {signed[0]}, and its key file {where}"
                " is missing: restore it (a new key would make every later checkpoint fail verify)"
            )
        return signing.load_or_create(where)

    def _check_key(self, path: str) -> None:
        """Refuse a key other than the one that signed the journal's last checkpoint: a key
        file lost (and made again) or changed would make every later checkpoint fail verify."""
        row = self.db.execute("SELECT key_id FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None and row[0] != self.signer.key_id:
            where = path or signing.default_key_path(self.path)
            raise SigningKeyError(
                f"{self.path}: its checkpoints were signed with key {row[0]}, and {where} holds key"
                f" {self.signer.key_id}: restore the journal's key file (key rotation is not supported)"
            )

    def _migrate(self) -> int:
        """Chain the rows of a journal made before the chain (once); the number chained."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(entries)")}
        if "hash" in columns:
            return 0
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("ALTER TABLE entries ADD COLUMN hash BLOB")
            (count,) = self.db.execute("SELECT COUNT(*) FROM entries").fetchone()
            rehash_all(self.db)
        return count

    def _last_link(self) -> tuple[int, bytes]:
        row = self.db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return 0, GENESIS
        return row[0], row[1] if isinstance(row[1], bytes) else b""  # a row without one: verify names it

    def close(self) -> None:
        """Sign a last checkpoint, close the file, release the lock; again, nothing."""
        if self.closed:
            return
        self.closed = True
        try:
            self.checkpoint()  # writes the buffered rows first
            self.db.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def check_pending(self) -> None:
        """Refuse a journal whose interrupted commands cannot be read (recovery needs them)."""
        rows = self.db.execute(
            "SELECT seq, name, data FROM entries i WHERE kind = 'intent'"
            " AND NOT EXISTS (SELECT 1 FROM entries o WHERE o.kind = 'outcome' AND o.intent = i.seq)"
        )
        for seq, name, data in rows:
            try:
                ok = isinstance(json.loads(data), dict)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise JournalError(
                    f"{self.path}: row {seq} (intent {name!r}) is corrupt: its data is not"
                    " a JSON object; restore the journal from a backup or have it examined"
                )

    def _row(self, kind: str, name: str, session: str | None, data: dict, intent: int | None = None) -> tuple:
        now = self.clock.now()
        if now != self._ts_at:  # many rows share one instant
            self._ts_at, self._ts = now, self.clock.utcnow().isoformat(timespec="milliseconds")
        return (self._ts, session, kind, name, intent, _encode(data))

    # writing: every row numbered and chained here, in its transaction ---------------
    @contextmanager
    def _transaction(self, force_checkpoint: bool = False) -> Iterator[None]:
        """One write transaction; the buffered rows go first, a checkpoint last when one is
        due. On failure nothing is written, the buffer is kept and the chain is as before."""
        saved = (self._seq, self._head, self._checkpoint_seq, self._checkpoint_at)
        buffered, self._buffer = self._buffer, []
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                if buffered:
                    self.db.executemany(INSERT, self._chained(buffered))
                yield
                self.made = self._checkpoint_if_due(force_checkpoint)
        except BaseException:
            self._seq, self._head, self._checkpoint_seq, self._checkpoint_at = saved
            self._buffer = buffered + self._buffer
            self.made = None
            raise
        if self.made is not None and self.on_checkpoint is not None:
            self.on_checkpoint(self.made)

    def _chained(self, rows: list[tuple]) -> list[tuple]:
        """The rows numbered and hashed, after the last one written."""
        seq, head = self._seq, self._head
        out = []
        for row in rows:
            seq += 1
            head = link(head, seq, *row)
            out.append((seq, *row, head))
        self._seq, self._head = seq, head
        return out

    def _insert(self, kind: str, name: str, session: str | None, data: dict, intent: int | None = None) -> int:
        """Write this row; the caller holds the transaction (``_transaction``)."""
        self.db.execute(INSERT, self._chained([self._row(kind, name, session, data, intent)])[0])
        return self._seq

    def _checkpoint_if_due(self, force: bool = False) -> Checkpoint | None:
        rows = self._seq - self._checkpoint_seq
        if rows <= 0:
            return None
        now = self.clock.now()
        if not (force or rows >= self.checkpoint_rows or now - self._checkpoint_at >= self.checkpoint_seconds):
            return None
        ts = self.clock.utcnow().isoformat(timespec="milliseconds")
        checkpoint = self.signer.checkpoint(self._seq, self._head, ts)
        self.db.execute(
            INSERT_CHECKPOINT,
            (checkpoint.seq, ts, checkpoint.head, checkpoint.key_id, checkpoint.public_key, checkpoint.signature),
        )
        self._checkpoint_seq, self._checkpoint_at = self._seq, now
        return checkpoint

    def checkpoint(self) -> Checkpoint | None:
        """Sign the rows written so far now (buffered ones first), unless the last checkpoint
        covers them all; e.g. at a clean shutdown, before the telemetry stops."""
        with self._transaction(force_checkpoint=True):
            pass
        return self.made

    def checkpoint_when_due(self) -> Checkpoint | None:
        """From a timer: sign the rows not yet signed once ``checkpoint_seconds`` have passed,
        also when nothing else is written (an idle ATM's last rows get their checkpoint)."""
        if not self._buffer and self._seq <= self._checkpoint_seq:
            return None
        with self._transaction():
            pass
        return self.made

    def last_checkpoint(self) -> Checkpoint | None:
        row = self.db.execute(
            "SELECT seq, ts, head, key_id, public_key, signature FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return Checkpoint(*row) if row else None

    def flush(self) -> None:
        """Write the buffered step and event rows."""
        if self._buffer:
            with self._transaction():
                pass

    def head(self) -> tuple[int, str]:
        """(seq, time) of the newest row, after the buffered ones are written; (0, "") when empty."""
        self.flush()
        row = self.db.execute("SELECT seq, ts FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, "")

    def step(self, session: str | None, name: str, /, **data) -> None:
        self._buffer.append(self._row("step", name, session, data))

    def event(self, session: str | None, name: str, /, **data) -> None:
        self._buffer.append(self._row("event", name, session, data))

    def fault(self, fault: dict) -> None:
        self._buffer.append(self._row("fault", fault["code"], None, fault))
        self.flush()

    def intent(self, session: str | None, name: str, /, **data) -> int:
        """Record a command about to be sent (committed before returning); returns its id."""
        with self._transaction():
            return self._insert("intent", name, session, data)

    def outcome(
        self, intent: int, session: str | None, name: str, /, cassettes: list[Cassette] | None = None, **data
    ) -> None:
        """Record what the command did, and the cassette counts after it, atomically."""
        with self._transaction():
            self._insert("outcome", name, session, data, intent)
            if cassettes:
                self._write_cassettes(cassettes)

    # cassettes ----------------------------------------------------------------
    def _write_cassettes(self, cassettes: list[Cassette]) -> None:
        self.db.executemany(
            "INSERT INTO cassettes (id, denomination, count, low, empty) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET denomination=excluded.denomination,"
            " count=excluded.count, low=excluded.low, empty=excluded.empty",
            [(c.id, c.denomination, c.count, c.low, c.empty) for c in cassettes],
        )

    def save_cassettes(self, cassettes: list[Cassette]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self._write_cassettes(cassettes)

    def load_cassettes(self) -> list[Cassette]:
        rows = self.db.execute("SELECT id, denomination, count, low, empty FROM cassettes ORDER BY id")
        cassettes = [Cassette(id=r[0], denomination=r[1], count=r[2], low=r[3], empty=r[4]) for r in rows]
        for c in cassettes:
            if not (
                isinstance(c.id, str)
                and all(isinstance(v, int) and v >= 0 for v in (c.denomination, c.count, c.low, c.empty))
                and c.denomination > 0
            ):
                raise sqlite3.DatabaseError(f"{self.path}: cassette row {c.id!r} is corrupt: {c}")
        return cassettes

    # queries --------------------------------------------------------------------
    def entries(self, session: str | None = None, kind: str | None = None) -> list[Entry]:
        self.flush()
        sql, args = "SELECT seq, ts, session, kind, name, intent, data FROM entries", []
        where = []
        if session is not None:
            where.append("session = ?")
            args.append(session)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.execute(sql + " ORDER BY seq", args)
        return [Entry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def pending_intents(self) -> list[Entry]:
        """Intents with no outcome: commands interrupted by a crash."""
        self.flush()
        rows = self.db.execute(
            "SELECT seq, ts, session, kind, name, intent, data FROM entries i WHERE kind = 'intent'"
            " AND NOT EXISTS (SELECT 1 FROM entries o WHERE o.kind = 'outcome' AND o.intent = i.seq)"
            " ORDER BY seq"
        )
        return [Entry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def replay_counts(self, initial: list[Cassette]) -> dict[str, int]:
        """Cassette counts rebuilt from the outcome rows alone, from ``initial``.

        An auditor compares this with ``load_cassettes()``: every note that
        left a cassette is in some dispense outcome, every refill in a
        replenish outcome.
        """
        counts = {c.id: c.count for c in initial}
        for entry in self.entries(kind="outcome"):
            if entry.name in ("dispense", "test_dispense"):
                for cid, n in entry.data.get("picked", {}).items():
                    counts[cid] -= n
            elif entry.name in ("replenish", "reconcile") and entry.data.get("ok"):
                counts = {c["id"]: c["count"] for c in entry.data["after"]}
        return counts

    def open_sessions(self) -> dict[str, list[Entry]]:
        """The rows of every session with no ``session_end``: sessions a crash interrupted.

        One session runs at a time and each ends (or is recovered) before the next
        starts, so only sessions after the last ``session_end`` can be open.
        """
        self.flush()
        (last_end,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries WHERE name = 'session_end'").fetchone()
        rows = self.db.execute(
            "SELECT seq, ts, session, kind, name, intent, data FROM entries WHERE seq > ? AND session IS NOT NULL"
            " ORDER BY seq",
            (last_end,),
        )
        sessions: dict[str, list[Entry]] = {}
        for r in rows:
            sessions.setdefault(r[2], []).append(Entry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])))
        return sessions

    def last_session_number(self, prefix: str) -> int:
        """The number of the newest session named ``<prefix>-<number>``, 0 if none: a
        restarted agent goes on numbering, so a session id names one session for good."""
        row = self.db.execute(
            "SELECT session FROM entries WHERE session LIKE ? ESCAPE '\\' ORDER BY seq DESC LIMIT 1",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%",),
        ).fetchone()
        if row is None:
            return 0
        number = row[0][len(prefix) + 1 :]
        return int(number) if number.isdigit() else 0

    def counts_unreconciled(self) -> bool:
        """True while an interrupted dispense or withdrawal, or a dispense the device never
        answered, has not been followed by a replenishment (when an engineer counts and
        reloads the cassettes)."""
        self.flush()
        row = self.db.execute(
            "SELECT MAX(seq) FROM entries WHERE (name IN ('dispense', 'test_dispense') AND (kind = 'recovery'"
            " OR (kind = 'outcome' AND json_extract(data, '$.reconcile') = 'required')))"
            " OR (kind = 'recovery' AND name = 'session' AND json_extract(data, '$.reconcile'))"
        ).fetchone()
        if row[0] is None:
            return False
        later = self.db.execute(
            "SELECT 1 FROM entries WHERE kind = 'outcome' AND name IN ('replenish', 'reconcile') AND seq > ?"
            " AND json_extract(data, '$.ok')",
            (row[0],),
        ).fetchone()
        return later is None

    def recovery(self, session: str | None, name: str, /, **data) -> None:
        """Record what a restart found of an interrupted session or command (committed)."""
        with self._transaction():
            self._insert("recovery", name, session, data)

    def recover(self) -> list[Entry]:
        """Close every interrupted intent with a recovery row; return them.

        A dispense whose outcome is unknown leaves the counts as the intent
        found them and marks the result for reconciliation by an engineer.
        """
        pending = self.pending_intents()
        for entry in pending:
            with self._transaction():
                self._insert(
                    "recovery",
                    entry.name,
                    entry.session,
                    {"result": "unknown", "reconcile": "required", **entry.data},
                    entry.seq,
                )
                self._insert("outcome", entry.name, entry.session, {"ok": False, "result": "interrupted"}, entry.seq)
        return pending
