"""The devices of one ATM, one typed field per kind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

from devices.acceptor import CashAcceptor
from devices.base import Device
from devices.camera import Camera
from devices.card_reader import CardReader
from devices.chip import ChipReader
from devices.dispenser import CashDispenser
from devices.display import Display
from devices.keypad import Keypad
from devices.proximity import ProximitySensor
from devices.speaker import Speaker


@dataclass(frozen=True)
class DeviceSet:
    """Every device of the ATM. ``devices["dispenser"]`` reads a field by kind name."""

    card_reader: CardReader
    chip: ChipReader
    dispenser: CashDispenser
    acceptor: CashAcceptor
    proximity: ProximitySensor
    keypad: Keypad
    camera: Camera
    speaker: Speaker
    display: Display

    def __getitem__(self, kind: str) -> Device:
        device: Device = self.__dict__[kind]  # the fields, and nothing else, live there
        return device

    def __contains__(self, kind: object) -> bool:
        return kind in self.kinds()

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds())

    @classmethod
    def kinds(cls) -> tuple[str, ...]:
        return KINDS

    def items(self) -> Iterator[tuple[str, Device]]:
        return ((kind, getattr(self, kind)) for kind in self.kinds())

    def values(self) -> Iterator[Device]:
        return (getattr(self, kind) for kind in self.kinds())


KINDS: tuple[str, ...] = tuple(f.name for f in fields(DeviceSet))
