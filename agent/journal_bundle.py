"""The export bundle's file format: a tar of fixed members, written byte for byte the same
way by the exporter and the verifier (docs/journal.md, "Export for a request").

The tar is USTAR with every header field fixed (mode 0644, owner 0, time 0, no user
names) and its members in :data:`MEMBERS` order (ours), so the verifier rebuilds it from
the members it read and compares the bytes: a changed byte in a header or a padding
block is found as surely as one in a member. ``manifest.sig`` is the Ed25519 signature
of :func:`manifest_message` in hex.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

FORMAT = "atm journal export v1"
MEMBERS = ("manifest.json", "manifest.sig", "rows.jsonl", "context.jsonl", "checkpoints.jsonl", "chain.json")
SIGNED_MEMBERS = MEMBERS[2:]  # those whose sha256 the manifest lists
MAX_BYTES = 1 << 30  # a bundle larger than this is refused unread (ours)


class BundleError(ValueError):
    """The file is no bundle of this format, or a member is missing or unexpected."""


def manifest_message(manifest: bytes) -> bytes:
    """What ``manifest.sig`` signs (ours): a prefix no checkpoint message shares, then the manifest's bytes."""
    return FORMAT.encode() + b"\n" + manifest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(members: dict[str, bytes]) -> bytes:
    """The tar of ``members`` (every name of :data:`MEMBERS`), always the same bytes for the same members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in MEMBERS:
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.type = len(data), 0o644, 0, tarfile.REGTYPE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def unpack(blob: bytes) -> dict[str, bytes]:
    """The members of the bundle ``blob``; BundleError when it is not exactly the tar :func:`pack` makes."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
            for info in tar:
                if info.name not in MEMBERS or info.name in members or not info.isreg():
                    raise BundleError(f"unexpected member {info.name!r} (a bundle holds {', '.join(MEMBERS)})")
                file = tar.extractfile(info)
                assert file is not None  # a regular file
                members[info.name] = file.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"not a bundle: not a readable tar archive ({exc})") from None
    missing = [name for name in MEMBERS if name not in members]
    if missing:
        raise BundleError(f"member {', '.join(missing)} missing (or its tar header was changed)")
    if pack(members) != blob:
        raise BundleError("the archive's bytes differ from the tar of its members: a tar header or padding was changed")
    return members
