"""Building an export bundle: the rows a request selects, with what proves them.

The rows are those ``atm journal query`` selects (agent/journal_query.py). Each selected
row lies between two signed checkpoints (the genesis before the first); the chain from
the earlier checkpoint's head to the later one's runs through every row between them, so
those rows go in too, as ``context`` (the chain hashes each row's whole content: a row
given by its hash alone would link nothing; docs/journal.md). Runs of checkpoint
intervals that hold selected rows are the bundle's *segments*; nothing outside them is
exported. The manifest lists every member's sha256 and is signed with the ATM's key.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import __version__
from agent.journal import JournalError
from agent.journal_bundle import FORMAT, SIGNED_MEMBERS, manifest_message, pack, sha256
from agent.journal_chain import COLUMNS
from agent.journal_query import Query
from agent.journal_query import run as run_query
from agent.journal_signing import Checkpoint, key_id, raw_public
from agent.journal_verify import _checkpoints, verify


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(item, sort_keys=True).encode() + b"\n" for item in items)


def segments(selected: list[int], checkpoint_seqs: list[int]) -> list[tuple[int, int]]:
    """The (start, end) checkpoint row counts around the selected rows, adjacent intervals
    merged; start 0 is the genesis. JournalError when no checkpoint covers the last row."""
    intervals: list[tuple[int, int]] = []
    for seq in sorted(selected):
        if intervals and seq <= intervals[-1][1]:
            continue
        start = max((c for c in checkpoint_seqs if c < seq), default=0)
        end = min((c for c in checkpoint_seqs if c >= seq), default=None)
        if end is None:
            raise JournalError(
                f"no signed checkpoint covers the rows up to {max(selected)} yet; wait for the next checkpoint"
                " (journal.checkpoint_seconds; the agent also signs one when it stops) and export again"
            )
        if intervals and intervals[-1][1] == start:
            intervals[-1] = (intervals[-1][0], end)
        else:
            intervals.append((start, end))
    return intervals


def _rows(db: sqlite3.Connection, start: int, end: int) -> list[dict[str, Any]]:
    rows = db.execute(f"SELECT {COLUMNS}, hash FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq", (start, end))
    out = []
    for seq, ts, session, kind, name, intent, data, digest in rows:
        # data is the journal's text as stored: the row's hash covers those characters
        out.append(
            {"seq": seq, "ts": ts, "session": session, "kind": kind, "name": name, "intent": intent, "data": data}
            | {"hash": digest.hex() if isinstance(digest, bytes) else None}
        )
    return out


def build(
    db: sqlite3.Connection,
    path: str,
    query: Query,
    request: str,
    atm_id: str,
    private: Ed25519PrivateKey,
    by: str | None,
) -> tuple[bytes, dict[str, Any]]:
    """The bundle's bytes and its manifest. The journal must verify with the key's public
    half first (JournalError naming the first problem); ``by``: how the card was named."""
    public = private.public_key()
    verdict = verify(db, path, public)
    if not verdict.ok:
        first = verdict.problems[0]
        raise JournalError(f"{path} does not verify (row {first.row}: {first.message}); see atm journal verify")
    report = run_query(db, path, query)
    in_sessions = {r["seq"] for s in report["sessions"] for r in s["rows"]}
    selected = sorted(in_sessions | {r["seq"] for r in report["other_rows"]})
    if not selected:
        raise JournalError("no rows match the request in that window: nothing to export")
    db.execute("BEGIN")
    try:
        checkpoints = {cp.seq: cp for cp in _checkpoints(db)}
        spans = segments(selected, sorted(checkpoints))
        rows = [row for start, end in spans for row in _rows(db, start, end)]
    finally:
        db.rollback()
    chosen = set(selected)
    used: list[Checkpoint] = [checkpoints[s] for span in spans for s in span if s]
    members = {
        "rows.jsonl": _jsonl([r for r in rows if r["seq"] in chosen]),
        "context.jsonl": _jsonl([r for r in rows if r["seq"] not in chosen]),
        "checkpoints.jsonl": _jsonl([cp.as_dict() for cp in dict.fromkeys(used)]),
        "chain.json": json.dumps(
            {"genesis": "sha256(b'atm journal chain v1')", "segments": [{"from": s, "to": e} for s, e in spans]},
            sort_keys=True,
        ).encode(),
    }
    manifest = {
        "format": FORMAT,
        "request": request,
        "atm_id": atm_id,
        "window": {"from": report["from"], "to": report["to"]},
        "filters": {"by": by, **{k: v for k, v in report["filters"].items() if k != "type"}},
        "rows": len(selected),
        "first_row": selected[0],
        "last_row": selected[-1],
        "sessions": [{k: v for k, v in s.items() if k != "rows"} for s in report["sessions"]],
        "context_rows": len(rows) - len(selected),
        "segments": [{"from_checkpoint": s, "to_checkpoint": e} for s, e in spans],
        "key_id": key_id(public),
        "public_key": raw_public(public).hex(),
        "tool": f"atm {__version__}",
        "exported_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "members": {name: {"sha256": sha256(members[name]), "bytes": len(members[name])} for name in SIGNED_MEMBERS},
    }
    members["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    members["manifest.sig"] = private.sign(manifest_message(members["manifest.json"])).hex().encode() + b"\n"
    return pack(members), manifest
