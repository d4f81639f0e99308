"""GET PROCESSING OPTIONS (the PDOL filled from terminal values) and the records the AFL names."""

from __future__ import annotations

from devices import tlv
from devices.emv.apdu import GET_PROCESSING_OPTIONS, SW_RECORD_NOT_FOUND, Transmit, exchange, expect_ok, read_record
from devices.emv.errors import malformed
from devices.emv.tags import (
    T_AFL,
    T_AIP,
    T_COMMAND_TEMPLATE,
    T_FCI,
    T_FCI_PROPRIETARY,
    T_GPO_FORMAT1,
    T_GPO_FORMAT2,
    T_PDOL,
    find_path,
    record_template,
)

# Terminal values for the PDOL; ``terminal=`` overrides them. 9A (date) and
# 9F37 (unpredictable number) are made for each read.
TERMINAL_DEFAULTS: dict[int, bytes] = {
    0x9F1A: bytes.fromhex("0392"),  # terminal country code: Japan
    0x5F2A: bytes.fromhex("0392"),  # transaction currency code: yen
    0x9C: bytes.fromhex("00"),  # transaction type
    0x9F02: bytes(6),  # amount, authorised
    0x9F03: bytes(6),  # amount, other
    0x95: bytes(5),  # terminal verification results
    0x9F35: bytes.fromhex("14"),  # terminal type: unattended, bank, online only (ATM)
    0x9F66: bytes.fromhex("14C00000"),  # TTQ: contact chip, online PIN; online cryptogram, CVM required
}
# Numeric (format n) terminal elements: padded on the left and cut from the
# left when a DOL asks for another length; others on the right (Book 3, 5.4).
NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x9A, 0x9C, 0x9F21, 0x9F41, 0x9F15})


# processing options ----------------------------------------------------------------
def dol_data(dol: list[tuple[int, int]], values: dict[int, bytes]) -> bytes:
    """The values a DOL asks for, each cut or padded to its length (Book 3, 5.4):
    unknown or constructed tags are zeros; numeric ones pad/cut on the left.
    Each length is 0-255 (one DOL byte); each value is bytes."""
    if not isinstance(values, dict) or not isinstance(dol, (list, tuple)):
        raise malformed("dol_data takes a list of (tag, length) and a table of values")
    out = bytearray()
    for entry in dol:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise malformed(f"a DOL entry {entry!r:.20} is not (tag, length)")
        tag, length = entry
        if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= 0xFF:
            raise malformed(f"a DOL entry asks for {length!r:.20} bytes, not 0-255")
        try:
            constructed = tlv.tag_constructed(tag)
        except tlv.TlvError as err:
            raise malformed(f"a DOL entry has no valid tag: {err}") from None
        value = values.get(tag)
        if value is not None and not isinstance(value, (bytes, bytearray)):
            raise malformed(f"the terminal value of {tag:X} is not bytes")
        if value is None or constructed:
            value = bytes(length)
        numeric = tag in NUMERIC_TAGS
        if len(value) > length:
            value = value[len(value) - length :] if numeric else value[:length]
        elif len(value) < length:
            pad = bytes(length - len(value))
            value = pad + value if numeric else value + pad
        out += value
    return bytes(out)


def gpo_command(fci: list[tlv.Tlv], values: dict[int, bytes]) -> bytes:
    pdol = find_path(fci, T_FCI, T_FCI_PROPRIETARY, T_PDOL)
    data = dol_data(tlv.parse_dol(pdol.value), values) if pdol else b""
    body = tlv.encode(T_COMMAND_TEMPLATE, data)
    if len(body) > 255:
        raise malformed(f"the PDOL asks for {len(data)} bytes, more than one command carries")
    return GET_PROCESSING_OPTIONS + bytes([len(body)]) + body + b"\x00"


def aip_afl(data: bytes) -> tuple[bytes, bytes]:
    """AIP and AFL from a GPO answer in format 1 (80) or format 2 (77)."""
    objs = tlv.parse(data)
    if objs and objs[0].tag == T_GPO_FORMAT1:
        value = objs[0].value
        if len(value) < 2:
            raise malformed("the GET PROCESSING OPTIONS answer (format 1) is shorter than its AIP")
        return value[:2], value[2:]
    if objs and objs[0].tag == T_GPO_FORMAT2:
        aip, afl = find_path(objs[0].children, T_AIP), find_path(objs[0].children, T_AFL)
        if aip is None or afl is None or len(aip.value) != 2:
            raise malformed("the GET PROCESSING OPTIONS answer (format 2) lacks the AIP (82) or AFL (94)")
        return aip.value, afl.value
    raise malformed("the GET PROCESSING OPTIONS answer is neither format 1 (80) nor format 2 (77)")


def afl_entries(afl: bytes) -> list[tuple[int, int, int]]:
    """(sfi, first record, last record) for each 4-byte AFL entry."""
    if not isinstance(afl, (bytes, bytearray)):
        raise malformed(f"the AFL must be bytes, not {type(afl).__name__}")
    if len(afl) % 4:
        raise malformed(f"the AFL is {len(afl)} bytes, not a multiple of 4")
    entries = []
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        if not 1 <= sfi <= 30 or first == 0 or first > last:
            raise malformed(f"AFL entry {i // 4 + 1} is invalid (SFI {sfi}, records {first}-{last})")
        entries.append((sfi, first, last))
    return entries


def read_records(transmit: Transmit, afl: bytes) -> list[tlv.Tlv]:
    """The data objects of every AFL record. Records in SFI 11-30 are in the
    issuer's own format (for offline data authentication) and not looked into."""
    pool: list[tlv.Tlv] = []
    for sfi, first, last in afl_entries(afl):
        for record in range(first, last + 1):
            apdu = read_record(sfi, record)
            data, sw = exchange(transmit, apdu)
            if sw == SW_RECORD_NOT_FOUND:
                raise malformed(f"record {record} of SFI {sfi} is in the AFL but not on the card")
            expect_ok(sw, apdu)
            if sfi <= 10:
                pool.extend(record_template(data, sfi, record).children)
    return pool
