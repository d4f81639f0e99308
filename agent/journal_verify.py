"""Checking a journal's hash chain and signed checkpoints (``atm journal verify``).

Read-only, in one read transaction (a snapshot: an agent may go on writing). The chain is
walked in seq order with a cursor; the first row whose link fails stops the walk and is
named with what it looks like (an edited, deleted, inserted or reordered row), from the
rows around it. Every checkpoint's signature is checked, and the chain against every
checkpoint's row count and head (a truncation or a rewritten chain).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.journal import JournalError
from agent.journal_chain import COLUMNS, GENESIS, link
from agent.journal_signing import Checkpoint, key_id, signature_holds

MMAP_BYTES = 1 << 30  # of the journal read through a memory map while verifying (a read-only connection)
LOOKAHEAD = 64  # rows after a break searched for the row that belongs there


@dataclass
class Problem:
    kind: str  # edited, deleted, inserted, reordered, rewritten, truncated, bad_signature
    row: int  # the first row concerned (a checkpoint's row count for bad_signature)
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "row": self.row, "message": self.message}


@dataclass
class Verdict:
    journal: str
    rows: int = 0  # rows whose links hold, from row 1
    last_seq: int = 0
    head: str = ""
    checkpoints: int = 0
    last_checkpoint: dict | None = None
    key_id: str | None = None
    key_source: str = "journal"
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "journal": self.journal,
            "ok": self.ok,
            "rows": self.rows,
            "last_seq": self.last_seq,
            "head": self.head,
            "checkpoints": self.checkpoints,
            "last_checkpoint": self.last_checkpoint,
            "unsigned_rows": self.last_seq - (self.last_checkpoint or {"seq": 0})["seq"],
            "key_id": self.key_id,
            "key_source": self.key_source,
            "problems": [p.as_dict() for p in self.problems],
            "seconds": round(self.seconds, 3),
        }


Row = tuple  # (seq, ts, session, kind, name, intent, data, hash)


def _fits(prev: bytes, row: Row, seq: int) -> bytes | None:
    """The hash ``row``'s content would have as row ``seq`` after ``prev``; None if it
    holds a value of the wrong type."""
    try:
        return link(prev, seq, *row[1:7])
    except (TypeError, ValueError):
        return None


def verify(db: sqlite3.Connection, path: str, public: Ed25519PublicKey | None = None) -> Verdict:
    """The verdict on the journal open (read-only) in ``db``."""
    began = time.perf_counter()
    columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
    if "hash" not in columns:
        raise JournalError(
            f"{path} has no hash chain yet (made before it): the agent chains it when it next opens it (atm run)"
        )
    verdict = Verdict(path, key_source="--public-key" if public is not None else "journal")
    db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")  # read the file mapped: fewer copies (~7% faster)
    db.execute("BEGIN")  # one snapshot for the checkpoints and the rows
    try:
        checkpoints = _checkpoints(db)
        verdict.checkpoints = len(checkpoints)
        signature_problems = _check_signatures(checkpoints, public, verdict)
        (verdict.last_seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
        marks = {}
        for cp in checkpoints:
            try:
                marks[cp.seq] = bytes.fromhex(cp.head)
            except ValueError:
                marks[cp.seq] = b""
        chain_problem = _walk(db, marks, {cp.seq: cp for cp in checkpoints}, verdict)
        if chain_problem is None and checkpoints and checkpoints[-1].seq > verdict.last_seq:
            last = checkpoints[-1]
            chain_problem = Problem(
                "truncated",
                verdict.last_seq + 1,
                f"the journal ends at row {verdict.last_seq} but the checkpoint signed at {last.ts} covers"
                f" {last.seq} rows: rows {verdict.last_seq + 1} to {last.seq} were deleted",
            )
    finally:
        db.rollback()
    verdict.problems = ([chain_problem] if chain_problem else []) + signature_problems
    if checkpoints:
        last = checkpoints[-1]
        verdict.last_checkpoint = {"seq": last.seq, "ts": last.ts, "head": last.head, "key_id": last.key_id}
    verdict.seconds = time.perf_counter() - began
    return verdict


def _checkpoints(db: sqlite3.Connection) -> list[Checkpoint]:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "checkpoints" not in tables:
        return []
    rows = db.execute("SELECT seq, ts, head, key_id, public_key, signature FROM checkpoints ORDER BY seq")
    return [Checkpoint(row[0], *(str(v) for v in row[1:])) for row in rows]


def _check_signatures(
    checkpoints: list[Checkpoint], public: Ed25519PublicKey | None, verdict: Verdict
) -> list[Problem]:
    """Every checkpoint signed by the key given, else by the key of the journal's first checkpoint."""
    problems = []
    trusted = public
    for cp in checkpoints:
        if trusted is None:
            try:
                trusted = Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.public_key))
            except ValueError:
                problems.append(
                    Problem("bad_signature", cp.seq, f"checkpoint at row {cp.seq}: its public key is no key")
                )
                continue
        verdict.key_id = key_id(trusted)
        if not signature_holds(trusted, cp.seq, cp.head, cp.ts, cp.signature):
            why = "" if cp.key_id == verdict.key_id else f" (it names key {cp.key_id})"
            problems.append(
                Problem(
                    "bad_signature",
                    cp.seq,
                    f"the checkpoint at row {cp.seq} ({cp.ts}) is not signed by key {verdict.key_id}{why}",
                )
            )
    return problems


def _walk(db: sqlite3.Connection, marks: dict[int, bytes], checkpoints: dict, verdict: Verdict) -> Problem | None:
    """Follow the chain from row 1; the first break, or None."""
    sha256 = hashlib.sha256
    prev, expected = GENESIS, 1
    rows = db.execute(f"SELECT {COLUMNS}, hash FROM entries ORDER BY seq")
    for seq, ts, session, kind, name, intent, data, stored in rows:
        try:
            own = sha256(
                prev
                + (
                    f"{seq:d}|{len(ts)}:{ts}|{'-' if session is None else f'{len(session)}:{session}'}"
                    f"|{len(kind)}:{kind}|{len(name)}:{name}|{'-' if intent is None else f'#{intent:d}'}"
                    f"|{len(data)}:{data}"
                ).encode()
            ).digest()
        except (TypeError, ValueError):
            own = b""
        if seq != expected or own != stored:
            verdict.rows = expected - 1
            return _classify(db, prev, expected, (seq, ts, session, kind, name, intent, data, stored), marks)
        if seq in marks and marks[seq] != stored:
            cp = checkpoints[seq]
            verdict.rows = expected - 1
            earlier = [s for s in marks if s < seq and marks[s]]
            since = f" after row {max(earlier)}" if earlier else ""
            return Problem(
                "rewritten",
                seq,
                f"row {seq}: the chain holds, but its head differs from the checkpoint signed at {cp.ts}:"
                f" rows{since} up to {seq} were rewritten (hashes recomputed)",
            )
        prev, expected = stored, expected + 1
    verdict.rows = expected - 1
    verdict.head = prev.hex() if verdict.rows else ""
    return None


def _classify(db: sqlite3.Connection, prev: bytes, expected: int, row: Row, marks: dict[int, bytes]) -> Problem:
    """What the first broken link at ``row`` looks like (``prev``: the hash of row expected-1)."""
    seq, stored = row[0], row[7]
    if seq != expected:
        missing = f"row {expected} is" if seq == expected + 1 else f"rows {expected} to {seq - 1} are"
        return Problem("deleted", expected, f"{missing} missing: the journal goes from row {expected - 1} to row {seq}")
    if not isinstance(stored, bytes):
        return Problem("inserted", seq, f"row {seq} has no hash: it was not written by the agent (inserted)")
    own = _fits(prev, row, seq)
    if own is None:
        return Problem("edited", seq, f"row {seq} holds a value of the wrong type: it was edited")
    after = db.execute(
        f"SELECT {COLUMNS}, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?", (seq, LOOKAHEAD)
    ).fetchall()
    following = after[0] if after and after[0][0] == seq + 1 else None
    # reordered: the content written as row seq is now in another row
    for other in after:
        fit = _fits(prev, other, seq)
        if fit is not None and fit == stored:  # moved, the hashes left in place
            return _reordered(seq, other[0])
        if fit is not None and fit == other[7]:  # moved with its hash
            if other[0] != seq + 1 or _fits(other[7], row, other[0]) == stored:
                return _reordered(seq, other[0])
            return Problem(
                "inserted", seq, f"row {seq} was inserted: the rows after it were renumbered (row {seq + 1} was {seq})"
            )
    before = _row_at(db, seq - 2) if seq > 2 else None
    if seq > 1 and _fits(before[7] if before is not None else GENESIS, row, seq - 1) == stored:
        return Problem(
            "inserted",
            seq - 1,
            f"row {seq - 1} was inserted: the rows after it were renumbered (row {seq} was {seq - 1})",
        )
    if following is not None and _fits(stored, following, seq + 1) == following[7]:
        return Problem("edited", seq, f"row {seq} was edited: its content no longer matches its hash")
    if following is None and marks.get(seq) == stored:
        return Problem("edited", seq, f"row {seq} was edited: its content no longer matches its signed hash")
    if following is None:
        return Problem(
            "edited", seq, f"row {seq}, the last, does not match its hash: edited, or not written by the agent"
        )
    return Problem(
        "edited", seq, f"row {seq}: its hash does not follow from row {seq - 1} (edited, or rows rewritten after it)"
    )


def _reordered(seq: int, other: int) -> Problem:
    return Problem(
        "reordered", seq, f"rows {seq} and {other} were reordered: what was written as row {seq} is now row {other}"
    )


def _row_at(db: sqlite3.Connection, seq: int) -> Row | None:
    return db.execute(f"SELECT {COLUMNS}, hash FROM entries WHERE seq = ?", (seq,)).fetchone()
