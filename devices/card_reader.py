"""Motorised card reader interface.

Events emitted: ``inserted``, ``at_gate``, ``taken``; a jam raises a fault.
"""
from __future__ import annotations

import enum

from devices.base import Device
from devices.carddata import CardData


class CardPosition(str, enum.Enum):
    NONE = "none"
    GATE = "gate"
    INSIDE = "inside"
    JAMMED = "jammed"


class CardReader(Device):
    kind = "card_reader"

    def enable_entry(self) -> None:
        raise NotImplementedError

    def disable_entry(self) -> None:
        raise NotImplementedError

    def read(self, key: bytes) -> CardData:
        """Read the magnetic stripe of the card inside; raise DeviceError."""
        raise NotImplementedError

    def eject(self) -> None:
        """Move the card to the gate; ``at_gate`` then ``taken`` follow."""
        raise NotImplementedError

    def capture(self) -> None:
        """Retain the card in the capture bin."""
        raise NotImplementedError

    @property
    def position(self) -> CardPosition:
        raise NotImplementedError
