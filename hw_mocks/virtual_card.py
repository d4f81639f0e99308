"""A virtual EMV contact chip card for the real PC/SC stack (vsmartcard vpcd).

The card connects as a TCP *client* to the vpcd reader driver inside pcscd
(``127.0.0.1:35963`` is reader "Virtual PCD 00 00", 35964 is "... 00 01").
Messages both ways are a 2-byte big-endian length, then the payload; pcscd
speaks first:

- a 1-byte payload is a control: ``00`` power off, ``01`` power on, ``02``
  reset (no reply to these), ``04`` get ATR (reply: the ATR);
- a longer payload is a command APDU; the reply is the response APDU
  (data + SW1 SW2).

Inserting the card means connecting, removing it means closing the socket.
pcscd polls "get ATR" about every 400 ms to see whether a card is there.

This module does not use anything from ``devices/``: it builds its answers
with its own small TLV encoder and reads the few commands it knows by their
fixed layout, so a test of the chip driver against it checks the driver's
TLV parser against an independent encoder.

Card profiles
-------------
One TOML file per profile in ``hw_mocks/emv_profiles/``; the file's stem is
the profile's name (``load_profile("domestic_debit")``). Hex fields may
contain spaces. Unknown keys are errors (they are usually typos).

Top level:

``description`` (string, optional)
    What the profile is for.
``atr`` (hex, required)
    The Answer To Reset, 2..33 bytes. It is checked: TS ``3B``/``3F``, the
    interface bytes that T0/TDi announce, the historical bytes, and TCK when
    a protocol other than T=0 is indicated.
``pse`` (bool, required)
    Whether the card has the Payment System Environment ``1PAY.SYS.DDF01``
    (with its directory in SFI 1). Without it, SELECT PSE answers ``6A82``
    and the terminal has to try its list of known AIDs.
``mute`` (bool, default false)
    A card that is physically in the reader but whose chip does not answer.
    The card connects (so the card is "inserted"), but answers the first
    get-ATR request with a zero-length payload; vpcd then drops the
    connection and pcscd reports no card in the reader. The card does not
    reconnect. Seen from the ATM: the motorised reader holds a card, but
    PC/SC finds no chip to talk to. pcscd is never left waiting.
``chunk`` (int 0..256, default 0)
    0: every answer comes whole. N > 0: an answer longer than N data bytes
    comes as ``61xx`` (xx = bytes waiting, ``00`` meaning 256) without data,
    and each GET RESPONSE returns at most N bytes (fewer if its Le asks for
    fewer), then ``61xx`` again while data remains, then the command's own
    status word (``9000`` or ``6283``).
``pull_out_after`` (int >= 0, default 0)
    0: never. N > 0: the card is pulled out (socket closed) right after it
    has answered its N-th command APDU of an insertion (GET RESPONSE counts;
    controls do not).
``broken_tlv`` (string, default ``"none"``)
    Which answer carries a malformed TLV: ``"none"``, ``"fci"`` (the FCI of
    SELECT AID), ``"directory"`` (the PSE directory record), ``"record"``
    (the application records) or ``"gpo"`` (the GET PROCESSING OPTIONS
    answer). The outermost template's length then claims 16 bytes more
    than the data holds, so a parser runs past the end of the data.

``[[applications]]`` (at least one), each with:

``aid`` (hex, 5..16 bytes), ``label`` (printable ASCII, 1..16 characters),
``priority`` (int 1..15), ``pan`` (12..19 digits, Luhn-valid), ``expiry``
(``YYMMDD``), ``service_code`` (3 digits), ``country`` (ISO 3166 numeric as
4 digits, ``"0392"`` is Japan), ``pdol`` (hex DOL, optional: tag + 1-byte
length pairs), ``gpo_format`` (1 or 2, default 1), ``blocked`` (bool,
default false).

Card behaviour
--------------
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

Bad input from vpcd (a zero length, a length over 4096, a message that stops
half way or takes more than ``MESSAGE_TIMEOUT`` seconds to arrive) closes the
connection with a logged warning; a payload of 2..3 bytes is answered
``6700`` and an unknown control byte is ignored with a warning. The log only
ever names INS bytes and status words, never data (which can hold a PAN).
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from devices.fields import Field, FieldError, TomlFileError, check_table, fields, read_toml

log = logging.getLogger(__name__)

PROFILES_DIR = Path(__file__).with_name("emv_profiles")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

CONNECT_TIMEOUT = 2.0     # seconds for insert() to reach vpcd
MESSAGE_TIMEOUT = 2.0     # seconds for the rest of a message once it began
POLL_INTERVAL = 0.2       # how often the serving thread looks at its stop flag
MAX_MESSAGE = 4096        # longest message accepted from vpcd
LOG_SIZE = 64             # INS bytes kept in VirtualCard.log

PSE_NAME = b"1PAY.SYS.DDF01"
PSE_SFI = 1
APP_SFI = 2
AIP = bytes.fromhex("1800")
AFL = bytes([APP_SFI << 3, 1, 2, 0])
TRACK2_DISCRETIONARY = "0000000000"
BROKEN_TLV_CHOICES = ("none", "fci", "directory", "record", "gpo")

# Control bytes from vpcd.
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04

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

# Why a card's connection ended (VirtualCard.close_reason).
REMOVED = "removed"
PULLED_OUT = "pulled out"
MUTE = "mute"
VPCD_CLOSED = "vpcd closed"
BAD_INPUT = "bad input"
CONNECTION_LOST = "connection lost"


# --------------------------------------------------------------------------
# Profiles

@dataclass(frozen=True)
class Application:
    aid: bytes
    label: str
    priority: int
    pan: str
    expiry: str                  # YYMMDD
    service_code: str            # 3 digits
    country: str                 # ISO 3166 numeric, 4 digits
    pdol: bytes = b""
    gpo_format: int = 1
    blocked: bool = False

    @property
    def pdol_length(self) -> int:
        """Total length of the data the PDOL asks for."""
        return sum(length for _tag, length in _parse_dol(self.pdol))


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    atr: bytes
    pse: bool
    applications: tuple[Application, ...]
    description: str = ""
    mute: bool = False
    chunk: int = 0
    pull_out_after: int = 0
    broken_tlv: str = "none"


def _hex_problem(text: str) -> str | None:
    try:
        bytes.fromhex(text)
    except ValueError:
        return f"is not hex: {text!r}"
    return None


def _aid_problem(text: str) -> str | None:
    problem = _hex_problem(text)
    if problem is None and not 5 <= len(bytes.fromhex(text)) <= 16:
        return f"must be 5..16 bytes, not {len(bytes.fromhex(text))}"
    return problem


def _atr_field_problem(text: str) -> str | None:
    return _hex_problem(text) or atr_problem(bytes.fromhex(text))


def _pdol_problem(text: str) -> str | None:
    problem = _hex_problem(text)
    if problem is None:
        try:
            _parse_dol(bytes.fromhex(text))
        except ValueError as e:
            return str(e)
    return problem


def _expiry_problem(text: str) -> str | None:
    if not (1 <= int(text[2:4]) <= 12 and 1 <= int(text[4:6]) <= 31):
        return f"must be YYMMDD, not {text!r}"
    return None


def _digits(name: str, low: int, high: int, meaning: str, check=None) -> Field:
    want = f"{low}" if low == high else f"{low}..{high}"
    return Field(name, str, description=f"{want} digits: {meaning}", pattern=rf"[0-9]{{{low},{high}}}", check=check)


PROFILE_FIELDS = fields(
    Field("description", str, "", "what the card is for", length=(0, 1000)),
    Field("atr", str, description="the Answer To Reset in hex", length=(1, 200), check=_atr_field_problem),
    Field("pse", bool, description="the card answers SELECT 1PAY.SYS.DDF01"),
    Field("mute", bool, False, "the card never answers"),
    Field("chunk", int, 0, "answer in 61xx chunks of this many bytes (0: whole)", low=0, high=256),
    Field("pull_out_after", int, 0, "the card is pulled out after this many APDUs (0: never)",
          low=0, high=1_000_000),
    Field("broken_tlv", str, "none", "which answer has a broken TLV", choices=BROKEN_TLV_CHOICES),
    Field("applications", list, description="the [[applications]] tables", length=(0, 16)),
)
APPLICATION_FIELDS = fields(
    Field("aid", str, description="the application id in hex", length=(1, 64), check=_aid_problem),
    Field("label", str, description="1..16 printable ASCII characters", pattern=r"[\x20-\x7e]{1,16}"),
    Field("priority", int, description="the application priority", low=1, high=15),
    _digits("pan", 12, 19, "the card number (Luhn)",
            check=lambda pan: None if luhn_valid(pan) else f"{pan} fails the Luhn check"),
    _digits("expiry", 6, 6, "YYMMDD", check=_expiry_problem),
    _digits("service_code", 3, 3, "the service code"),
    _digits("country", 4, 4, "the ISO 3166 numeric issuer country"),
    Field("pdol", str, "", "the PDOL in hex", length=(0, 512), check=_pdol_problem),
    Field("gpo_format", int, 1, "the GET PROCESSING OPTIONS answer format", choices=(1, 2)),
    Field("blocked", bool, False, "the application is blocked"),
)


def profile_names() -> list[str]:
    """The names of the profiles in PROFILES_DIR, sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load and check a profile: a name from PROFILES_DIR or a TOML file's path.

    Raises ValueError naming the file and the field for any bad content, and
    for an unknown profile name; FileNotFoundError for a missing path.
    """
    text = os.fspath(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_-]+", text):
        path = PROFILES_DIR / f"{text}.toml"
        if not path.is_file():
            raise ValueError(f"unknown card profile {text!r}; known: {', '.join(profile_names())}")
    else:
        path = Path(text)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such card profile", str(path))
    try:
        data = read_toml(path, "card profile")
    except TomlFileError as e:
        raise ValueError(str(e)) from None
    try:
        return _check_profile(path, data)
    except FieldError as e:
        raise ValueError(f"{path}: field {e.field!r}: {e.problem}") from None


def _check_profile(path: Path, data: dict) -> Profile:
    top = check_table(data, PROFILE_FIELDS)
    if not top["applications"]:
        raise FieldError("applications", "needs at least one [[applications]] table")
    apps = tuple(_check_application(table, i) for i, table in enumerate(top["applications"]))
    aids = [app.aid for app in apps]
    for i, aid in enumerate(aids):
        if aid in aids[:i]:
            raise FieldError(f"applications[{i}].aid", f"{aid.hex().upper()} is there twice")
    return Profile(
        name=path.stem, path=path, atr=bytes.fromhex(top["atr"]), pse=top["pse"], applications=apps,
        description=top["description"], mute=top["mute"], chunk=top["chunk"],
        pull_out_after=top["pull_out_after"], broken_tlv=top["broken_tlv"],
    )


def _check_application(table, i: int) -> Application:
    if not isinstance(table, dict):
        raise FieldError(f"applications[{i}]", "must be a table ([[applications]])")
    v = check_table(table, APPLICATION_FIELDS, f"applications[{i}]")
    return Application(aid=bytes.fromhex(v["aid"]), label=v["label"], priority=v["priority"], pan=v["pan"],
                       expiry=v["expiry"], service_code=v["service_code"], country=v["country"],
                       pdol=bytes.fromhex(v["pdol"]), gpo_format=v["gpo_format"], blocked=v["blocked"])


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def atr_problem(atr: bytes) -> str | None:
    """What is wrong with an ATR's structure, or None (ISO 7816-3)."""
    if not 2 <= len(atr) <= 33:
        return f"must be 2..33 bytes, not {len(atr)}"
    if atr[0] not in (0x3B, 0x3F):
        return f"TS must be 3B or 3F, not {atr[0]:02X}"
    y, historical = atr[1] >> 4, atr[1] & 0x0F
    i, protocols = 2, set()
    while True:
        i += bin(y & 0x7).count("1")          # TAi, TBi, TCi
        if not y & 0x8:
            break
        if i >= len(atr):
            return "ends inside the interface bytes"
        protocols.add(atr[i] & 0x0F)
        y = atr[i] >> 4
        i += 1
    end = i + historical
    needs_tck = bool(protocols - {0})
    if len(atr) != end + needs_tck:
        return (f"T0 and TDi announce {end + needs_tck} bytes"
                f"{' with TCK' if needs_tck else ''}, the ATR has {len(atr)}")
    if needs_tck:
        check = 0
        for b in atr[1:]:
            check ^= b
        if check:
            return "TCK does not match (XOR of T0..TCK must be 00)"
    return None


def _parse_dol(dol: bytes) -> list[tuple[bytes, int]]:
    """A DOL's (tag, length) pairs; ValueError when it is cut short."""
    out, i = [], 0
    while i < len(dol):
        start = i
        if dol[i] & 0x1F == 0x1F:                 # multi-byte tag
            i += 1
            while i < len(dol) and dol[i] & 0x80:
                i += 1
        i += 1
        if i >= len(dol):
            raise ValueError(f"DOL ends inside the entry at byte {start}")
        out.append((dol[start:i], dol[i]))
        i += 1
    return out


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
    le: int | None          # None: no Le; 1..256 (a 00 byte is 256)


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
    if lc == 0:                                   # extended length: not supported
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
        # INS -> (its CLA, handler returning (data, SW)); GET RESPONSE is
        # answered by process() itself (it returns the whole response).
        self._handlers = {
            INS_SELECT: (0x00, self._select),
            INS_READ_RECORD: (0x00, self._read_record),
            INS_GPO: (0x80, self._gpo),
            INS_GET_RESPONSE: (0x00, self._get_response),
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
        if cmd.ins == INS_GET_RESPONSE:
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
                fci = _tlv("6F", _tlv("84", app.aid) + _tlv("A5", proprietary),
                           broken=self.profile.broken_tlv == "fci")
                return fci, SW_SELECTED_INVALIDATED if app.blocked else SW_OK
        return b"", SW_NOT_FOUND

    def _records(self, sfi: int) -> list[bytes] | None:
        broken = self.profile.broken_tlv
        if sfi == PSE_SFI and self._selected == "pse":
            entries = b"".join(
                _tlv("61", _tlv("4F", app.aid) + _tlv("50", app.label.encode("ascii"))
                     + _tlv("87", bytes([app.priority])))
                for app in self.profile.applications)
            return [_tlv("70", entries, broken=broken == "directory")]
        if sfi == APP_SFI and isinstance(self._selected, Application):
            app = self._selected
            track2 = f"{app.pan}D{app.expiry[:4]}{app.service_code}{TRACK2_DISCRETIONARY}"
            record1 = _tlv("57", _bcd(track2))
            record2 = (_tlv("5A", _bcd(app.pan)) + _tlv("5F24", bytes.fromhex(app.expiry))
                       + _tlv("5F28", bytes.fromhex(app.country))
                       + _tlv("5F30", bytes.fromhex("0" + app.service_code)))
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


# --------------------------------------------------------------------------
# The connection to vpcd

class _Closed(Exception):
    """The serving loop ends; args[0] is the reason."""


class VirtualCard:
    """A card that can be inserted into (connected to) a vpcd reader.

    ``profile`` is a Profile, or a profile name / path for load_profile.
    The card only ever connects to ``host``:``port``. Thread-safe.
    """

    def __init__(self, profile: Profile | str | os.PathLike,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.host = host
        self.port = port
        self._ops = threading.Lock()        # one insert()/remove() at a time
        self._lock = threading.Lock()       # the fields below
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._apdus = 0
        self._log: deque[int] = deque(maxlen=LOG_SIZE)
        self._close_reason: str | None = None

    def __repr__(self) -> str:
        state = "inserted" if self.inserted else f"out ({self.close_reason})"
        return f"<VirtualCard {self.profile.name} {self.host}:{self.port} {state}>"

    @property
    def inserted(self) -> bool:
        """Whether the card is connected to vpcd."""
        with self._lock:
            return self._sock is not None

    @property
    def apdus(self) -> int:
        """Command APDUs answered since the last insert()."""
        with self._lock:
            return self._apdus

    @property
    def log(self) -> tuple[int, ...]:
        """The INS bytes of the last LOG_SIZE command APDUs since the last insert()."""
        with self._lock:
            return tuple(self._log)

    @property
    def close_reason(self) -> str | None:
        """Why the last connection ended (REMOVED, PULLED_OUT, MUTE, VPCD_CLOSED,
        BAD_INPUT, CONNECTION_LOST); None while inserted or never inserted."""
        with self._lock:
            return self._close_reason

    def insert(self) -> None:
        """Connect to vpcd and serve it in a daemon thread; returns once connected.

        Raises ConnectionError when nothing accepts the connection, and
        RuntimeError when the card is already inserted.
        """
        with self._ops:
            if self.inserted:
                raise RuntimeError(f"virtual card {self.profile.name} is already inserted")
            if self._thread is not None:          # a connection that just ended
                self._thread.join()
            try:
                sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
            except OSError as e:
                raise ConnectionError(
                    f"cannot insert virtual card {self.profile.name}: nothing accepts connections "
                    f"on {self.host}:{self.port} (is pcscd running with the vsmartcard vpcd "
                    f"reader?): {e}") from e
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stop = threading.Event()
            with self._lock:
                self._sock, self._stop = sock, stop
                self._apdus, self._close_reason = 0, None
                self._log.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(sock, stop), daemon=True,
                name=f"virtual-card-{self.profile.name}")
            self._thread.start()
            log.info("virtual card %s inserted at %s:%d", self.profile.name, self.host, self.port)

    def remove(self) -> None:
        """Pull the card out: close the connection and wait for the serving thread."""
        with self._ops:
            with self._lock:
                sock, stop, thread = self._sock, self._stop, self._thread
            if thread is None:
                return
            stop.set()
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)   # wakes a blocked recv()
                except OSError:
                    pass
            thread.join()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection has ended by itself (pulled out, mute,
        vpcd gone, bad input); True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.inserted and (thread is None or not thread.is_alive())

    def __enter__(self) -> "VirtualCard":
        self.insert()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # -- serving thread

    def _serve(self, sock: socket.socket, stop: threading.Event) -> None:
        model = CardModel(self.profile)
        name = self.profile.name
        reason = CONNECTION_LOST
        try:
            while True:
                payload = self._receive(sock, stop)
                if len(payload) == 1:
                    self._control(sock, model, payload[0])
                    continue
                with self._lock:
                    self._apdus += 1
                    count = self._apdus
                    if len(payload) >= 2:
                        self._log.append(payload[1])
                try:
                    response = model.process(payload)
                except Exception:
                    log.exception("virtual card %s: the card model failed on INS %02X",
                                  name, payload[1])
                    response = SW_NO_DIAGNOSIS
                log.debug("virtual card %s: INS %02X -> SW %s", name,
                          payload[1], response[-2:].hex().upper())
                self._send(sock, response)
                if self.profile.pull_out_after and count >= self.profile.pull_out_after:
                    raise _Closed(PULLED_OUT)
        except _Closed as e:
            reason = e.args[0]
        except OSError as e:
            if not stop.is_set():
                log.warning("virtual card %s: connection to vpcd lost: %s", name, e)
        except Exception:                         # never a silent dead thread
            log.exception("virtual card %s: serving thread failed", name)
        finally:
            if stop.is_set():
                reason = REMOVED
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                self._close_reason = reason
            log.info("virtual card %s out of the reader (%s)", name, reason)

    def _control(self, sock: socket.socket, model: CardModel, byte: int) -> None:
        if byte in (CTRL_OFF, CTRL_ON, CTRL_RESET):
            model.reset()
        elif byte == CTRL_ATR:
            if self.profile.mute:
                self._send(sock, b"")             # vpcd drops the connection
                raise _Closed(MUTE)
            self._send(sock, model.atr)
        else:
            log.warning("virtual card %s: unknown vpcd control byte %02X ignored",
                        self.profile.name, byte)

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.settimeout(MESSAGE_TIMEOUT)
        sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _receive(self, sock: socket.socket, stop: threading.Event) -> bytes:
        """One message's payload from vpcd; raises _Closed when the connection ends."""
        first = self._recv_exact(sock, 1, stop, None)
        if not first:
            raise _Closed(VPCD_CLOSED)
        deadline = time.monotonic() + MESSAGE_TIMEOUT
        second = self._recv_exact(sock, 1, stop, deadline)
        if not second:
            return self._bad("the connection ended inside a length")
        length = int.from_bytes(first + second, "big")
        if length == 0 or length > MAX_MESSAGE:
            return self._bad(f"message length {length} (must be 1..{MAX_MESSAGE})")
        payload = self._recv_exact(sock, length, stop, deadline)
        if len(payload) < length:
            return self._bad(f"message truncated: {len(payload)} of {length} bytes")
        return payload

    def _bad(self, problem: str) -> bytes:
        log.warning("virtual card %s: bad input from vpcd, closing the connection: %s",
                    self.profile.name, problem)
        raise _Closed(BAD_INPUT)

    def _recv_exact(self, sock: socket.socket, n: int, stop: threading.Event,
                    deadline: float | None) -> bytes:
        """Up to n bytes; fewer only when the connection ended (or the deadline passed)."""
        buf = bytearray()
        while len(buf) < n:
            if stop.is_set():
                raise _Closed(REMOVED)
            wait = POLL_INTERVAL
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._bad(f"message incomplete after {MESSAGE_TIMEOUT} s")
                wait = min(wait, left)
            sock.settimeout(wait)
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
            # vpcd writes a message's length and its payload separately; acknowledge at
            # once, or its Nagle waits for our delayed ACK (~40 ms a message).
            _quick_ack(sock)
        return bytes(buf)


def _quick_ack(sock: socket.socket) -> None:
    if hasattr(socket, "TCP_QUICKACK"):  # Linux only; the kernel clears it after each ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def main(argv: list[str] | None = None) -> int:
    """``python -m hw_mocks.virtual_card PROFILE``: insert a card until vpcd
    drops it or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m hw_mocks.virtual_card",
                                     description="Insert a virtual EMV chip card into vpcd.")
    parser.add_argument("profile", help=f"profile name ({', '.join(profile_names())}) or TOML path")
    parser.add_argument("--host", default=DEFAULT_HOST, help="vpcd host (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="vpcd port (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        card = VirtualCard(args.profile, args.host, args.port)
        card.insert()
    except (ValueError, OSError) as e:
        print(f"error: {e}")
        return 1
    try:
        while not card.wait_closed(0.5):
            pass
    except KeyboardInterrupt:
        card.remove()
    print(f"card out: {card.close_reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
