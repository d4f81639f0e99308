"""Command APDUs, status words and one exchange with the card, following 61xx and 6Cxx."""

from __future__ import annotations

from collections.abc import Callable

from devices.emv.errors import CardRemoved, ChipReadError, ChipTransportError, malformed

# commands ------------------------------------------------------------------
SELECT_BY_NAME = bytes.fromhex("00A40400")  # + Lc + name + Le 00
READ_RECORD = bytes.fromhex("00B2")  # + record + (sfi << 3 | 4) + Le 00
GET_RESPONSE = bytes.fromhex("00C00000")  # + Le
GET_PROCESSING_OPTIONS = bytes.fromhex("80A80000")  # + Lc + 83 len PDOL-data + Le 00
PSE_NAME = b"1PAY.SYS.DDF01"

# status words ----------------------------------------------------------------
SW_OK = 0x9000
SW_FILE_INVALIDATED = 0x6283  # SELECT: application (or PSE) blocked
SW_CONDITIONS_NOT_SATISFIED = 0x6985  # GPO: this application refuses the transaction here
SW_FUNCTION_NOT_SUPPORTED = 0x6A81  # SELECT: card blocked or SELECT not supported
SW_FILE_NOT_FOUND = 0x6A82  # SELECT: no such application / no PSE
SW_RECORD_NOT_FOUND = 0x6A83  # READ RECORD: past the last record
SW1_MORE_DATA = 0x61  # 61xx: xx bytes waiting for GET RESPONSE
SW1_WRONG_LE = 0x6C  # 6Cxx: resend with Le = xx

MAX_ROUNDS = 32  # GET RESPONSE / resend rounds for one command

Transmit = Callable[[bytes], tuple[bytes, int, int]]


# APDUs -------------------------------------------------------------------------
def select(name: bytes) -> bytes:
    """SELECT by name (an AID or the PSE's, 1-16 bytes)."""
    if not isinstance(name, (bytes, bytearray)) or not 1 <= len(name) <= 16:
        raise malformed(f"cannot SELECT {type(name).__name__} of {_size(name)}: a name is 1-16 bytes")
    return SELECT_BY_NAME + bytes([len(name)]) + bytes(name) + b"\x00"


def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD ``record`` (1-255) of ``sfi`` (1-30)."""
    if not (_whole(sfi) and 1 <= sfi <= 30 and _whole(record) and 1 <= record <= 255):
        raise malformed(f"cannot READ RECORD {record!r:.20} of SFI {sfi!r:.20} (SFI 1-30, record 1-255)")
    return READ_RECORD + bytes([record, (sfi << 3) | 4, 0])


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else "no bytes"


def describe(apdu: bytes) -> str:
    """The command for an error message (never holds card data)."""
    head = apdu[:2]
    if head == SELECT_BY_NAME[:2]:
        name = apdu[5 : 5 + apdu[4]] if len(apdu) > 4 else b""
        shown = name.decode() if name.isascii() and name.decode().isprintable() else name.hex().upper()
        return f"SELECT {shown}"
    if head == READ_RECORD:
        return f"READ RECORD {apdu[2]} of SFI {apdu[3] >> 3}"
    if head == GET_PROCESSING_OPTIONS[:2]:
        return "GET PROCESSING OPTIONS"
    if head == GET_RESPONSE[:2]:
        return "GET RESPONSE"
    return f"command {apdu[:4].hex().upper()}"


def with_le(apdu: bytes, le: int) -> bytes:
    """``apdu`` with its Le set (or added) to ``le``."""
    if len(apdu) <= 5:  # case 1 or 2: header [+ Le]
        return apdu[:4] + bytes([le])
    return apdu[: 5 + apdu[4]] + bytes([le])  # case 3 or 4: header Lc data [+ Le]


def exchange(transmit: Transmit, apdu: bytes) -> tuple[bytes, int]:
    """Send ``apdu``, following 61xx (GET RESPONSE) and 6Cxx (resend with
    Le=xx) for at most MAX_ROUNDS rounds; return (data, sw) e.g. (b"...", 0x9000)."""
    command, data = apdu, b""
    for _ in range(MAX_ROUNDS):
        try:
            answer = transmit(command)
        except CardRemoved as err:
            raise ChipReadError("removed", f"card removed during {describe(apdu)}") from err
        except ChipTransportError as err:  # CardMute, or a transport that cannot tell
            raise ChipReadError("mute", f"no answer from the card to {describe(apdu)}") from err
        part, sw1, sw2 = _answer(answer, apdu)
        if sw1 == SW1_MORE_DATA:
            data += bytes(part)
            command = GET_RESPONSE + bytes([sw2])
        elif sw1 == SW1_WRONG_LE:
            command = with_le(command, sw2)
        else:
            return data + bytes(part), (sw1 << 8) | sw2
    raise ChipReadError(
        "malformed", f"{describe(apdu)}: the card still wanted GET RESPONSE or a resend after {MAX_ROUNDS} rounds"
    )


def _answer(answer: object, apdu: bytes) -> tuple[bytes, int, int]:
    """(data, sw1, sw2) as the transport must give them (data as bytes or, as pyscard
    gives it, a list of ints); malformed otherwise."""
    if isinstance(answer, tuple) and len(answer) == 3:
        data, sw1, sw2 = answer
        if isinstance(data, list) and all(_whole(b) and 0 <= b <= 0xFF for b in data):
            data = bytes(data)
        if isinstance(data, (bytes, bytearray)) and all(_whole(b) and 0 <= b <= 0xFF for b in (sw1, sw2)):
            return bytes(data), sw1, sw2
    raise malformed(f"the transport's answer to {describe(apdu)} is not (data, sw1, sw2)")


def expect_ok(sw: int, apdu: bytes) -> None:
    if sw != SW_OK:
        raise ChipReadError("unknown_status", f"{describe(apdu)} answered {sw:04X}")
