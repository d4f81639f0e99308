"""Puloon LCDM dispenser protocol: pure functions, bytes in and frames out.

Host frame ``EOT ID STX CMD [DATA] ETX BCC``; device frame ``SOH ID STX CMD
... ETX BCC``; BCC is the XOR of everything before it. Device frames are cut
by the length their command implies, never by looking for ETX. See
``docs/serial-devices.md``.

The model-specific parts (ID byte, commands, layouts, how counts are written)
live in :class:`Model`. An LCDM-4000 (four cassettes, ID 0x30, counts as
value+0x20, status 0x50, dispense 0x52) is another ``Model`` with its own
dispense layout; the driver only asks the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

from devices.serial_link import ProtocolError, byte_value, frame_bytes
from devices.serial_trace import noise_size

EOT, SOH, STX, ETX, ACK, NAK = 0x04, 0x01, 0x02, 0x03, 0x06, 0x15

PURGE, STATUS, ROM_VERSION = 0x44, 0x46, 0x47
GOOD, NORMAL_STOP = 0x30, 0x31
MAX_NOTES = 60

CHECK_SENSORS = {  # (byte, bit) -> name; a set bit means the named condition holds
    (0, 0): "chk1",
    (0, 1): "chk2",
    (0, 2): "div1",
    (0, 3): "div2",
    (0, 4): "ejt",
    (0, 5): "exit",
    (0, 6): "upper_near_end",
    (1, 0): "solenoid",
    (1, 1): "upper_present",
    (1, 2): "lower_present",
    (1, 3): "chk3",
    (1, 4): "chk4",
    (1, 5): "lower_near_end",
    (1, 6): "reject_tray_present",
}


def bcc(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


@dataclass(frozen=True)
class CassetteCount:
    """One cassette's part of a dispense answer."""

    position: str
    check: int  # notes counted at the check sensor: they left the cassette
    exit: int  # notes counted at the exit sensor: they reached the customer
    rejects: int  # notes diverted to the reject tray
    near_end: bool


@dataclass(frozen=True)
class Reply:
    """A decoded device frame."""

    command: int
    error: int
    counts: tuple[CassetteCount, ...] = ()
    sensors: frozenset[str] = frozenset()
    version: str = ""

    @property
    def ok(self) -> bool:
        return self.error in (GOOD, NORMAL_STOP)


@dataclass(frozen=True)
class Model:
    """What differs between LCDM models."""

    name: str
    id: int
    positions: tuple[str, ...]
    dispense: dict[frozenset[str], int]  # positions -> command byte
    test_dispense: dict[str, int]  # position -> command byte
    lengths: dict[int, int] = field(default_factory=dict)  # command -> device frame length

    def encode_count(self, n: int) -> bytes:
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 99:
            raise ProtocolError(f"note count {n} cannot be written in two digits")
        return b"%02d" % n

    def decode_count(self, raw: bytes) -> int:
        raw = frame_bytes(raw, "count")
        if len(raw) != 2 or not raw.isdigit():
            raise ProtocolError(f"count {raw.hex(' ')} is not two ASCII digits")
        return int(raw)

    def command_data_length(self, command: int) -> int:
        byte_value(command, "command")
        for positions, cmd in self.dispense.items():
            if cmd == command:
                return 2 * len(positions)
        if command in self.test_dispense.values():
            return 2
        if command in self.lengths:
            return 0
        raise ProtocolError(f"unknown command 0x{command:02X}")

    def dispense_positions(self, command: int) -> tuple[str, ...]:
        for positions, cmd in self.dispense.items():
            if cmd == command:
                return tuple(p for p in self.positions if p in positions)
        for position, cmd in self.test_dispense.items():
            if cmd == command:
                return (position,)
        return ()


LCDM2000 = Model(
    name="LCDM-2000",
    id=0x50,
    positions=("upper", "lower"),
    dispense={frozenset({"upper"}): 0x45, frozenset({"lower"}): 0x55, frozenset({"upper", "lower"}): 0x56},
    test_dispense={"upper": 0x76, "lower": 0x77},
    lengths={PURGE: 7, STATUS: 10, ROM_VERSION: 10, 0x45: 14, 0x55: 14, 0x76: 14, 0x77: 14, 0x56: 21},
)


# host frames ---------------------------------------------------------------------
def encode_command(command: int, data: bytes = b"", model: Model = LCDM2000) -> bytes:
    data = frame_bytes(data, "command data")
    if model.command_data_length(command) != len(data):
        raise ProtocolError(f"command 0x{command:02X} takes {model.command_data_length(command)} data bytes")
    body = bytes([EOT, model.id, STX, command]) + data + bytes([ETX])
    return body + bytes([bcc(body)])


def dispense_command(counts: dict[str, int], model: Model = LCDM2000, test: bool = False) -> bytes:
    """The frame that dispenses ``counts`` ({position: notes}, each 1..60)."""
    if not isinstance(counts, dict) or not counts:
        raise ProtocolError(f"a dispense needs {{position: notes}}, not {counts!r:.40}")
    unknown = [p for p in counts if p not in model.positions]
    if unknown:
        raise ProtocolError(f"{model.name} has no cassette at {unknown[0]!r:.20} ({', '.join(model.positions)})")
    if any(not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NOTES for n in counts.values()):
        raise ProtocolError(f"each cassette dispenses a whole 1..{MAX_NOTES} notes, not {counts!r:.60}")
    if test:
        if len(counts) != 1:
            raise ProtocolError("a test dispense uses one cassette")
        ((position, n),) = counts.items()
        return encode_command(model.test_dispense[position], model.encode_count(n), model)
    command = model.dispense.get(frozenset(counts))
    if command is None:
        raise ProtocolError(f"no dispense command for cassettes {sorted(counts)}")
    data = b"".join(model.encode_count(counts[p]) for p in model.positions if p in counts)
    return encode_command(command, data, model)


def decode_command(frame: bytes, model: Model = LCDM2000) -> tuple[int, bytes]:
    """(command, data) of a host frame; the inverse of :func:`encode_command`."""
    frame = frame_bytes(frame, "host frame")
    if len(frame) < 6 or frame[0] != EOT or frame[1] != model.id or frame[2] != STX:
        raise ProtocolError(f"not a host frame: {frame[:8].hex(' ')}")
    command = frame[3]
    size = 6 + model.command_data_length(command)
    if len(frame) != size or frame[-2] != ETX:
        raise ProtocolError(f"host frame for 0x{command:02X} must be {size} bytes")
    if bcc(frame[:-1]) != frame[-1]:
        raise ProtocolError("host frame BCC mismatch")
    return command, bytes(frame[4:-2])


# device frames ------------------------------------------------------------------
def reply_length(command: int, model: Model = LCDM2000) -> int:
    byte_value(command, "command")
    try:
        return model.lengths[command]
    except KeyError:
        raise ProtocolError(f"no reply layout for command 0x{command:02X}") from None


def _sensors(b0: int, b1: int) -> frozenset[str]:
    if (b0 | b1) & 0x80:
        raise ProtocolError(f"sensor bytes {b0:02X} {b1:02X} have bit 7 set")
    return frozenset(name for (byte, bit), name in CHECK_SENSORS.items() if (b0, b1)[byte] >> bit & 1)


def decode_reply(frame: bytes, model: Model = LCDM2000) -> Reply:
    """Decode one complete device frame; raise ProtocolError for anything else."""
    frame = frame_bytes(frame, "device frame")
    if len(frame) < 4 or frame[0] != SOH or frame[1] != model.id or frame[2] != STX:
        raise ProtocolError(f"not a device frame: {bytes(frame[:8]).hex(' ')}")
    command = frame[3]
    size = reply_length(command, model)
    if len(frame) != size:
        raise ProtocolError(f"reply to 0x{command:02X} must be {size} bytes, got {len(frame)}")
    if frame[-2] != ETX:
        raise ProtocolError(f"reply to 0x{command:02X} has no ETX at byte {size - 2}")
    if bcc(frame[:-1]) != frame[-1]:
        raise ProtocolError(f"reply to 0x{command:02X}: BCC {frame[-1]:02X}, expected {bcc(frame[:-1]):02X}")
    if command == PURGE:
        return Reply(command, frame[4])
    if command == STATUS:
        return Reply(command, frame[5], sensors=_sensors(frame[6], frame[7]))
    if command == ROM_VERSION:
        text = bytes(frame[4:8])
        if not all(0x20 <= b < 0x7F for b in text):
            raise ProtocolError(f"ROM version {text.hex(' ')} is not printable ASCII")
        return Reply(command, GOOD, version=text.decode("ascii"))
    positions = model.dispense_positions(command)
    n = len(positions)
    counts_at, error_at = 4, 4 + 4 * n
    status_at, rejects_at = error_at + 1, error_at + 1 + n
    counts = []
    for i, position in enumerate(positions):
        check = model.decode_count(frame[counts_at + 4 * i : counts_at + 4 * i + 2])
        out = model.decode_count(frame[counts_at + 4 * i + 2 : counts_at + 4 * i + 4])
        rejects = model.decode_count(frame[rejects_at + 2 * i : rejects_at + 2 * i + 2])
        if out + rejects > check and command not in model.test_dispense.values():
            raise ProtocolError(f"{position}: {out} at exit + {rejects} rejected > {check} picked")
        counts.append(CassetteCount(position, check, out, rejects, frame[status_at + i] != GOOD))
    return Reply(command, frame[error_at], counts=tuple(counts))


def encode_reply(reply: Reply, model: Model = LCDM2000) -> bytes:
    """The device frame for ``reply``; the inverse of :func:`decode_reply` (for tests and tools).

    ProtocolError for a reply no device frame carries (an unknown command, counts
    for other cassettes than the command's, a byte out of range, a version not ASCII).
    """
    size = reply_length(reply.command, model)
    byte_value(reply.error, "error byte")
    head = bytes([SOH, model.id, STX, reply.command])
    if reply.command == PURGE:
        body = bytes([reply.error])
    elif reply.command == STATUS:
        unknown = set(reply.sensors) - set(CHECK_SENSORS.values())
        if unknown:
            raise ProtocolError(f"no sensor named {sorted(map(str, unknown))[0]!r:.20}")
        b = [0, 0]
        for (byte, bit), name in CHECK_SENSORS.items():
            if name in reply.sensors:
                b[byte] |= 1 << bit
        body = bytes([GOOD, reply.error, *b])
    elif reply.command == ROM_VERSION:
        if not (isinstance(reply.version, str) and all(" " <= c < "\x7f" for c in reply.version)):
            raise ProtocolError(f"ROM version {reply.version!r:.20} is not printable ASCII")
        body = reply.version.encode("ascii")[:4].ljust(4)
    else:
        if not all(isinstance(c, CassetteCount) for c in reply.counts):
            raise ProtocolError("a dispense reply's counts must be CassetteCount")
        positions = tuple(c.position for c in reply.counts)
        if positions != model.dispense_positions(reply.command):
            raise ProtocolError(
                f"a reply to 0x{reply.command:02X} counts {', '.join(model.dispense_positions(reply.command))},"
                f" not {', '.join(map(str, positions)) or 'nothing'}"
            )
        body = b"".join(model.encode_count(c.check) + model.encode_count(c.exit) for c in reply.counts)
        body += bytes([reply.error]) + bytes(0x31 if c.near_end else GOOD for c in reply.counts)
        body += b"".join(model.encode_count(c.rejects) for c in reply.counts)
    frame = head + body + bytes([ETX])
    if len(frame) + 1 != size:
        raise ProtocolError(f"a reply to 0x{reply.command:02X} is {size} bytes, this one {len(frame) + 1}")
    return frame + bytes([bcc(frame)])


def split_replies(data: bytes, model: Model = LCDM2000) -> list[Reply]:
    """Decode back-to-back device frames (each cut by its command's length)."""
    data = frame_bytes(data, "device frames")
    replies, i = [], 0
    while i < len(data):
        if len(data) - i < 4:
            raise ProtocolError(f"{len(data) - i} trailing bytes are not a frame")
        size = reply_length(data[i + 3], model) if data[i] == SOH else 0
        if not size:
            raise ProtocolError(f"byte {i} is {data[i]:02X}, not SOH")
        replies.append(decode_reply(data[i : i + size], model))
        i += size
    return replies


# the trace (devices/serial_trace.py) -------------------------------------------------
COMMAND_NAMES = {PURGE: "purge", STATUS: "status", ROM_VERSION: "rom_version"}
REPLY_MEANINGS = {GOOD: "good", NORMAL_STOP: "normal_stop"}


def command_name(command: int, model: Model = LCDM2000) -> str:
    if command in model.dispense.values():
        return "dispense"
    if command in model.test_dispense.values():
        return "test_dispense"
    return COMMAND_NAMES.get(command, f"0x{command:02X}")


def frame_size(buffer: bytes, model: Model = LCDM2000) -> int:
    """The length of the device's first frame in ``buffer`` (0: more bytes needed to tell);
    a byte no frame starts with begins a run of noise."""
    first = buffer[0]
    if first in (ACK, NAK):
        return 1
    if first == SOH:
        if len(buffer) < 4:
            return 0
        if buffer[3] in model.lengths:
            return model.lengths[buffer[3]]
    return noise_size(buffer, bytes([SOH, ACK, NAK]))


def describe_frame(
    frame: bytes, from_device: bool, complete: bool, model: Model = LCDM2000, meanings: dict[int, str] | None = None
) -> tuple[str, dict[str, object]]:
    """The trace's hex and decoded fields of one frame (nothing here is secret);
    ``meanings``: an error code's fault name, for the replies."""
    text = frame.hex(" ")
    if frame in (bytes([ACK]), bytes([NAK])):
        return text, {"kind": "ack" if frame[0] == ACK else "nak"}
    if not complete:
        return text, {"kind": "incomplete", "problem": f"{len(frame)} bytes, then the host went on"}
    try:
        fields = _reply_fields(frame, model, meanings or {}) if from_device else _command_fields(frame, model)
    except ProtocolError as exc:
        kind = "noise" if frame[0] not in (EOT, SOH) else "bad"
        return text, {"kind": kind, "problem": str(exc)}
    return text, fields


def _command_fields(frame: bytes, model: Model) -> dict[str, object]:
    command, data = decode_command(frame, model)
    fields: dict[str, object] = {"kind": "command", "command": command_name(command, model)}
    positions = model.dispense_positions(command)
    if positions:
        fields["notes"] = {p: model.decode_count(data[2 * i : 2 * i + 2]) for i, p in enumerate(positions)}
    return fields


def _reply_fields(frame: bytes, model: Model, meanings: dict[int, str]) -> dict[str, object]:
    reply = decode_reply(frame, model)
    fields: dict[str, object] = {"kind": "reply", "command": command_name(reply.command, model)}
    if reply.command == ROM_VERSION:
        return {**fields, "version": reply.version}
    fields["error"] = f"0x{reply.error:02X}"
    fields["meaning"] = REPLY_MEANINGS.get(reply.error) or meanings.get(reply.error, "unknown_error")
    if reply.command == STATUS:
        fields["sensors"] = sorted(reply.sensors)
    if reply.counts:
        fields["counts"] = {
            c.position: {"check": c.check, "exit": c.exit, "rejects": c.rejects, "near_end": c.near_end}
            for c in reply.counts
        }
    return fields
