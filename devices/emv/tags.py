"""The EMV tags an ATM reads and helpers to find values among the card's data objects."""

from __future__ import annotations

from collections.abc import Iterable

from devices import tlv
from devices.emv.errors import malformed

# tags ------------------------------------------------------------------------
T_FCI, T_FCI_PROPRIETARY, T_SFI, T_DF_NAME = 0x6F, 0xA5, 0x88, 0x84
T_RECORD, T_APP_TEMPLATE, T_AID, T_LABEL, T_PRIORITY = 0x70, 0x61, 0x4F, 0x50, 0x87
T_PDOL, T_COMMAND_TEMPLATE = 0x9F38, 0x83
T_GPO_FORMAT1, T_GPO_FORMAT2, T_AIP, T_AFL = 0x80, 0x77, 0x82, 0x94
T_PAN, T_TRACK2, T_EXPIRY, T_COUNTRY, T_SERVICE_CODE = 0x5A, 0x57, 0x5F24, 0x5F28, 0x5F30


# TLV helpers ---------------------------------------------------------------------
def find_path(tlvs: Iterable[tlv.Tlv], *path: int) -> tlv.Tlv | None:
    """The object reached by following ``path`` through direct children."""
    node = None
    for tag in path:
        node = next((t for t in tlvs if t.tag == tag), None)
        if node is None:
            return None
        tlvs = node.children
    return node


def single_value(pool: list[tlv.Tlv], tag: int, name: str) -> bytes | None:
    """The value of ``tag`` in the record data; malformed if it appears twice."""
    found = tlv.find_all(pool, tag)
    if len(found) > 1:
        raise malformed(f"{name} ({tag:X}) appears {len(found)} times in the card's records")
    return found[0].value if found else None


def bcd_digits(value: bytes, name: str, count: int | None = None) -> str:
    """BCD digits of ``value``, trailing F nibbles removed."""
    text = value.hex().upper().rstrip("F")
    if not text.isdigit() or (count is not None and len(text) != count):
        raise malformed(f"{name} is not {count or 'a run of'} BCD digits")
    return text


def printable_label(value: bytes) -> str:
    """Application label (ans): display only, so decoded leniently."""
    return "".join(c if c.isprintable() else "?" for c in value.decode("ascii", "replace")).strip()


def record_template(data: bytes, sfi: int, record: int) -> tlv.Tlv:
    objs = tlv.parse(data)
    if len(objs) != 1 or objs[0].tag != T_RECORD:
        raise malformed(f"record {record} of SFI {sfi} is not a single 70 template")
    return objs[0]
