"""Command APDUs, status words and one exchange with the card, following 61xx and 6Cxx."""

from __future__ import annotations

from collections.abc import Callable

from devices.emv.errors import CardRemoved, ChipReadError, ChipTransportError

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
    return SELECT_BY_NAME + bytes([len(name)]) + name + b"\x00"


def read_record(sfi: int, record: int) -> bytes:
    return READ_RECORD + bytes([record, (sfi << 3) | 4, 0])


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
            part, sw1, sw2 = transmit(command)
        except CardRemoved as err:
            raise ChipReadError("removed", f"card removed during {describe(apdu)}") from err
        except ChipTransportError as err:  # CardMute, or a transport that cannot tell
            raise ChipReadError("mute", f"no answer from the card to {describe(apdu)}") from err
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


def expect_ok(sw: int, apdu: bytes) -> None:
    if sw != SW_OK:
        raise ChipReadError("unknown_status", f"{describe(apdu)} answered {sw:04X}")
