"""The evidence folder: the camera's JPEG images, and their retention (docs/evidence.md).

Everything here runs on the camera's queue (``fsm.evidence`` queues it), never on the
state machine's loop. An image's name says when it was taken, for which session and
why, and the start of its SHA-256: ``20260101T000004500Z.atm-0001-000001.card_inserted.
1a2b3c4d5e6f.jpg``; never anything of a card. The retention sweep goes by the time in
the name (the ATM's clock, not the file's mtime) and deletes only files named so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devices.base import DeviceError, Severity

log = logging.getLogger(__name__)

MB = 1024 * 1024
SHORT_HASH = 12  # hex digits of the SHA-256 in a file name
STAMP = "%Y%m%dT%H%M%S"
NAME = re.compile(r"(?P<stamp>\d{8}T\d{9}Z)\.[A-Za-z0-9_-]+\.[a-z0-9_]{1,32}\.[0-9a-f]{12}\.jpg")
REASON = re.compile(r"[a-z0-9_]{1,32}")
STALE_PART = timedelta(hours=1)  # a temporary file this old is a write a crash cut short (ours)
NOT_WRITTEN = "evidence_not_written"  # the camera's warning while images cannot be written (ours)


def image_name(taken: datetime, session: str | None, reason: str, sha256: str) -> str:
    """The file name of one image (no card data: a time, a session id, a reason, a hash)."""
    if not REASON.fullmatch(reason):
        raise ValueError(f"evidence reason {reason!r}: 1-32 of a-z, 0-9, '_'")
    session_part = session if session and re.fullmatch(r"[A-Za-z0-9_-]{1,80}", session) else "none"
    stamp = taken.astimezone(UTC).strftime(STAMP) + f"{taken.microsecond // 1000:03d}Z"
    return f"{stamp}.{session_part}.{reason}.{sha256[:SHORT_HASH]}.jpg"


def taken_at(name: str) -> datetime | None:
    """When the image ``name`` was taken, from its name; None for a file not named by us."""
    match = NAME.fullmatch(name)
    if match is None:
        return None
    stamp = match["stamp"]
    when = datetime.strptime(stamp[:15], STAMP).replace(tzinfo=UTC)
    return when + timedelta(milliseconds=int(stamp[15:18]))


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Image:
    taken: datetime
    name: str
    size: int


def default_folder(configured: str, journal_path: str) -> str | None:
    """``evidence.folder``, else ``evidence/`` next to the journal (``/var/lib/atm/evidence``
    once installed); None, no images, with an in-memory journal and no folder (ours)."""
    if configured:
        return configured
    if journal_path in ("", ":memory:"):
        return None
    return os.path.join(os.path.dirname(os.path.abspath(journal_path)), "evidence")


def folder_problem(folder: str) -> str | None:
    """Why the evidence folder cannot be made (or is no folder), or None once it exists."""
    try:
        os.makedirs(folder, mode=0o750, exist_ok=True)
    except OSError as exc:
        return f"cannot be made: {exc.strerror or exc}"
    return None


class EvidenceFolder:
    """Writes the images into ``folder`` and keeps it within ``keep_days`` and ``max_bytes``."""

    def __init__(self, folder: str, keep_days: int, max_bytes: int) -> None:
        self.folder = folder
        self.keep_days = keep_days
        self.max_bytes = max_bytes

    # -- writing --------------------------------------------------------------
    def capture(self, camera: Any, taken: datetime, session: str | None, reason: str) -> dict[str, Any]:
        """Snapshot, encode, hash and write one image (mode 0640). A folder that cannot
        be written raises the camera's ``evidence_not_written`` warning (a DeviceError)."""
        data, width, height = camera.jpeg_snapshot()
        sha256 = hashlib.sha256(data).hexdigest()
        name = image_name(taken, session, reason, sha256)
        try:
            self._write(name, data)
        except OSError as exc:
            message = f"evidence folder {self.folder}: {exc.strerror or exc}"
            raise DeviceError(camera.raise_fault(NOT_WRITTEN, message, Severity.WARNING)) from exc
        camera.clear_fault(NOT_WRITTEN)
        return {"reason": reason, "sha256": sha256, "file": name, "bytes": len(data), "width": width, "height": height}

    def _write(self, name: str, data: bytes) -> None:
        """The image under a temporary name, synced, then renamed: a file with the image's
        name is always the whole image."""
        os.makedirs(self.folder, mode=0o750, exist_ok=True)
        path = os.path.join(self.folder, name)
        temporary = os.path.join(self.folder, f".{name}.part")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.fchmod(fd, 0o640)  # whatever the umask: the customer area is not for all to see
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    # -- retention ------------------------------------------------------------
    def images(self) -> list[Image]:
        """The folder's images, oldest first (files not named as images are not ours)."""
        found = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            taken = taken_at(entry.name)
            if taken is not None and entry.is_file(follow_symlinks=False):
                found.append(Image(taken, entry.name, entry.stat(follow_symlinks=False).st_size))
        return sorted(found, key=lambda i: (i.taken, i.name))

    def sweep(self, now: datetime) -> list[dict[str, Any]]:
        """Delete the images older than ``keep_days``, then the oldest while the rest
        exceed ``max_bytes``; the images deleted (a file that will not go is kept)."""
        cutoff = now - timedelta(days=self.keep_days)
        self._drop_stale_parts(now - STALE_PART)
        images = self.images()
        kept = [i for i in images if i.taken >= cutoff]
        deleted = [self._delete(i, "age") for i in images if i.taken < cutoff]
        total = sum(i.size for i in kept)
        for image in kept:
            if total <= self.max_bytes:
                break
            deleted.append(self._delete(image, "size"))
            total -= image.size  # gone, or it will not go: the next one then
        return [d for d in deleted if d is not None]

    def _drop_stale_parts(self, before: datetime) -> None:
        """The temporary files of writes a crash cut short (not images: not journalled)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            if name.startswith(".") and name.endswith(".part"):
                taken = taken_at(name[1 : -len(".part")])
                if taken is not None and taken < before:
                    try:
                        os.unlink(os.path.join(self.folder, name))
                    except OSError as exc:
                        log.warning("evidence %s not deleted: %s", name, exc)

    def _delete(self, image: Image, why: str) -> dict[str, Any] | None:
        try:
            os.unlink(os.path.join(self.folder, image.name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("evidence %s not deleted: %s", image.name, exc)
            return None
        return {"file": image.name, "bytes": image.size, "why": why}
