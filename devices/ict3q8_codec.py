"""Sankyo ICT3Q8 card reader protocol: pure functions, bytes in and frames out.

Command ``F2 LEN 'C' CM PM [data] CRC``; reply ``F2 LEN 'P' CM PM st1 st0
[data] CRC`` or ``F2 LEN 'N' CM PM e1 e0 CRC``. LEN (2 bytes, big-endian)
counts from the 'C'/'P'/'N' through the data; the CRC is CRC-16/XMODEM over
``F2`` through the data. See ``docs/serial-devices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.serial_link import ProtocolError, byte_value, frame_bytes
from devices.serial_trace import noise_size

STX, ACK, NAK = 0xF2, 0x06, 0x15
COMMAND, POSITIVE, NEGATIVE = 0x43, 0x50, 0x4E
MAX_LEN = 512  # longer is garbage: the longest reply is a track of ~110 characters

INITIALISE, STATUS, MOVE, LED, READ_TRACK, ENTRY, IC = 0x30, 0x31, 0x33, 0x35, 0x36, 0x3A, 0x49
POSITIONS = {b"00": "none", b"01": "gate", b"02": "inside"}
HEX_DIGITS = "0123456789ABCDEF"  # an error code is two of them
_TABLE = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else _c << 1
    _TABLE.append(_c & 0xFFFF)


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final XOR."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ b]
    return crc


@dataclass(frozen=True)
class Reply:
    """A decoded reply frame. ``position`` for positive replies, ``error`` for negative."""

    cm: int
    pm: int
    positive: bool
    position: str = ""
    error: str = ""
    data: bytes = b""


def _frame(kind: int, cm: int, pm: int, body: bytes) -> bytes:
    payload = bytes([kind, byte_value(cm, "CM"), byte_value(pm, "PM")]) + body
    if len(payload) > MAX_LEN:
        raise ProtocolError(f"frame body of {len(payload)} bytes is too long")
    head = bytes([STX]) + len(payload).to_bytes(2, "big") + payload
    return head + crc16(head).to_bytes(2, "big")


def encode_command(cm: int, pm: int, data: bytes = b"") -> bytes:
    return _frame(COMMAND, cm, pm, frame_bytes(data, "command data"))


def encode_reply(reply: Reply) -> bytes:
    """The device frame for ``reply`` (for tests and tools); ProtocolError for one
    no frame carries (an unknown position, an error code that is not two hex digits)."""
    if reply.positive:
        st = next((k for k, v in POSITIONS.items() if v == reply.position), None)
        if st is None:
            raise ProtocolError(f"card position {reply.position!r:.20} is not one of {', '.join(POSITIONS.values())}")
        return _frame(POSITIVE, reply.cm, reply.pm, st + frame_bytes(reply.data, "reply data"))
    if not (isinstance(reply.error, str) and len(reply.error) == 2 and all(c in HEX_DIGITS for c in reply.error)):
        raise ProtocolError(f"error code {reply.error!r:.20} is not two hex characters")
    return _frame(NEGATIVE, reply.cm, reply.pm, reply.error.encode("ascii"))


def frame_length(header: bytes) -> int:
    """Total frame size from its first 3 bytes (``F2 LEN``)."""
    header = frame_bytes(header, "frame header")
    if len(header) < 3 or header[0] != STX:
        raise ProtocolError(f"frame does not start with F2: {bytes(header[:3]).hex(' ')}")
    size = int.from_bytes(header[1:3], "big")
    if not 3 <= size <= MAX_LEN:
        raise ProtocolError(f"frame length {size} is out of range 3..{MAX_LEN}")
    return size + 5


def _checked(frame: bytes) -> bytes:
    """The payload of a complete frame whose length and CRC are right."""
    frame = frame_bytes(frame)
    size = frame_length(frame)
    if len(frame) != size:
        raise ProtocolError(f"frame must be {size} bytes, got {len(frame)}")
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "big"):
        raise ProtocolError("frame CRC mismatch")
    return bytes(frame[3:-2])


def decode_command(frame: bytes) -> tuple[int, int, bytes]:
    """(CM, PM, data) of a command frame; the inverse of :func:`encode_command`."""
    payload = _checked(frame)
    if payload[0] != COMMAND:
        raise ProtocolError(f"not a command frame (type byte {payload[0]:02X})")
    return payload[1], payload[2], payload[3:]


def decode_reply(frame: bytes) -> Reply:
    payload = _checked(frame)
    kind, cm, pm, body = payload[0], payload[1], payload[2], payload[3:]
    if len(body) < 2:
        raise ProtocolError("reply has no status or error bytes")
    if kind == POSITIVE:
        position = POSITIONS.get(bytes(body[:2]))
        if position is None:
            raise ProtocolError(f"card position {bytes(body[:2])!r} is not 00, 01 or 02")
        return Reply(cm, pm, True, position=position, data=bytes(body[2:]))
    if kind == NEGATIVE:
        code = bytes(body[:2])
        if len(body) != 2 or not all(chr(b) in HEX_DIGITS for b in code):
            raise ProtocolError(f"error code {code!r} is not two hex characters")
        return Reply(cm, pm, False, error=code.decode("ascii"))
    raise ProtocolError(f"reply type byte {kind:02X} is neither P nor N")


def split_replies(data: bytes) -> list[Reply]:
    """Decode back-to-back reply frames."""
    data = frame_bytes(data, "reply frames")
    replies, i = [], 0
    while i < len(data):
        size = frame_length(data[i : i + 3])
        replies.append(decode_reply(data[i : i + size]))
        i += size
    return replies


def redact(chunk: bytes) -> str:
    """Hex dump for the trace, with track data hidden (it holds the card number)."""
    at = chunk.find(bytes([POSITIVE, READ_TRACK]))
    if at < 0 or len(chunk) <= at + 5:
        return chunk.hex(" ")
    keep = at + 5  # 'P' CM PM st1 st0
    hidden = max(0, len(chunk) - keep - 2)  # keep the CRC visible
    return f"{chunk[:keep].hex(' ')} <{hidden} bytes of track data> {chunk[keep + hidden :].hex(' ')}".strip()


# the trace (devices/serial_trace.py) -------------------------------------------------
COMMAND_NAMES = {
    INITIALISE: "initialise",
    STATUS: "status",
    MOVE: "move",
    LED: "led",
    READ_TRACK: "read_track",
    ENTRY: "entry",
    IC: "ic",
}
HEAD = 8  # bytes of a positive reply before its data: F2 LEN(2) 'P' CM PM st1 st0


def frame_size(buffer: bytes) -> int:
    """The length of the reader's first frame in ``buffer`` (0: more bytes needed to tell);
    a byte no frame starts with begins a run of noise."""
    first = buffer[0]
    if first in (ACK, NAK):
        return 1
    if first == STX:
        if len(buffer) < 3:
            return 0
        try:
            return frame_length(buffer[:3])
        except ProtocolError:
            pass
    return noise_size(buffer, bytes([STX, ACK, NAK]))


def describe_frame(
    frame: bytes, from_device: bool, complete: bool, meanings: dict[str, str] | None = None
) -> tuple[str, dict[str, object]]:
    """The trace's hex and decoded fields of one frame, with the track data hidden: a
    track read's data and CRC are shown as their length only, and bytes from the reader
    that are not a whole valid frame (noise, a cut or damaged frame: they may hold track
    data) as their length only (ours). ``meanings``: an error code's fault name."""
    if frame in (bytes([ACK]), bytes([NAK])):
        return frame.hex(" "), {"kind": "ack" if frame[0] == ACK else "nak"}
    if not from_device:
        return frame.hex(" "), _command_fields(frame)
    hidden = f"<{len(frame)} bytes not shown>"
    if not complete:
        return hidden, {"kind": "incomplete", "problem": f"{len(frame)} bytes, then the host went on"}
    try:
        reply = decode_reply(frame)
    except ProtocolError:
        return hidden, {"kind": "bad" if frame[0] == STX else "noise", "problem": "not a valid reply frame"}
    fields: dict[str, object] = {"kind": "reply", "command": COMMAND_NAMES.get(reply.cm, f"{reply.cm:02X}")}
    fields["pm"] = f"{reply.pm:02X}"
    if not reply.positive:
        return frame.hex(" "), {**fields, "error": reply.error, "meaning": (meanings or {}).get(reply.error, "")}
    fields["position"] = reply.position
    if reply.cm == IC and reply.pm == 0x30:  # activate: its data is the chip's ATR (other IC replies may hold
        # a chip's records, the card number among them: their length only, below)
        return frame.hex(" "), {**fields, **({"atr": reply.data.hex(" ")} if reply.data else {})}
    if reply.data:  # a track, or data of a command we do not know: its length only
        what = "track data" if reply.cm == READ_TRACK else "data"
        fields["data"] = f"<{len(reply.data)} bytes of {what}>"
        return f"{frame[:HEAD].hex(' ')} <{len(frame) - HEAD} bytes of {what} and CRC not shown>", fields
    return frame.hex(" "), fields


def _command_fields(frame: bytes) -> dict[str, object]:
    try:
        cm, pm, data = decode_command(frame)
    except ProtocolError as exc:
        return {"kind": "bad", "problem": str(exc)}
    fields: dict[str, object] = {"kind": "command", "command": COMMAND_NAMES.get(cm, f"{cm:02X}"), "pm": f"{pm:02X}"}
    if data:
        fields["data"] = data.hex(" ")
    return fields
