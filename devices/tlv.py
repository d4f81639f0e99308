"""BER-TLV as used by EMV cards (EMV Book 3, Annex B).

Tags are kept as ints (``0x9F38``). Lengths are definite: one byte, or
``81``/``82``/``83`` followed by 1-3 length bytes. ``00`` and ``FF`` bytes
between objects are padding and skipped. Anything malformed raises
:class:`TlvError`, whose messages name tags and offsets but never values
(a value may be a card number).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MAX_DEPTH = 16  # nesting of constructed objects
MAX_TAG_BYTES = 4  # EMV uses at most 3
PADDING = (0x00, 0xFF)


class TlvError(ValueError):
    """Bytes that are not valid BER-TLV."""


def _tag_int(tag: object) -> int:
    """``tag`` if it is a positive int (not a bool); TlvError otherwise."""
    if not isinstance(tag, int) or isinstance(tag, bool) or tag <= 0:
        raise TlvError(f"tag {tag!r:.20} is not a positive int")
    return tag


def _as_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TlvError(f"{what}: expected bytes, got {type(data).__name__}")
    return bytes(data)


def _tag_bytes(tag: int) -> bytes:
    """The encoding of ``tag``; TlvError if it is not a well-formed tag."""
    _tag_int(tag)
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    if len(raw) > MAX_TAG_BYTES:
        raise TlvError(f"tag {tag:X} is longer than {MAX_TAG_BYTES} bytes")
    if raw[0] in PADDING:
        raise TlvError(f"tag {tag:X} starts with a padding byte")
    multi = raw[0] & 0x1F == 0x1F
    if not multi and len(raw) > 1:
        raise TlvError(f"tag {tag:X}: first byte does not announce more tag bytes")
    if multi and (len(raw) == 1 or any(b & 0x80 == 0 for b in raw[1:-1]) or raw[-1] & 0x80):
        raise TlvError(f"tag {tag:X}: bad continuation bits")
    return raw


@dataclass(frozen=True, repr=False)
class Tlv:
    """One data object. ``children`` holds the parsed content of a constructed
    tag. The repr shows tags and lengths only, never values."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] = field(default=None, compare=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.children is None:  # built by hand: check it, parse a constructed value now
            _tag_int(self.tag)
            object.__setattr__(self, "value", _as_bytes(self.value, f"tag {self.tag:X}"))
            kids = tuple(_parse(self.value, 1)) if self.constructed else ()
            object.__setattr__(self, "children", kids)

    @property
    def constructed(self) -> bool:
        """Bit 6 (0x20) of the first tag byte."""
        return tag_constructed(self.tag)

    def __repr__(self) -> str:
        # never the value: it may be a card number or track data
        inside = f", children={list(self.children)!r}" if self.children else ""
        return f"Tlv({self.tag:X}, {len(self.value)} bytes{inside})"


def tag_constructed(tag: int) -> bool:
    """Bit 6 (0x20) of the tag's first byte."""
    _tag_int(tag)
    return bool((tag >> (8 * (max(1, (tag.bit_length() + 7) // 8) - 1))) & 0x20)


def _read_tag(data: bytes, i: int) -> tuple[int, int]:
    """The tag starting at ``data[i]`` and the offset just after it."""
    start, n = i, len(data)
    tag = data[i]
    i += 1
    if tag & 0x1F == 0x1F:  # more tag bytes follow, each with b8 set but the last
        while True:
            if i >= n:
                raise TlvError(f"tag at offset {start} is truncated")
            if i - start >= MAX_TAG_BYTES:
                raise TlvError(f"tag at offset {start} is longer than {MAX_TAG_BYTES} bytes")
            b = data[i]
            i += 1
            tag = (tag << 8) | b
            if not b & 0x80:
                break
    return tag, i


def _parse(data: bytes, depth: int) -> list[Tlv]:
    if depth > MAX_DEPTH:
        raise TlvError(f"objects nested deeper than {MAX_DEPTH} levels")
    out: list[Tlv] = []
    i, n = 0, len(data)
    while i < n:
        if data[i] in PADDING:
            i += 1
            continue
        start = i
        tag, i = _read_tag(data, i)
        if i >= n:
            raise TlvError(f"tag {tag:X} at offset {start} has no length")
        length = data[i]
        i += 1
        if length == 0x80:
            raise TlvError(f"tag {tag:X} at offset {start} uses the indefinite length form")
        if length > 0x80:
            count = length & 0x7F
            if count > 3:
                raise TlvError(f"tag {tag:X} at offset {start}: {count}-byte length is not supported")
            if i + count > n:
                raise TlvError(f"tag {tag:X} at offset {start}: length is truncated")
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > n:
            raise TlvError(f"tag {tag:X} at offset {start}: length {length} runs past the end ({n - i} bytes left)")
        value = bytes(data[i : i + length])
        i += length
        obj = Tlv(tag, value, tuple(_parse(value, depth + 1)) if tag_constructed(tag) else ())
        out.append(obj)
    return out


def parse(data: bytes) -> list[Tlv]:
    """All top-level objects in ``data``, constructed ones parsed recursively."""
    return _parse(_as_bytes(data, "TLV data"), 0)


def _walk(tlvs: Iterable[Tlv]) -> Iterator[Tlv]:
    for t in tlvs:
        yield t
        yield from _walk(t.children)


def _objects(tlvs: Iterable[Tlv]) -> list[Tlv]:
    """``tlvs`` as a list of Tlv; TlvError for anything else."""
    if isinstance(tlvs, Tlv) or not isinstance(tlvs, Iterable):
        raise TlvError(f"expected data objects, got {type(tlvs).__name__}")
    found = list(tlvs)
    if not all(isinstance(t, Tlv) for t in found):
        raise TlvError("expected data objects (Tlv)")
    return found


def find(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with ``tag``, depth-first (pre-order), or None."""
    return next((t for t in _walk(_objects(tlvs)) if t.tag == tag), None)


def find_all(tlvs: Iterable[Tlv], tag: int) -> list[Tlv]:
    """Every object with ``tag``, depth-first (pre-order)."""
    return [t for t in _walk(_objects(tlvs)) if t.tag == tag]


def encode_length(length: int) -> bytes:
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise TlvError(f"length {length!r:.20} is not a whole number of bytes")
    if length < 0x80:
        return bytes([length])
    for count in (1, 2, 3):
        if length < 1 << (8 * count):
            return bytes([0x80 | count]) + length.to_bytes(count, "big")
    raise TlvError(f"length {length} does not fit in 3 bytes")


def encode(tag: int, value: bytes) -> bytes:
    """``tag`` + length + ``value``."""
    value = _as_bytes(value, "value")
    return _tag_bytes(tag) + encode_length(len(value)) + value


def parse_dol(data: bytes) -> list[tuple[int, int]]:
    """A data object list (PDOL, CDOL): (tag, length) pairs, one length byte each."""
    data = _as_bytes(data, "DOL")
    out: list[tuple[int, int]] = []
    i, n = 0, len(data)
    while i < n:
        start = i
        tag, i = _read_tag(data, i)
        if i >= n:
            raise TlvError(f"DOL entry {tag:X} at offset {start} has no length")
        out.append((tag, data[i]))
        i += 1
    return out
