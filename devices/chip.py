"""Chip (ICC) reader interface: returns the card's data from the chip."""

from __future__ import annotations

import abc

from devices.base import Device
from devices.carddata import CardData


class ChipReader(Device):
    kind = "chip"

    @abc.abstractmethod
    def read_card(self, key: bytes) -> CardData:
        """Read the chip of the inserted card; raise DeviceError or CardDataError."""
