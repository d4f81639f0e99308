"""Checking an export bundle with the ATM's public key alone (``atm journal verify-export``).

In order, stopping at the first failure: the archive is exactly the tar of its members;
the manifest's signature; each member's sha256 and size against the manifest; every
checkpoint's signature; then each segment's chain, from its starting checkpoint's head
(or the genesis) through every row, each row's canonical hash, to its ending
checkpoint's head and row count; last, that the rows are those the manifest counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.journal_bundle import FORMAT, SIGNED_MEMBERS, BundleError, manifest_message, sha256, unpack
from agent.journal_chain import GENESIS, link
from agent.journal_signing import key_id, signature_holds

SIGNATURE = re.compile(rb"[0-9a-f]{128}\n")  # manifest.sig, exactly as the exporter writes it
ROW_FIELDS = {"seq", "ts", "session", "kind", "name", "intent", "data", "hash"}


class Broken(Exception):
    """A check failed; the message says which and where."""


@dataclass
class Report:
    bundle: str
    key_id: str
    checked: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "bundle": self.bundle,
            "ok": self.problem is None,
            "problem": self.problem,
            "request": m.get("request"),
            "atm_id": m.get("atm_id"),
            "window": m.get("window"),
            "filters": m.get("filters"),
            "rows": m.get("rows"),
            "sessions": [s.get("session") for s in m.get("sessions", [])] if self.problem is None else None,
            "context_rows": m.get("context_rows"),
            "segments": m.get("segments"),
            "key_id": self.key_id,
            "checked": self.checked,
        }


def verify_bundle(blob: bytes, path: str, public: Ed25519PublicKey) -> Report:
    """The report on the bundle ``blob``; ``problem`` names the first check that failed."""
    report = Report(path, key_id(public))
    try:
        _check(blob, public, report)
    except (Broken, BundleError) as exc:
        report.problem = str(exc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # signed, yet not as the exporter writes it
        report.problem = f"the bundle is signed but malformed ({type(exc).__name__}: {exc})"
    return report


def _check(blob: bytes, public: Ed25519PublicKey, report: Report) -> None:
    members = unpack(blob)
    report.checked.append("archive: exactly the tar of its members")
    raw = members["manifest.json"]
    try:
        if not SIGNATURE.fullmatch(members["manifest.sig"]):
            raise ValueError("manifest.sig is not 128 hex digits and a newline")
        public.verify(bytes.fromhex(members["manifest.sig"].decode("ascii")), manifest_message(raw))
    except (InvalidSignature, ValueError):
        named = _named_key(raw)
        why = f" (the manifest names key {named})" if named and named != report.key_id else ""
        raise Broken(f"manifest.json is not signed by key {report.key_id}{why}: changed, or another key") from None
    report.checked.append(f"manifest signature (key {report.key_id})")
    manifest = json.loads(raw)  # signed: it is the exporter's JSON
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Broken(f"manifest.json: not a {FORMAT!r} manifest")
    report.manifest = manifest
    for name in SIGNED_MEMBERS:
        want = manifest["members"][name]
        if sha256(members[name]) != want["sha256"] or len(members[name]) != want["bytes"]:
            raise Broken(f"{name}: its sha256 differs from the manifest's: the member was changed")
    report.checked.append(f"sha256 of {', '.join(SIGNED_MEMBERS)}")
    checkpoints = {cp["seq"]: cp for cp in _lines(members["checkpoints.jsonl"], "checkpoints.jsonl")}
    for cp in checkpoints.values():
        if not signature_holds(public, cp["seq"], cp["head"], cp["ts"], cp["signature"]):
            raise Broken(f"the checkpoint at row {cp['seq']} ({cp['ts']}) is not signed by key {report.key_id}")
    report.checked.append(f"{len(checkpoints)} checkpoint signature{'s' if len(checkpoints) != 1 else ''}")
    selected = _lines(members["rows.jsonl"], "rows.jsonl")
    context = _lines(members["context.jsonl"], "context.jsonl")
    by_seq: dict[int, dict[str, Any]] = {}
    for row in selected + context:
        if set(row) != ROW_FIELDS or not _is_int(row["seq"]):
            raise Broken(f"a row of the bundle is not a journal row: {sorted(row)[:8]}")
        if row["seq"] in by_seq:
            raise Broken(f"row {row['seq']} is in the bundle twice")
        by_seq[row["seq"]] = row
    chain = json.loads(members["chain.json"])
    covered: set[int] = set()
    for segment in chain["segments"]:
        covered |= _walk_segment(segment["from"], segment["to"], checkpoints, by_seq)
    report.checked.append(f"chain of {len(covered)} rows in {len(chain['segments'])} segment(s), each row's hash")
    extra = sorted(set(by_seq) - covered)
    if extra:
        raise Broken(f"row {extra[0]} is in the bundle but in no segment of the chain (added)")
    seqs = [r["seq"] for r in selected]
    if seqs != sorted(seqs) or len(seqs) != manifest["rows"] or (seqs and seqs[0] != manifest["first_row"]):
        raise Broken(f"rows.jsonl holds {len(seqs)} rows, the manifest {manifest['rows']}: rows were moved")
    report.checked.append(f"{len(seqs)} selected rows, as the manifest counts them")


def _walk_segment(start: int, end: int, checkpoints: dict, rows: dict[int, dict[str, Any]]) -> set[int]:
    """Chain rows start+1..end from the head signed at ``start`` (0: the genesis) to the one signed at ``end``."""
    if end not in checkpoints or (start and start not in checkpoints):
        raise Broken(f"the chain segment {start} to {end} has no signed checkpoint at row {start or end}")
    prev = bytes.fromhex(checkpoints[start]["head"]) if start else GENESIS
    for seq in range(start + 1, end + 1):
        row = rows.get(seq)
        if row is None:
            raise Broken(f"row {seq} is missing: the chain from row {start} to the checkpoint at row {end} needs it")
        try:
            if not (_is_int(row["intent"]) or row["intent"] is None):
                raise TypeError
            prev = link(prev, seq, row["ts"], row["session"], row["kind"], row["name"], row["intent"], row["data"])
        except (TypeError, ValueError):
            raise Broken(f"row {seq} holds a value of the wrong type: it was changed") from None
        if prev.hex() != row["hash"]:
            raise Broken(f"row {seq}: its content does not follow from the chain before it (changed, added or moved)")
    if prev.hex() != checkpoints[end]["head"]:
        raise Broken(f"the chain does not reach the head signed at row {end}")
    return set(range(start + 1, end + 1))


def _lines(data: bytes, name: str) -> list[dict[str, Any]]:
    try:
        items = [json.loads(line) for line in data.decode().splitlines()]
    except (UnicodeDecodeError, ValueError):
        raise Broken(f"{name}: not one JSON object a line") from None
    if not all(isinstance(item, dict) for item in items):
        raise Broken(f"{name}: not one JSON object a line")
    return items


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _named_key(raw: bytes) -> str | None:
    try:
        named = json.loads(raw).get("key_id")
    except (ValueError, AttributeError):
        return None
    return named if isinstance(named, str) else None
