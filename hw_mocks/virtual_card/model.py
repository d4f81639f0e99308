"""The virtual card's answers to command APDUs (no I/O).

- SELECT by name ``00 A4 04 00 Lc name [Le]``: the PSE answers FCI
  ``6F``(``84`` name, ``A5``(``88`` SFI 1)), or ``6A82`` when ``pse`` is
  false. An AID (or a prefix of at least 5 bytes of one: partial selection)
  answers FCI ``6F``(``84`` AID, ``A5``(``50`` label, ``87`` priority,
  ``9F38`` PDOL if any)) with ``9000``, or with ``6283`` when the
  application is blocked; an unknown name ``6A82``. P1 other than 04 or
  P2 other than 00: ``6A86`` (P2 02, "next occurrence": ``6A82``).
- READ RECORD ``00 B2 rec (SFI<<3)|4 [Le]``: SFI 1 (PSE selected) holds
  one record ``70`` with a ``61``(``4F`` AID, ``50`` label, ``87``
  priority) per application. SFI 2 (an application selected) holds record
  1 ``70``(``57`` track 2 equivalent: PAN ``D`` YYMM service code
  ``0000000000``, F-padded) and record 2 ``70``(``5A`` PAN F-padded,
  ``5F24`` expiry, ``5F28`` country, ``5F30`` service code). A record past
  the last: ``6A83``; an SFI not in the selected file: ``6A82``; P2 whose
  low 3 bits are not 100, or record 0: ``6A86``.
- GET PROCESSING OPTIONS ``80 A8 00 00 Lc 83 L pdol-data [Le]``: ``6700``
  unless the data is ``83 L`` + L bytes with L the sum of the PDOL's
  lengths (0 without a PDOL); ``6985`` without a selected application or
  when it is blocked. Answer: format 1 ``80``(AIP ``1800`` + AFL) or
  format 2 ``77``(``82`` AIP, ``94`` AFL). The AFL is ``10 01 02 00``
  (SFI 2, records 1..2, no offline data authentication records).
- GET RESPONSE ``00 C0 00 00 Le``: see ``chunk``; nothing waiting:
  ``6985``. Any other command discards data still waiting.
- A command whose Le is present, not ``00`` and smaller than the answer's
  data answers ``6Cxx`` (xx = the data's length) without data.
- A command that is not a well-formed short APDU: ``6700``. A CLA other
  than 00/80, or the wrong one of them for the INS: ``6E00``. An unknown
  INS: ``6D00``.
- Power on / power off / reset return the card to its just-reset state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hw_mocks.virtual_card.profiles import Application, Profile

PSE_NAME = b"1PAY.SYS.DDF01"
PSE_SFI = 1
APP_SFI = 2
AIP = bytes.fromhex("1800")
AFL = bytes([APP_SFI << 3, 1, 2, 0])
TRACK2_DISCRETIONARY = "0000000000"

# Status words.
SW_OK = b"\x90\x00"
SW_SELECTED_INVALIDATED = b"\x62\x83"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS = b"\x69\x85"
SW_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS_UNKNOWN = b"\x6d\x00"
SW_CLA_UNKNOWN = b"\x6e\x00"
SW_NO_DIAGNOSIS = b"\x6f\x00"

INS_SELECT, INS_READ_RECORD, INS_GPO, INS_GET_RESPONSE = 0xA4, 0xB2, 0xA8, 0xC0


# --------------------------------------------------------------------------
# TLV encoding (the card's own; it never parses TLV)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


def _tlv(tag: str, value: bytes, broken: bool = False) -> bytes:
    """BER-TLV of a hex tag; ``broken`` claims 16 bytes more than the value has."""
    return bytes.fromhex(tag) + _length(len(value) + (16 if broken else 0)) + value


def _bcd(digits: str) -> bytes:
    """Packed BCD (hex digits allowed, e.g. 'D'), padded with F to whole bytes."""
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


# --------------------------------------------------------------------------
# The card


@dataclass(frozen=True)
class _Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le; 1..256 (a 00 byte is 256)


def _parse_apdu(raw: bytes) -> _Command | None:
    """A short command APDU by its fixed layout (ISO 7816-4 cases 1..4)."""
    n = len(raw)
    if n < 4:
        return None
    cla, ins, p1, p2 = raw[:4]
    if n == 4:
        return _Command(cla, ins, p1, p2, b"", None)
    if n == 5:
        return _Command(cla, ins, p1, p2, b"", raw[4] or 256)
    lc = raw[4]
    if lc == 0:  # extended length: not supported
        return None
    if n == 5 + lc:
        return _Command(cla, ins, p1, p2, raw[5:], None)
    if n == 6 + lc:
        return _Command(cla, ins, p1, p2, raw[5:-1], raw[-1] or 256)
    return None


class CardModel:
    """The card's answers to command APDUs (no I/O; see the module docstring)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        # INS -> (its CLA, handler returning (data, SW)). GET RESPONSE has its CLA here
        # too, but process() answers it itself (it returns the whole response).
        self._handlers: dict[int, tuple[int, Callable[[_Command], tuple[bytes, bytes]] | None]] = {
            INS_SELECT: (0x00, self._select),
            INS_READ_RECORD: (0x00, self._read_record),
            INS_GPO: (0x80, self._gpo),
            INS_GET_RESPONSE: (0x00, None),
        }
        self.reset()

    @property
    def atr(self) -> bytes:
        return self.profile.atr

    def reset(self) -> None:
        """Back to the state after an ATR: nothing selected, nothing waiting."""
        self._selected: str | Application | None = None
        self._pending: bytes | None = None
        self._pending_sw = SW_OK

    def process(self, apdu: bytes) -> bytes:
        """The response APDU (data + SW1 SW2) to one command APDU."""
        cmd = _parse_apdu(apdu)
        if cmd is None or cmd.ins != INS_GET_RESPONSE:
            self._pending = None
        if cmd is None:
            return SW_WRONG_LENGTH
        if cmd.cla not in (0x00, 0x80):
            return SW_CLA_UNKNOWN
        if cmd.ins not in self._handlers:
            return SW_INS_UNKNOWN
        cla, handler = self._handlers[cmd.ins]
        if cmd.cla != cla:
            self._pending = None
            return SW_CLA_UNKNOWN
        if handler is None:  # GET RESPONSE
            return self._get_response(cmd)
        data, sw = handler(cmd)
        if data and cmd.le is not None and cmd.le < len(data):
            return bytes([0x6C, len(data) & 0xFF])
        chunk = self.profile.chunk
        if chunk and len(data) > chunk:
            self._pending, self._pending_sw = data, sw
            return bytes([0x61, min(len(data), 256) & 0xFF])
        return data + sw

    # -- commands; each returns (data, status word)

    def _select(self, cmd: _Command) -> tuple[bytes, bytes]:
        if cmd.p1 != 0x04:
            return b"", SW_WRONG_P1P2
        if cmd.p2 == 0x02:
            return b"", SW_NOT_FOUND
        if cmd.p2 != 0x00:
            return b"", SW_WRONG_P1P2
        if not cmd.data:
            return b"", SW_WRONG_LENGTH
        name = cmd.data
        if name == PSE_NAME:
            if not self.profile.pse:
                return b"", SW_NOT_FOUND
            self._selected = "pse"
            return _tlv("6F", _tlv("84", PSE_NAME) + _tlv("A5", _tlv("88", bytes([PSE_SFI])))), SW_OK
        for app in self.profile.applications:
            if app.aid == name or (len(name) >= 5 and app.aid.startswith(name)):
                self._selected = app
                proprietary = _tlv("50", app.label.encode("ascii")) + _tlv("87", bytes([app.priority]))
                if app.pdol:
                    proprietary += _tlv("9F38", app.pdol)
                fci = _tlv("6F", _tlv("84", app.aid) + _tlv("A5", proprietary), broken=self.profile.broken_tlv == "fci")
                return fci, SW_SELECTED_INVALIDATED if app.blocked else SW_OK
        return b"", SW_NOT_FOUND

    def _records(self, sfi: int) -> list[bytes] | None:
        broken = self.profile.broken_tlv
        if sfi == PSE_SFI and self._selected == "pse":
            entries = b"".join(
                _tlv(
                    "61",
                    _tlv("4F", app.aid) + _tlv("50", app.label.encode("ascii")) + _tlv("87", bytes([app.priority])),
                )
                for app in self.profile.applications
            )
            return [_tlv("70", entries, broken=broken == "directory")]
        if sfi == APP_SFI and isinstance(self._selected, Application):
            app = self._selected
            track2 = f"{app.pan}D{app.expiry[:4]}{app.service_code}{TRACK2_DISCRETIONARY}"
            record1 = _tlv("57", _bcd(track2))
            record2 = (
                _tlv("5A", _bcd(app.pan))
                + _tlv("5F24", bytes.fromhex(app.expiry))
                + _tlv("5F28", bytes.fromhex(app.country))
                + _tlv("5F30", bytes.fromhex("0" + app.service_code))
            )
            return [_tlv("70", r, broken=broken == "record") for r in (record1, record2)]
        return None

    def _read_record(self, cmd: _Command) -> tuple[bytes, bytes]:
        if cmd.data:
            return b"", SW_WRONG_LENGTH
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            return b"", SW_WRONG_P1P2
        records = self._records(cmd.p2 >> 3)
        if records is None:
            return b"", SW_NOT_FOUND
        if cmd.p1 > len(records):
            return b"", SW_RECORD_NOT_FOUND
        return records[cmd.p1 - 1], SW_OK

    def _gpo(self, cmd: _Command) -> tuple[bytes, bytes]:
        if cmd.p1 or cmd.p2:
            return b"", SW_WRONG_P1P2
        app = self._selected
        if not isinstance(app, Application) or app.blocked:
            return b"", SW_CONDITIONS
        data = cmd.data
        if len(data) < 2 or data[0] != 0x83:
            return b"", SW_WRONG_LENGTH
        if data[1] < 0x80:
            length, start = data[1], 2
        elif data[1] == 0x81 and len(data) >= 3:
            length, start = data[2], 3
        else:
            return b"", SW_WRONG_LENGTH
        if not len(data) - start == length == app.pdol_length:
            return b"", SW_WRONG_LENGTH
        broken = self.profile.broken_tlv == "gpo"
        if app.gpo_format == 1:
            return _tlv("80", AIP + AFL, broken=broken), SW_OK
        return _tlv("77", _tlv("82", AIP) + _tlv("94", AFL), broken=broken), SW_OK

    def _get_response(self, cmd: _Command) -> bytes:
        if cmd.p1 or cmd.p2:
            self._pending = None
            return SW_WRONG_P1P2
        if cmd.data:
            self._pending = None
            return SW_WRONG_LENGTH
        if self._pending is None:
            return SW_CONDITIONS
        want = cmd.le or 256
        n = min(want, self.profile.chunk or 256, len(self._pending))
        out, rest = self._pending[:n], self._pending[n:]
        if rest:
            self._pending = rest
            return out + bytes([0x61, min(len(rest), 256) & 0xFF])
        self._pending = None
        return out + self._pending_sw
