"""Read an EMV contact chip card, independent of the transport.

The PC/SC driver hands :func:`read_card` a ``transmit`` function that sends
one command APDU and returns ``(data, sw1, sw2)``. The read follows EMV
Books 1 and 3 as far as an ATM needs the card's data:

1. application selection: the PSE directory (``1PAY.SYS.DDF01``), else a
   list of known AIDs;
2. SELECT the application, GET PROCESSING OPTIONS (PDOL filled from
   terminal values);
3. READ RECORD for every record the AFL names;
4. PAN, expiry, service code, country and label into a :class:`CardData`.

Every failure is a :class:`ChipReadError` with a ``code``; its message never
holds the card number or track data.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable, Iterable

from devices import tlv
from devices.carddata import CardData, CardDataError

# commands ------------------------------------------------------------------
SELECT_BY_NAME = bytes.fromhex("00A40400")   # + Lc + name + Le 00
READ_RECORD = bytes.fromhex("00B2")          # + record + (sfi << 3 | 4) + Le 00
GET_RESPONSE = bytes.fromhex("00C00000")     # + Le
GET_PROCESSING_OPTIONS = bytes.fromhex("80A80000")  # + Lc + 83 len PDOL-data + Le 00
PSE_NAME = b"1PAY.SYS.DDF01"

# status words ----------------------------------------------------------------
SW_OK = 0x9000
SW_FILE_INVALIDATED = 0x6283        # SELECT: application (or PSE) blocked
SW_CONDITIONS_NOT_SATISFIED = 0x6985  # GPO: this application refuses the transaction here
SW_FUNCTION_NOT_SUPPORTED = 0x6A81  # SELECT: card blocked or SELECT not supported
SW_FILE_NOT_FOUND = 0x6A82          # SELECT: no such application / no PSE
SW_RECORD_NOT_FOUND = 0x6A83        # READ RECORD: past the last record
SW1_MORE_DATA = 0x61                # 61xx: xx bytes waiting for GET RESPONSE
SW1_WRONG_LE = 0x6C                 # 6Cxx: resend with Le = xx

MAX_ROUNDS = 32             # GET RESPONSE / resend rounds for one command
MAX_DIRECTORY_RECORDS = 32  # records read from the PSE directory

# tags ------------------------------------------------------------------------
T_FCI, T_FCI_PROPRIETARY, T_SFI, T_DF_NAME = 0x6F, 0xA5, 0x88, 0x84
T_RECORD, T_APP_TEMPLATE, T_AID, T_LABEL, T_PRIORITY = 0x70, 0x61, 0x4F, 0x50, 0x87
T_PDOL, T_COMMAND_TEMPLATE = 0x9F38, 0x83
T_GPO_FORMAT1, T_GPO_FORMAT2, T_AIP, T_AFL = 0x80, 0x77, 0x82, 0x94
T_PAN, T_TRACK2, T_EXPIRY, T_COUNTRY, T_SERVICE_CODE = 0x5A, 0x57, 0x5F24, 0x5F28, 0x5F30

# Terminal values for the PDOL; ``terminal=`` overrides them. 9A (date) and
# 9F37 (unpredictable number) are made for each read.
TERMINAL_DEFAULTS: dict[int, bytes] = {
    0x9F1A: bytes.fromhex("0392"),      # terminal country code: Japan
    0x5F2A: bytes.fromhex("0392"),      # transaction currency code: yen
    0x9C: bytes.fromhex("00"),          # transaction type
    0x9F02: bytes(6),                   # amount, authorised
    0x9F03: bytes(6),                   # amount, other
    0x95: bytes(5),                     # terminal verification results
    0x9F35: bytes.fromhex("14"),        # terminal type: unattended, bank, online only (ATM)
    0x9F66: bytes.fromhex("14C00000"),  # TTQ: contact chip, online PIN; online cryptogram, CVM required
}
# Numeric (format n) terminal elements: padded on the left and cut from the
# left when a DOL asks for another length; others on the right (Book 3, 5.4).
NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x9A, 0x9C, 0x9F21, 0x9F41, 0x9F15})


# errors ----------------------------------------------------------------------
class ChipTransportError(Exception):
    """The transport could not exchange an APDU (raised by the PC/SC driver)."""


class CardRemoved(ChipTransportError):
    """The card left the reader."""


class CardMute(ChipTransportError):
    """The card did not answer."""


class ChipReadError(Exception):
    """Reading the chip failed. ``code`` is one of: mute, removed, malformed,
    unknown_status, no_application, blocked, expired. For ``expired``,
    ``card`` holds the (valid but expired) CardData."""

    def __init__(self, code: str, message: str, card: CardData | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.card = card

    def __reduce__(self) -> tuple[type[ChipReadError], tuple[str, str]]:  # the card (if any) cannot be pickled; the rest can
        return (type(self), (self.code, self.message))


Transmit = Callable[[bytes], tuple[bytes, int, int]]


# APDUs -------------------------------------------------------------------------
def select(name: bytes) -> bytes:
    return SELECT_BY_NAME + bytes([len(name)]) + name + b"\x00"


def read_record(sfi: int, record: int) -> bytes:
    return READ_RECORD + bytes([record, (sfi << 3) | 4, 0])


def _describe(apdu: bytes) -> str:
    """The command for an error message (never holds card data)."""
    head = apdu[:2]
    if head == SELECT_BY_NAME[:2]:
        name = apdu[5:5 + apdu[4]] if len(apdu) > 4 else b""
        shown = name.decode() if name.isascii() and name.decode().isprintable() else name.hex().upper()
        return f"SELECT {shown}"
    if head == READ_RECORD:
        return f"READ RECORD {apdu[2]} of SFI {apdu[3] >> 3}"
    if head == GET_PROCESSING_OPTIONS[:2]:
        return "GET PROCESSING OPTIONS"
    if head == GET_RESPONSE[:2]:
        return "GET RESPONSE"
    return f"command {apdu[:4].hex().upper()}"


def _with_le(apdu: bytes, le: int) -> bytes:
    """``apdu`` with its Le set (or added) to ``le``."""
    if len(apdu) <= 5:                      # case 1 or 2: header [+ Le]
        return apdu[:4] + bytes([le])
    return apdu[:5 + apdu[4]] + bytes([le])  # case 3 or 4: header Lc data [+ Le]


def exchange(transmit: Transmit, apdu: bytes) -> tuple[bytes, int]:
    """Send ``apdu``, following 61xx (GET RESPONSE) and 6Cxx (resend with
    Le=xx) for at most MAX_ROUNDS rounds; return (data, sw) e.g. (b"...", 0x9000)."""
    command, data = apdu, b""
    for _ in range(MAX_ROUNDS):
        try:
            part, sw1, sw2 = transmit(command)
        except CardRemoved as err:
            raise ChipReadError("removed", f"card removed during {_describe(apdu)}") from err
        except ChipTransportError as err:  # CardMute, or a transport that cannot tell
            raise ChipReadError("mute", f"no answer from the card to {_describe(apdu)}") from err
        if sw1 == SW1_MORE_DATA:
            data += bytes(part)
            command = GET_RESPONSE + bytes([sw2])
        elif sw1 == SW1_WRONG_LE:
            command = _with_le(command, sw2)
        else:
            return data + bytes(part), (sw1 << 8) | sw2
    raise ChipReadError("malformed", f"{_describe(apdu)}: the card still wanted GET RESPONSE "
                                     f"or a resend after {MAX_ROUNDS} rounds")


def _expect_ok(sw: int, apdu: bytes) -> None:
    if sw != SW_OK:
        raise ChipReadError("unknown_status", f"{_describe(apdu)} answered {sw:04X}")


def _malformed(message: str) -> ChipReadError:
    return ChipReadError("malformed", message)


# TLV helpers ---------------------------------------------------------------------
def _at(tlvs: Iterable[tlv.Tlv], *path: int) -> tlv.Tlv | None:
    """The object reached by following ``path`` through direct children."""
    node = None
    for tag in path:
        node = next((t for t in tlvs if t.tag == tag), None)
        if node is None:
            return None
        tlvs = node.children
    return node


def _one(pool: list[tlv.Tlv], tag: int, name: str) -> bytes | None:
    """The value of ``tag`` in the record data; malformed if it appears twice."""
    found = tlv.find_all(pool, tag)
    if len(found) > 1:
        raise _malformed(f"{name} ({tag:X}) appears {len(found)} times in the card's records")
    return found[0].value if found else None


def _digits(value: bytes, name: str, count: int | None = None) -> str:
    """BCD digits of ``value``, trailing F nibbles removed."""
    text = value.hex().upper().rstrip("F")
    if not text.isdigit() or (count is not None and len(text) != count):
        raise _malformed(f"{name} is not {count or 'a run of'} BCD digits")
    return text


def _label(value: bytes) -> str:
    """Application label (ans): display only, so decoded leniently."""
    return "".join(c if c.isprintable() else "?" for c in value.decode("ascii", "replace")).strip()


# application selection -----------------------------------------------------------
@dataclass(frozen=True)
class _App:
    aid: bytes
    label: str = ""
    priority: int = 16  # 1 (highest) .. 15; 16 = none given


def _directory(transmit: Transmit) -> list[_App] | None:
    """Applications in the PSE directory, best first; None when there is no PSE."""
    apdu = select(PSE_NAME)
    data, sw = exchange(transmit, apdu)
    if sw in (SW_FILE_NOT_FOUND, SW_FILE_INVALIDATED):  # no PSE, or PSE blocked: list of AIDs
        return None
    if sw == SW_FUNCTION_NOT_SUPPORTED:
        raise ChipReadError("blocked", "the card is blocked or does not support SELECT (6A81)")
    _expect_ok(sw, apdu)
    sfi_obj = _at(tlv.parse(data), T_FCI, T_FCI_PROPRIETARY, T_SFI)
    if sfi_obj is None or len(sfi_obj.value) != 1 or not 1 <= sfi_obj.value[0] <= 30:
        raise _malformed("the PSE answer has no valid directory SFI (6F/A5/88)")
    sfi = sfi_obj.value[0]
    apps: list[_App] = []
    for record in range(1, MAX_DIRECTORY_RECORDS + 1):
        apdu = read_record(sfi, record)
        data, sw = exchange(transmit, apdu)
        if sw == SW_RECORD_NOT_FOUND:
            break
        _expect_ok(sw, apdu)
        for entry in _record_template(data, sfi, record).children:
            if entry.tag == T_APP_TEMPLATE and _at(entry.children, T_AID) is not None:
                apps.append(_directory_entry(entry))
    else:
        raise _malformed(f"the PSE directory has more than {MAX_DIRECTORY_RECORDS} records")
    return sorted(apps, key=lambda app: app.priority)  # stable: ties keep the card's order


def _directory_entry(entry: tlv.Tlv) -> _App:
    aid_tlv = _at(entry.children, T_AID)
    aid = aid_tlv.value if aid_tlv is not None else b""
    if not 5 <= len(aid) <= 16:
        raise _malformed("a directory entry has an AID (4F) that is not 5-16 bytes")
    label = _at(entry.children, T_LABEL)
    prio = _at(entry.children, T_PRIORITY)
    priority = 16
    if prio is not None:
        if len(prio.value) != 1:
            raise _malformed("a directory entry has a priority (87) that is not 1 byte")
        # b4-b1 hold the priority, 0 = none; b8 (cardholder confirmation) is not for sorting
        priority = (prio.value[0] & 0x0F) or 16
    return _App(aid, _label(label.value) if label else "", priority)


def _record_template(data: bytes, sfi: int, record: int) -> tlv.Tlv:
    objs = tlv.parse(data)
    if len(objs) != 1 or objs[0].tag != T_RECORD:
        raise _malformed(f"record {record} of SFI {sfi} is not a single 70 template")
    return objs[0]


# processing options ----------------------------------------------------------------
def dol_data(dol: list[tuple[int, int]], values: dict[int, bytes]) -> bytes:
    """The values a DOL asks for, each cut or padded to its length (Book 3, 5.4):
    unknown or constructed tags are zeros; numeric ones pad/cut on the left."""
    out = bytearray()
    for tag, length in dol:
        value = values.get(tag)
        if value is None or tlv.tag_constructed(tag):
            value = bytes(length)
        numeric = tag in NUMERIC_TAGS
        if len(value) > length:
            value = value[len(value) - length:] if numeric else value[:length]
        elif len(value) < length:
            pad = bytes(length - len(value))
            value = pad + value if numeric else value + pad
        out += value
    return bytes(out)


def _gpo_command(fci: list[tlv.Tlv], values: dict[int, bytes]) -> bytes:
    pdol = _at(fci, T_FCI, T_FCI_PROPRIETARY, T_PDOL)
    data = dol_data(tlv.parse_dol(pdol.value), values) if pdol else b""
    body = tlv.encode(T_COMMAND_TEMPLATE, data)
    if len(body) > 255:
        raise _malformed(f"the PDOL asks for {len(data)} bytes, more than one command carries")
    return GET_PROCESSING_OPTIONS + bytes([len(body)]) + body + b"\x00"


def _aip_afl(data: bytes) -> tuple[bytes, bytes]:
    """AIP and AFL from a GPO answer in format 1 (80) or format 2 (77)."""
    objs = tlv.parse(data)
    if objs and objs[0].tag == T_GPO_FORMAT1:
        value = objs[0].value
        if len(value) < 2:
            raise _malformed("the GET PROCESSING OPTIONS answer (format 1) is shorter than its AIP")
        return value[:2], value[2:]
    if objs and objs[0].tag == T_GPO_FORMAT2:
        aip, afl = _at(objs[0].children, T_AIP), _at(objs[0].children, T_AFL)
        if aip is None or afl is None or len(aip.value) != 2:
            raise _malformed("the GET PROCESSING OPTIONS answer (format 2) lacks the AIP (82) or AFL (94)")
        return aip.value, afl.value
    raise _malformed("the GET PROCESSING OPTIONS answer is neither format 1 (80) nor format 2 (77)")


def afl_entries(afl: bytes) -> list[tuple[int, int, int]]:
    """(sfi, first record, last record) for each 4-byte AFL entry."""
    if len(afl) % 4:
        raise _malformed(f"the AFL is {len(afl)} bytes, not a multiple of 4")
    entries = []
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        if not 1 <= sfi <= 30 or first == 0 or first > last:
            raise _malformed(f"AFL entry {i // 4 + 1} is invalid (SFI {sfi}, records {first}-{last})")
        entries.append((sfi, first, last))
    return entries


def _read_records(transmit: Transmit, afl: bytes) -> list[tlv.Tlv]:
    """The data objects of every AFL record. Records in SFI 11-30 are in the
    issuer's own format (for offline data authentication) and not looked into."""
    pool: list[tlv.Tlv] = []
    for sfi, first, last in afl_entries(afl):
        for record in range(first, last + 1):
            apdu = read_record(sfi, record)
            data, sw = exchange(transmit, apdu)
            if sw == SW_RECORD_NOT_FOUND:
                raise _malformed(f"record {record} of SFI {sfi} is in the AFL but not on the card")
            _expect_ok(sw, apdu)
            if sfi <= 10:
                pool.extend(_record_template(data, sfi, record).children)
    return pool


# card data -----------------------------------------------------------------------
def _century(yymm: str) -> int:
    """YYMM as a comparable YYYYMM (YY 50-99 are 19YY, as EMV dates go)."""
    yy = int(yymm[:2])
    return (1900 + yy if yy >= 50 else 2000 + yy) * 100 + int(yymm[2:])


def _card(pool: list[tlv.Tlv], key: bytes, label: str, aid: bytes, today: str) -> CardData:
    pan = _one(pool, T_PAN, "PAN")
    track2 = _one(pool, T_TRACK2, "track 2 equivalent")
    expiry_raw = _one(pool, T_EXPIRY, "expiry date")
    country_raw = _one(pool, T_COUNTRY, "issuer country")
    service_raw = _one(pool, T_SERVICE_CODE, "service code")

    t2_pan = t2_expiry = t2_service = ""
    if track2 is not None:
        text = track2.hex().upper().rstrip("F")
        t2_pan, sep, rest = text.partition("D")
        if not sep or len(rest) < 7 or not (t2_pan.isdigit() and rest[:7].isdigit()):
            raise _malformed("the track 2 equivalent (57) is badly formed")
        t2_expiry, t2_service = rest[:4], rest[4:7]
    number = _digits(pan, "the PAN (5A)") if pan is not None else t2_pan
    if not number:
        raise _malformed("the card has neither a PAN (5A) nor a track 2 equivalent (57)")
    if t2_pan and t2_pan != number:
        raise _malformed("the PAN (5A) and the track 2 equivalent (57) disagree")

    expiry = _digits(expiry_raw, "the expiry date (5F24)", 6)[:4] if expiry_raw is not None else t2_expiry
    if not expiry:
        raise _malformed("the card has no expiry date (5F24 or 57)")
    if not 1 <= int(expiry[2:]) <= 12:
        raise _malformed("the expiry date has no valid month")
    country = _digits(country_raw, "the issuer country (5F28)", 4) if country_raw is not None else ""
    service = (_digits(service_raw, "the service code (5F30)", 4)[1:] if service_raw is not None
               else t2_service)
    try:
        card = CardData(number, key, expiry=expiry, service_code=service, source="chip",
                        country=country, label=label, aid=aid.hex().upper())
    except CardDataError as err:
        raise _malformed(f"the chip's card number is not valid: {err}") from None
    if _century(expiry) < _century(today[:4]):
        raise ChipReadError("expired", "the card has expired", card=card)
    return card


# the read ------------------------------------------------------------------------
def read_card(transmit: Transmit, key: bytes, fallback_aids: list[bytes], today: str,
              terminal: dict[int, bytes] | None = None) -> CardData:
    """Select an application, read its records and return the card's data.

    ``today`` is YYMMDD. ``fallback_aids`` are tried in order when the card
    has no PSE (or an empty one). ``terminal`` overrides TERMINAL_DEFAULTS
    for the PDOL. Raises only ChipReadError.
    """
    if not (len(today) == 6 and today.isdigit()):
        raise ValueError("today must be YYMMDD")
    values = {**TERMINAL_DEFAULTS, 0x9A: bytes.fromhex(today), 0x9F37: secrets.token_bytes(4),
              **(terminal or {})}
    try:
        return _read(transmit, key, fallback_aids, today, values)
    except tlv.TlvError as err:
        raise _malformed(f"the card sent malformed TLV: {err}") from err


def _read(transmit: Transmit, key: bytes, fallback_aids: list[bytes], today: str,
          values: dict[int, bytes]) -> CardData:
    apps = _directory(transmit) or [_App(bytes(aid)) for aid in fallback_aids]
    if not apps:
        raise ChipReadError("no_application", "the card lists no application and no AIDs are configured")
    tried: list[str] = []
    blocked = False
    for app in apps:
        apdu = select(app.aid)
        data, sw = exchange(transmit, apdu)
        if sw == SW_FUNCTION_NOT_SUPPORTED:
            raise ChipReadError("blocked", "the card is blocked or does not support SELECT (6A81)")
        if sw in (SW_FILE_INVALIDATED, SW_FILE_NOT_FOUND):
            blocked |= sw == SW_FILE_INVALIDATED
            state = "blocked" if sw == SW_FILE_INVALIDATED else "not found"
            tried.append(f"{app.aid.hex().upper()}: {state} ({sw:04X})")
            continue
        _expect_ok(sw, apdu)
        fci = tlv.parse(data)
        if _at(fci, T_FCI) is None:
            raise _malformed(f"{_describe(apdu)} answered without an FCI template (6F)")
        apdu = _gpo_command(fci, values)
        data, sw = exchange(transmit, apdu)
        if sw == SW_CONDITIONS_NOT_SATISFIED:  # Book 3 10.1: drop it, back to selection
            tried.append(f"{app.aid.hex().upper()}: not accepted ({sw:04X})")
            continue
        _expect_ok(sw, apdu)
        _aip, afl = _aip_afl(data)
        pool = _read_records(transmit, afl)
        label = _at(fci, T_FCI, T_FCI_PROPRIETARY, T_LABEL)
        df_name = _at(fci, T_FCI, T_DF_NAME)
        return _card(pool, key, _label(label.value) if label else app.label,
                     df_name.value if df_name else app.aid, today)
    detail = "; ".join(tried)
    if blocked:
        raise ChipReadError("blocked", f"no usable application, one is blocked: {detail}")
    raise ChipReadError("no_application", f"no usable application: {detail}")
