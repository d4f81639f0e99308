"""The ATM's Ed25519 key, which signs the journal's checkpoints.

The key is a PEM (PKCS #8) file, created with mode 0600 on first use when absent (ours);
``atm journal public-key`` prints its public half as PEM. A checkpoint signs
:func:`checkpoint_message`; its key id is the first 16 hex digits of the SHA-256 of the
raw 32-byte public key (ours).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import SigningKeyError


def checkpoint_message(seq: int, head: str, ts: str) -> bytes:
    """What a checkpoint's signature covers (ours): the row count, the chain head (hex) and the time."""
    return f"atm journal checkpoint v1|{seq:d}|{head}|{ts}".encode()


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the journal had ``seq`` rows and the chain head ``head`` at ``ts``."""

    seq: int
    ts: str
    head: str  # hex
    key_id: str
    public_key: str  # raw, hex
    signature: str  # hex

    def telemetry(self) -> dict:
        """The ``journal_checkpoint`` event's body (docs/telemetry.md)."""
        return {
            "event": "journal_checkpoint",
            "rows": self.seq,
            "head": self.head,
            "signed_at": self.ts,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def as_dict(self) -> dict:
        return asdict(self)


class Signer:
    """Signs checkpoints with one private key."""

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        public = private.public_key()
        self.public = public
        self.key_id = key_id(public)
        self.public_hex = raw_public(public).hex()

    def checkpoint(self, seq: int, head: bytes, ts: str) -> Checkpoint:
        head_hex = head.hex()
        signature = self._private.sign(checkpoint_message(seq, head_hex, ts)).hex()
        return Checkpoint(seq, ts, head_hex, self.key_id, self.public_hex, signature)


def default_key_path(journal_path: str) -> str:
    """``<journal>-signing.key`` (ours)."""
    return journal_path + "-signing.key"


def load_or_create(path: str) -> Ed25519PrivateKey:
    """The private key in ``path``; made (mode 0600) when the file does not exist, whole or
    not at all: written beside it, synced, then linked into place (a crash never leaves an
    empty key file)."""
    if os.path.exists(path):
        return load_private(path)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    folder = os.path.dirname(os.path.abspath(path))
    fd, part = tempfile.mkstemp(prefix=".signing-", dir=folder)  # mode 0600
    try:
        os.write(fd, pem)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(part, path)  # never replaces one made meanwhile
        except FileExistsError:
            return load_private(path)
    finally:
        os.unlink(part)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return private


def load_private(path: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``; refused when others may read it."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"signing key {path}: others may read it (mode {mode & 0o777:o}); chmod 600 {path}")
    with open(path, "rb") as f:
        data = f.read(64 * 1024)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"signing key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key {path}: not an Ed25519 key")
    return key


def parse_public(text: str, where: str) -> Ed25519PublicKey:
    """A public key written as PEM or as 64 hex digits (the raw key)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError(f"{where}: not an Ed25519 public key")
            return key
        raw = bytes.fromhex(text)
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, SigningKeyError):
            raise
        raise SigningKeyError(f"{where}: not an Ed25519 public key (PEM, or 64 hex digits)") from None


def signature_holds(public: Ed25519PublicKey, seq: int, head: str, ts: str, signature: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature), checkpoint_message(seq, head, ts))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
