"""The LCDM-2000's protocol facts as the emulator knows them: framing bytes, commands,
answer codes, sensor bits, jams and cassettes, and the frame and count helpers."""

from __future__ import annotations

from dataclasses import dataclass

SOH, STX, ETX, EOT, ACK, NAK = 0x01, 0x02, 0x03, 0x04, 0x06, 0x15
DEVICE_ID = 0x50

PURGE, UPPER, STATUS, ROM, LOWER, BOTH, TEST_UPPER, TEST_LOWER = (0x44, 0x45, 0x46, 0x47, 0x55, 0x56, 0x76, 0x77)
DATA_LENGTH = {PURGE: 0, STATUS: 0, ROM: 0, UPPER: 2, LOWER: 2, BOTH: 4, TEST_UPPER: 2, TEST_LOWER: 2}
# dispense command -> (cassettes in order, notes go to the reject tray)
DISPENSES = {
    UPPER: (("upper",), False),
    LOWER: (("lower",), False),
    BOTH: (("upper", "lower"), False),
    TEST_UPPER: (("upper",), True),
    TEST_LOWER: (("lower",), True),
}

GOOD = 0x30
NEAR_END = 0x31  # cassette status byte
PICKUP_ERROR = 0x32
UNDEFINED_COMMAND = 0x37
NOTE_REQUEST_ERROR = 0x3B
TRAY_MISSING = 0x3F
OVER_REJECT = 0x44

# sensor byte [6]
CHK1, CHK2, DIV1, DIV2, EJT, EXIT, UPPER_NEAR_END = (1 << i for i in range(7))
# sensor byte [7]
SOLENOID, UPPER_PRESENT, LOWER_PRESENT, CHK3, CHK4, LOWER_NEAR_END, TRAY_PRESENT = (1 << i for i in range(7))

MAX_NOTES = 60  # per cassette per command
NEAR_END_BELOW = 30  # fewer notes than this: near end
MAX_UNKNOWN_DATA = 8  # data bytes read while looking for an unknown frame's ETX


@dataclass(frozen=True)
class Jam:
    code: int
    sensor6: int = 0
    sensor7: int = 0


JAMS = {
    "jam_chk": Jam(0x33, sensor6=CHK1 | CHK2),
    "jam_chk34": Jam(0x4C, sensor7=CHK3 | CHK4),
    "jam_div": Jam(0x36, sensor6=DIV1 | DIV2),
    "jam_exit": Jam(0x35, sensor6=EJT | EXIT),
    "jam_ejt": Jam(0x48, sensor6=EJT),
}


@dataclass(frozen=True)
class Cassette:
    bill_end: int
    missing: int


CASSETTES = {"upper": Cassette(0x38, 0x45), "lower": Cassette(0x40, 0x46)}


@dataclass
class Tally:
    """What one cassette did in one dispense."""

    check: int = 0
    exit: int = 0
    rejects: int = 0


def bcc(data: bytes) -> int:
    """XOR of every byte."""
    out = 0
    for b in data:
        out ^= b
    return out


def response(cmd: int, body: bytes) -> bytes:
    """``SOH ID STX CMD body ETX BCC``."""
    frame = bytes([SOH, DEVICE_ID, STX, cmd]) + body + bytes([ETX])
    return frame + bytes([bcc(frame)])


def digits(n: int) -> bytes:
    """A count as two ASCII digits."""
    return b"%02d" % n


def parse_counts(data: bytes) -> list[int] | None:
    """Two-digit note counts, each 1..60; None when any is bad."""
    counts = []
    for i in range(0, len(data), 2):
        pair = data[i : i + 2]
        if len(pair) != 2 or not pair.isdigit() or not 1 <= int(pair) <= MAX_NOTES:
            return None
        counts.append(int(pair))
    return counts
