"""Backends chosen by locator string, like pyserial URLs.

``sim://`` picks the in-process simulation, ``aplay://default`` the ALSA
speaker, ``opencv://0`` a camera, ``lcdm2000:///dev/ttyUSB0`` a serial
dispenser, ``ict3q8+emu://`` the card reader driver on its emulator, and so on. Backends are named as import
paths so that a rig only imports the libraries it uses.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from devices.base import Device, DeviceContext

DEVICE_KINDS = ("card_reader", "chip", "dispenser", "acceptor", "proximity",
                "keypad", "camera", "speaker", "display")

_BACKENDS: dict[tuple[str, str], str] = {
    **{(kind, "sim"): f"hw_mocks.sim_devices:{cls}" for kind, cls in {
        "card_reader": "SimCardReader", "chip": "SimChipReader", "dispenser": "SimDispenser",
        "acceptor": "SimAcceptor", "proximity": "SimProximity", "keypad": "SimKeypad",
        "camera": "SimCamera"}.items()},
    ("speaker", "sim"): "hw_mocks.sim_speaker:SimSpeaker",
    ("display", "sim"): "hw_mocks.sim_display:SimDisplay",
    ("keypad", "terminal"): "devices.keypad:TerminalKeypad",
    ("keypad", "evdev"): "devices.keypad:EvdevKeypad",
    ("camera", "opencv"): "devices.camera:OpenCVCamera",
    ("speaker", "aplay"): "devices.speaker:AplaySpeaker",
    ("display", "opencv"): "devices.display:OpenCVDisplay",
    ("dispenser", "lcdm2000"): "devices.lcdm:Lcdm2000Dispenser",
    ("dispenser", "lcdm2000+emu"): "hw_mocks.serial_rigs:EmulatedLcdm2000",
    ("card_reader", "ict3q8"): "devices.ict3q8:Ict3q8CardReader",
    ("card_reader", "ict3q8+emu"): "hw_mocks.serial_rigs:EmulatedIct3q8",
    ("proximity", "gpiozero-distance"): "devices.presence_gpio:DistanceProximity",
    ("proximity", "gpiozero-pir"): "devices.presence_gpio:MotionProximity",
    ("proximity", "trace"): "hw_mocks.sim_presence:TraceProximity",
    ("chip", "pcsc"): "devices.pcsc_chip:PcscChipReader",
    ("chip", "pcsc+emu"): "hw_mocks.pcsc_rig:EmulatedPcscChip",
}


class LocatorError(ValueError):
    """A locator string names no known backend or is malformed."""


@dataclass(frozen=True)
class Locator:
    """A parsed backend locator: ``scheme://path?key=value``."""

    text: str
    scheme: str
    path: str
    params: dict

    @classmethod
    def parse(cls, text: str) -> "Locator":
        if not isinstance(text, str) or "://" not in text:
            raise LocatorError(f"{text!r} is not a locator like 'sim://'")
        parts = urlsplit(text)
        if not parts.scheme:
            raise LocatorError(f"{text!r} has no backend scheme")
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        return cls(text, parts.scheme.lower(), path, dict(parse_qsl(parts.query, keep_blank_values=True)))


def register_backend(kind: str, scheme: str, target: str) -> None:
    """Add a backend: ``target`` is 'module:Class'."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r}")
    _BACKENDS[(kind, scheme)] = target


def schemes_for(kind: str) -> list[str]:
    return sorted(s for k, s in _BACKENDS if k == kind)


def backend_class(kind: str, locator: Locator) -> type[Device]:
    target = _BACKENDS.get((kind, locator.scheme))
    if target is None:
        raise LocatorError(f"unknown backend {locator.scheme!r} for {kind}"
                           f" (known: {', '.join(schemes_for(kind))})")
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise LocatorError(f"backend {locator.scheme!r} for {kind} cannot load: {exc}") from None


def create_device(kind: str, text: str, ctx: DeviceContext) -> Device:
    """Build (not open) the backend that ``text`` names for device ``kind``."""
    locator = Locator.parse(text)
    device = backend_class(kind, locator)(ctx, locator)
    device.locator = text
    return device
