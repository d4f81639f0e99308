"""The journal's hash chain: every row's ``hash`` seals it and every row before it.

``hash(n) = SHA-256(hash(n-1) || canonical(row n))`` with :data:`GENESIS` before row 1.
The canonical form (ours) is the UTF-8 of::

    <seq>|<ts>|<session>|<kind>|<name>|<intent>|<data>

where a text field is ``<length in code points>:<text>``, a NULL is ``-`` and ``intent``
is ``#<decimal>`` (or ``-``). The lengths make the form unambiguous whatever a text holds,
and a value of another type (a blob, a number in a text column) never fits it.
"""

from __future__ import annotations

import hashlib

GENESIS = hashlib.sha256(b"atm journal chain v1").digest()  # the hash "before" row 1 (ours)
COLUMNS = "seq, ts, session, kind, name, intent, data"
_sha256 = hashlib.sha256


def canonical(seq: int, ts: str, session: str | None, kind: str, name: str, intent: int | None, data: str) -> bytes:
    """The bytes a row's hash covers; TypeError or ValueError for a value of the wrong type."""
    return (
        f"{seq:d}|{len(ts)}:{ts}|{'-' if session is None else f'{len(session)}:{session}'}|{len(kind)}:{kind}"
        f"|{len(name)}:{name}|{'-' if intent is None else f'#{intent:d}'}|{len(data)}:{data}"
    ).encode()


def link(
    prev: bytes, seq: int, ts: str, session: str | None, kind: str, name: str, intent: int | None, data: str
) -> bytes:
    """The hash of a row that follows the row whose hash is ``prev``."""
    return _sha256(prev + canonical(seq, ts, session, kind, name, intent, data)).digest()


def rehash_all(db, start_seq: int = 0, prev: bytes = GENESIS) -> tuple[int, bytes]:
    """Chain every row after ``start_seq`` (the migration of a journal made before the
    chain); the caller holds the transaction. Returns the (seq, hash) of the last row."""
    seq, head = start_seq, prev
    rows = db.execute(f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq", (start_seq,)).fetchall()
    updates = []
    for row in rows:
        seq, head = row[0], link(head, *row)
        updates.append((head, seq))
    db.executemany("UPDATE entries SET hash = ? WHERE seq = ?", updates)
    return seq, head
