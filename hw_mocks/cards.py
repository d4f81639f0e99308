"""Test cards for the simulations. The PANs are Luhn-valid test numbers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimCard:
    pan: str
    expiry: str = "3012"         # YYMM
    service_code: str = "201"    # 2xx: chip card
    country: str = "0392"        # Japan
    label: str = "SIM DEBIT"
    chip: bool = True            # False: magnetic stripe only

    @property
    def track2(self) -> str:
        return f";{self.pan}={self.expiry}{self.service_code}0000000000?"


CARDS = {
    "domestic": SimCard("4999990000000015"),
    "domestic2": SimCard("4999990000000023"),
    "overseas": SimCard("5432100000000005", country="0840", label="SIM CREDIT"),
    "magstripe": SimCard("4999990000000031", service_code="101", chip=False),
}
