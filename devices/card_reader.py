"""Motorised card reader interface.

Events emitted: ``inserted``, ``at_gate``, ``taken``; a jam raises a fault.
"""

from __future__ import annotations

import abc
import enum

from devices.base import Device
from devices.carddata import CardData

LED_COLOURS = ("off", "green", "red", "orange")  # the slot's LED (the ICT3Q8's colours)


class CardPosition(str, enum.Enum):
    NONE = "none"
    GATE = "gate"
    INSIDE = "inside"
    JAMMED = "jammed"


class CardReader(Device):
    kind = "card_reader"

    @abc.abstractmethod
    def enable_entry(self) -> None:
        """Let a card into the slot."""

    @abc.abstractmethod
    def disable_entry(self) -> None:
        """Refuse cards at the slot."""

    @abc.abstractmethod
    def read(self, key: bytes) -> CardData:
        """Read the magnetic stripe of the card inside; raise DeviceError."""

    @abc.abstractmethod
    def eject(self) -> None:
        """Move the card to the gate; ``at_gate`` then ``taken`` follow."""

    @abc.abstractmethod
    def capture(self) -> None:
        """Retain the card in the capture bin."""

    @abc.abstractmethod
    def set_led(self, colour: str) -> None:
        """Light the slot's LED in one of :data:`LED_COLOURS` (``off`` puts it out)."""

    @property
    @abc.abstractmethod
    def position(self) -> CardPosition:
        """Where the card is."""
