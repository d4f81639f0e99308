"""What became of an evidence image: ``atm journal evidence SHA256`` (docs/evidence.md).

The journal's ``evidence`` steps name each image by its SHA-256 and file; the
``evidence_deleted`` events name what the retention sweep deleted. An image is then
``intact`` (its file still has that hash), ``deleted`` (by retention), ``changed`` (the
file no longer has the hash) or ``missing`` (gone, and retention did not delete it).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from typing import Any

from agent.evidence import file_sha256

SHA_PREFIX = re.compile(r"[0-9a-f]{12,64}")  # a whole SHA-256, or at least the 12 digits of a file name
TROUBLE = ("changed", "missing")


def evidence_rows(db: sqlite3.Connection, sha: str) -> list[dict[str, Any]]:
    """The ``evidence`` steps whose image's SHA-256 starts with ``sha`` (lower-case hex)."""
    sql = (
        "SELECT seq, ts, session, data FROM entries WHERE name = 'evidence'"
        " AND substr(json_extract(data, '$.sha256'), 1, ?) = ? ORDER BY seq"
    )
    return [
        {"row": seq, "ts": ts, "session": session, **json.loads(data)}
        for seq, ts, session, data in db.execute(sql, (len(sha), sha))
    ]


def deletions(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """file -> the ``evidence_deleted`` row that names it (row and time)."""
    found: dict[str, dict[str, Any]] = {}
    for seq, ts, data in db.execute("SELECT seq, ts, data FROM entries WHERE name = 'evidence_deleted' ORDER BY seq"):
        for name in json.loads(data).get("files", []):
            found[name] = {"row": seq, "ts": ts}
    return found


def verdict(row: dict[str, Any], folder: str, deleted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One evidence row's image, as found in ``folder`` now."""
    path = os.path.join(folder, row["file"])
    if os.path.isfile(path):
        now = file_sha256(path)
        return {"state": "intact" if now == row["sha256"] else "changed", "path": path, "sha256_now": now}
    if row["file"] in deleted:
        return {"state": "deleted", "path": path, "deleted_by": deleted[row["file"]]}
    return {"state": "missing", "path": path}


def check(db: sqlite3.Connection, sha: str, folder: str) -> dict[str, Any]:
    """Every row that references the image ``sha``, each with what became of its file."""
    rows = [r for r in evidence_rows(db, sha) if "file" in r]
    deleted = deletions(db) if rows else {}
    images = [{**r, **verdict(r, folder, deleted)} for r in rows]
    ok = bool(images) and not any(i["state"] in TROUBLE for i in images)
    return {"sha256": sha, "folder": folder, "ok": ok, "images": images}
