"""Application selection: the PSE directory, best application first."""

from __future__ import annotations

from dataclasses import dataclass

from devices import tlv
from devices.emv.apdu import (
    PSE_NAME,
    SW_FILE_INVALIDATED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_RECORD_NOT_FOUND,
    Transmit,
    exchange,
    expect_ok,
    read_record,
    select,
)
from devices.emv.errors import ChipReadError, malformed
from devices.emv.tags import (
    T_AID,
    T_APP_TEMPLATE,
    T_FCI,
    T_FCI_PROPRIETARY,
    T_LABEL,
    T_PRIORITY,
    T_SFI,
    find_path,
    printable_label,
    record_template,
)

MAX_DIRECTORY_RECORDS = 32  # records read from the PSE directory


# application selection -----------------------------------------------------------
@dataclass(frozen=True)
class App:
    aid: bytes
    label: str = ""
    priority: int = 16  # 1 (highest) .. 15; 16 = none given


def directory(transmit: Transmit) -> list[App] | None:
    """Applications in the PSE directory, best first; None when there is no PSE."""
    apdu = select(PSE_NAME)
    data, sw = exchange(transmit, apdu)
    if sw in (SW_FILE_NOT_FOUND, SW_FILE_INVALIDATED):  # no PSE, or PSE blocked: list of AIDs
        return None
    if sw == SW_FUNCTION_NOT_SUPPORTED:
        raise ChipReadError("blocked", "the card is blocked or does not support SELECT (6A81)")
    expect_ok(sw, apdu)
    sfi_obj = find_path(tlv.parse(data), T_FCI, T_FCI_PROPRIETARY, T_SFI)
    if sfi_obj is None or len(sfi_obj.value) != 1 or not 1 <= sfi_obj.value[0] <= 30:
        raise malformed("the PSE answer has no valid directory SFI (6F/A5/88)")
    sfi = sfi_obj.value[0]
    apps: list[App] = []
    for record in range(1, MAX_DIRECTORY_RECORDS + 1):
        apdu = read_record(sfi, record)
        data, sw = exchange(transmit, apdu)
        if sw == SW_RECORD_NOT_FOUND:
            break
        expect_ok(sw, apdu)
        for entry in record_template(data, sfi, record).children:
            if entry.tag == T_APP_TEMPLATE and find_path(entry.children, T_AID) is not None:
                apps.append(directory_entry(entry))
    else:
        raise malformed(f"the PSE directory has more than {MAX_DIRECTORY_RECORDS} records")
    return sorted(apps, key=lambda app: app.priority)  # stable: ties keep the card's order


def directory_entry(entry: tlv.Tlv) -> App:
    aid_tlv = find_path(entry.children, T_AID)
    aid = aid_tlv.value if aid_tlv is not None else b""
    if not 5 <= len(aid) <= 16:
        raise malformed("a directory entry has an AID (4F) that is not 5-16 bytes")
    label = find_path(entry.children, T_LABEL)
    prio = find_path(entry.children, T_PRIORITY)
    priority = 16
    if prio is not None:
        if len(prio.value) != 1:
            raise malformed("a directory entry has a priority (87) that is not 1 byte")
        # b4-b1 hold the priority, 0 = none; b8 (cardholder confirmation) is not for sorting
        priority = (prio.value[0] & 0x0F) or 16
    return App(aid, printable_label(label.value) if label else "", priority)
