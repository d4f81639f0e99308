"""The whole read: select an application, read its records, check the card's data."""

from __future__ import annotations

import secrets

from devices import tlv
from devices.carddata import CardData, CardDataError
from devices.emv.apdu import (
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_INVALIDATED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    Transmit,
    describe,
    exchange,
    expect_ok,
    select,
)
from devices.emv.errors import ChipReadError, malformed
from devices.emv.processing import TERMINAL_DEFAULTS, aip_afl, gpo_command, read_records
from devices.emv.selection import App, directory
from devices.emv.tags import (
    T_COUNTRY,
    T_DF_NAME,
    T_EXPIRY,
    T_FCI,
    T_FCI_PROPRIETARY,
    T_LABEL,
    T_PAN,
    T_SERVICE_CODE,
    T_TRACK2,
    bcd_digits,
    find_path,
    printable_label,
    single_value,
)


# card data -----------------------------------------------------------------------
def yyyymm(yymm: str) -> int:
    """YYMM as a comparable YYYYMM (YY 50-99 are 19YY, as EMV dates go)."""
    yy = int(yymm[:2])
    return (1900 + yy if yy >= 50 else 2000 + yy) * 100 + int(yymm[2:])


def card_data(pool: list[tlv.Tlv], key: bytes, label: str, aid: bytes, today: str) -> CardData:
    pan = single_value(pool, T_PAN, "PAN")
    track2 = single_value(pool, T_TRACK2, "track 2 equivalent")
    expiry_raw = single_value(pool, T_EXPIRY, "expiry date")
    country_raw = single_value(pool, T_COUNTRY, "issuer country")
    service_raw = single_value(pool, T_SERVICE_CODE, "service code")

    t2_pan = t2_expiry = t2_service = ""
    if track2 is not None:
        text = track2.hex().upper().rstrip("F")
        t2_pan, sep, rest = text.partition("D")
        if not sep or len(rest) < 7 or not (t2_pan.isdigit() and rest[:7].isdigit()):
            raise malformed("the track 2 equivalent (57) is badly formed")
        t2_expiry, t2_service = rest[:4], rest[4:7]
    number = bcd_digits(pan, "the PAN (5A)") if pan is not None else t2_pan
    if not number:
        raise malformed("the card has neither a PAN (5A) nor a track 2 equivalent (57)")
    if t2_pan and t2_pan != number:
        raise malformed("the PAN (5A) and the track 2 equivalent (57) disagree")

    expiry = bcd_digits(expiry_raw, "the expiry date (5F24)", 6)[:4] if expiry_raw is not None else t2_expiry
    if not expiry:
        raise malformed("the card has no expiry date (5F24 or 57)")
    if not 1 <= int(expiry[2:]) <= 12:
        raise malformed("the expiry date has no valid month")
    country = bcd_digits(country_raw, "the issuer country (5F28)", 4) if country_raw is not None else ""
    service = bcd_digits(service_raw, "the service code (5F30)", 4)[1:] if service_raw is not None else t2_service
    try:
        card = CardData(
            number,
            key,
            expiry=expiry,
            service_code=service,
            source="chip",
            country=country,
            label=label,
            aid=aid.hex().upper(),
        )
    except CardDataError as err:
        raise malformed(f"the chip's card number is not valid: {err}") from None
    if yyyymm(expiry) < yyyymm(today[:4]):
        raise ChipReadError("expired", "the card has expired", card=card)
    return card


# the read ------------------------------------------------------------------------
def read_card(
    transmit: Transmit, key: bytes, fallback_aids: list[bytes], today: str, terminal: dict[int, bytes] | None = None
) -> CardData:
    """Select an application, read its records and return the card's data.

    ``today`` is YYMMDD. ``fallback_aids`` are tried in order when the card
    has no PSE (or an empty one). ``terminal`` overrides TERMINAL_DEFAULTS
    for the PDOL. Raises only ChipReadError, whatever the card or the transport
    answers; a ``today`` that is not YYMMDD is the caller's ValueError.
    """
    if not (len(today) == 6 and today.isdigit()):
        raise ValueError("today must be YYMMDD")
    values = {**TERMINAL_DEFAULTS, 0x9A: bytes.fromhex(today), 0x9F37: secrets.token_bytes(4), **(terminal or {})}
    try:
        return read_application(transmit, key, fallback_aids, today, values)
    except tlv.TlvError as err:
        raise malformed(f"the card sent malformed TLV: {err}") from err


def read_application(
    transmit: Transmit, key: bytes, fallback_aids: list[bytes], today: str, values: dict[int, bytes]
) -> CardData:
    """The card's data from the first application that can be selected and read."""
    if not all(isinstance(aid, (bytes, bytearray)) for aid in fallback_aids):
        raise malformed("the fallback AIDs must be bytes")
    apps = directory(transmit) or [App(bytes(aid)) for aid in fallback_aids]
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
        expect_ok(sw, apdu)
        fci = tlv.parse(data)
        if find_path(fci, T_FCI) is None:
            raise malformed(f"{describe(apdu)} answered without an FCI template (6F)")
        apdu = gpo_command(fci, values)
        data, sw = exchange(transmit, apdu)
        if sw == SW_CONDITIONS_NOT_SATISFIED:  # Book 3 10.1: drop it, back to selection
            tried.append(f"{app.aid.hex().upper()}: not accepted ({sw:04X})")
            continue
        expect_ok(sw, apdu)
        _aip, afl = aip_afl(data)
        pool = read_records(transmit, afl)
        label = find_path(fci, T_FCI, T_FCI_PROPRIETARY, T_LABEL)
        df_name = find_path(fci, T_FCI, T_DF_NAME)
        return card_data(
            pool,
            key,
            printable_label(label.value) if label else app.label,
            df_name.value if df_name else app.aid,
            today,
        )
    detail = "; ".join(tried)
    if blocked:
        raise ChipReadError("blocked", f"no usable application, one is blocked: {detail}")
    raise ChipReadError("no_application", f"no usable application: {detail}")
