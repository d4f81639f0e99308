"""Typed events: everything that reaches the state machine's loop.

Devices, timers, the host and the network thread build one of these and post
it; :meth:`fsm.atm.ATM.handle` dispatches on its type. A device command's
:class:`devices.commands.Completion` is an event too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devices.base import Fault


@dataclass(frozen=True)
class DeviceEvent:
    """Something a device reported: ``name`` and its ``data``, as the device emitted them."""

    device: str
    name: str
    data: Mapping[str, Any] = field(default_factory=dict)


# What a customer does, or a device notices, that the session reacts to.
class CardInserted(DeviceEvent):
    """A card entered the reader."""


class CardTaken(DeviceEvent):
    """The customer took the card from the gate."""


class CashTaken(DeviceEvent):
    """The customer took the notes from the gate."""


class NotesInserted(DeviceEvent):
    """Notes were counted into the acceptor's escrow."""


class KeyPressed(DeviceEvent):
    """Key activity on the keypad (no digits)."""


class InvalidKey(DeviceEvent):
    """A key that the current mode does not take."""


class PinEntered(DeviceEvent):
    """A PIN was entered (``data['pin']`` never prints its digits)."""


class Chosen(DeviceEvent):
    """A function key or a menu choice (``data['value']``)."""


class AmountEntered(DeviceEvent):
    """An amount was entered (``data['value']``)."""


class CancelPressed(DeviceEvent):
    """The customer pressed cancel."""


class PresenceChanged(DeviceEvent):
    """The proximity sensor's reading changed (``data['present']``)."""


class VideoChanged(DeviceEvent):
    """The display started or stopped a video."""


# (device, name) -> event type; any other device event is only reported.
DEVICE_EVENTS: dict[tuple[str, str], type[DeviceEvent]] = {
    ("card_reader", "inserted"): CardInserted,
    ("card_reader", "taken"): CardTaken,
    ("dispenser", "cash_taken"): CashTaken,
    ("acceptor", "notes_inserted"): NotesInserted,
    ("keypad", "key"): KeyPressed,
    ("keypad", "invalid_key"): InvalidKey,
    ("keypad", "pin"): PinEntered,
    ("keypad", "choice"): Chosen,
    ("keypad", "amount"): AmountEntered,
    ("keypad", "cancel"): CancelPressed,
    ("proximity", "presence"): PresenceChanged,
    ("display", "video_started"): VideoChanged,
    ("display", "video_stopped"): VideoChanged,
}


@dataclass(frozen=True)
class FaultChanged:
    """A device raised or cleared a fault (``state`` is "raised" or "cleared")."""

    device: str
    fault: Fault
    state: str


def device_event(device: str, name: str, data: Mapping[str, Any]) -> DeviceEvent | FaultChanged:
    """The typed event for what a device emitted."""
    if name == "fault":
        return FaultChanged(device, data["fault"], data["state"])
    return DEVICE_EVENTS.get((device, name), DeviceEvent)(device, name, data)


@dataclass(frozen=True)
class HostReplied:
    """The bank host answered a request."""

    reply: Any


@dataclass(frozen=True)
class MaintenanceRequested:
    """A field engineer resets one device."""

    device: str


@dataclass(frozen=True)
class ReplenishRequested:
    """A cash van loads these cassettes."""

    cassettes: tuple[Any, ...]


@dataclass(frozen=True)
class StopRequested:
    """The agent is stopping: close the open session, then call ``done`` (on the loop)."""

    reason: str
    done: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class RemoteRequest:
    """A checked command from the monitoring centre, to run and answer on the loop."""

    command: str
    args: Mapping[str, Any]
    reply: Callable[[dict[str, Any]], None]
    transport: str = "mqtt"  # "mqtt" (the monitoring centre) or "control" (the local socket)
    engineer: str = ""  # who asked on the control socket


@dataclass(frozen=True)
class RemoteAudit:
    """A command answered on the network thread: only journalled on the loop."""

    command: str
    ok: bool
    error: str
    transport: str = "mqtt"
    engineer: str = ""
    args: Mapping[str, Any] | None = None  # what was asked, when it was checked
