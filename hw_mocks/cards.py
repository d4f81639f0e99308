"""Test cards for the simulations. The PANs are Luhn-valid test numbers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimCard:
    pan: str
    expiry: str = "3012"  # YYMM
    service_code: str = "201"  # 2xx: chip card
    country: str = "0392"  # Japan
    label: str = "SIM DEBIT"
    chip: bool = True  # False: magnetic stripe only
    profile: str = ""  # the virtual EMV card (hw_mocks/emv_profiles) for pcsc+emu://

    @property
    def track2(self) -> str:
        return f";{self.pan}={self.expiry}{self.service_code}0000000000?"


CARDS = {
    "domestic": SimCard("4999990000000015", profile="domestic_debit"),
    "domestic2": SimCard("4999990000000023", profile="domestic_debit"),
    "overseas": SimCard("5432100000000005", country="0840", label="SIM CREDIT", profile="overseas_credit"),
    "magstripe": SimCard("4999990000000031", service_code="101", chip=False),
    # chip cards that go wrong, one per virtual card profile
    "expired": SimCard("4999990000000049", expiry="2401", profile="expired"),
    "blocked": SimCard("4999990000000056", profile="blocked_app"),
    "no-pse": SimCard("4999990000000064", profile="no_pse"),
    "chunked": SimCard("4999990000000072", profile="chunked_61xx"),
    "mute": SimCard("4999990000000080", profile="mute"),
    "broken-tlv": SimCard("4999990000000098", profile="broken_tlv"),
    "pulled-out": SimCard("4999990000000106", profile="pulled_out"),
}
# What the in-process chip simulation does for the profiles that go wrong.
SIM_CHIP_FAULTS = {
    "mute": "mute_card",
    "blocked_app": "application_blocked",
    "broken_tlv": "chip_error",
    "pulled_out": "card_removed",
}
