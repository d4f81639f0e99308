"""Backends chosen by locator string, like pyserial URLs.

``sim://`` picks the in-process simulation, ``aplay://default`` the ALSA
speaker, ``opencv://0`` a camera, ``lcdm2000:///dev/ttyUSB0`` a serial
dispenser, ``ict3q8+emu://`` the card reader driver on its emulator, and so on.

Backends register themselves as entry points of the group ``atm.backends``,
named ``kind.scheme`` with the value ``module:Class`` (see setup.cfg), so
this module names no backend and a rig imports only the modules it uses.
:func:`register_backend` adds one at run time. A backend reads its options
from the :class:`~devices.locator.Locator` it is built with; any option it
did not read is an error naming the device and the option.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from devices.base import Device, DeviceContext
from devices.locator import Locator, LocatorError

__all__ = [
    "DEVICE_KINDS",
    "Locator",
    "LocatorError",
    "backend_class",
    "create_device",
    "register_backend",
    "schemes_for",
    "unregister_backend",
]

DEVICE_KINDS = ("card_reader", "chip", "dispenser", "acceptor", "proximity", "keypad", "camera", "speaker", "display")
ENTRY_POINT_GROUP = "atm.backends"

_ADDED: dict[tuple[str, str], str] = {}  # register_backend() at run time


@cache
def _installed() -> dict[tuple[str, str], str]:
    """The backends installed as entry points: (kind, scheme) -> 'module:Class'."""
    found: dict[tuple[str, str], str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kind, _, scheme = ep.name.partition(".")
        if kind in DEVICE_KINDS and scheme:
            found.setdefault((kind, scheme.lower()), ep.value)
    return found


def _backends() -> dict[tuple[str, str], str]:
    return {**_installed(), **_ADDED}


def register_backend(kind: str, scheme: str, target: str) -> None:
    """Add a backend: ``target`` is 'module:Class'."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r}")
    _ADDED[(kind, scheme.lower())] = target


def unregister_backend(kind: str, scheme: str) -> None:
    """Remove a backend that :func:`register_backend` added."""
    _ADDED.pop((kind, scheme.lower()), None)


def schemes_for(kind: str) -> list[str]:
    return sorted(s for k, s in _backends() if k == kind)


def backend_class(kind: str, locator: Locator) -> type[Device]:
    """The class that ``locator`` names for device ``kind`` (imported now)."""
    target = _backends().get((kind, locator.scheme))
    if target is None:
        known = ", ".join(schemes_for(kind)) or f"none: no {ENTRY_POINT_GROUP} entry points; pip install -e ."
        raise LocatorError(f"unknown backend {locator.scheme!r} for {kind} (known: {known})")
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise LocatorError(f"backend {locator.scheme!r} for {kind} cannot load: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        raise LocatorError(f"backend {locator.scheme!r} for {kind}: {target} is not a device class")
    return cls


def create_device(kind: str, text: str, ctx: DeviceContext) -> Device:
    """Build (not open) the backend that ``text`` names for device ``kind``.

    Raises :class:`LocatorError` naming ``devices.<kind>`` for an unknown
    backend, a malformed locator, a bad option or one the backend does not know.
    """
    locator = Locator.parse(text, f"devices.{kind}")
    try:
        cls = backend_class(kind, locator)
    except LocatorError as exc:
        raise locator.error(str(exc)) from None
    try:
        device = cls(ctx, locator)
    except LocatorError:
        raise
    except ValueError as exc:  # a backend's own check of its options (e.g. enter < leave)
        raise locator.error(str(exc)) from None
    try:
        locator.check_all_read()
    except LocatorError:
        device.close()  # e.g. an emulator already has its pty
        raise
    device.locator = text
    return device
