"""What every device has in common: status, faults and an event callback.

Vocabulary follows XFS4IoT where it fits (status, error actions).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from devices.locator import Locator


class DeviceStatus(str, enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    HARDWARE_ERROR = "hardware_error"
    USER_ERROR = "user_error"
    BUSY = "busy"


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class Action(str, enum.Enum):
    """Suggested action for a fault (XFS4IoT error actions plus a few)."""

    NONE = "none"
    RESET = "reset"
    CLEAR = "clear"
    MAINTENANCE = "maintenance"
    REPLENISH = "replenish"
    CONFIGURATION = "configuration"
    SOFTWARE = "softwareError"


class DeviceError(Exception):
    """A device command failed; carries the fault it raised."""

    def __init__(self, fault: Fault):
        super().__init__(f"{fault.device}: {fault.code}: {fault.message}")
        self.fault = fault


@dataclass(frozen=True)
class Fault:
    device: str
    code: str
    severity: Severity
    message: str
    action: Action = Action.MAINTENANCE

    def as_dict(self, state: str) -> dict[str, Any]:
        return {
            "device": self.device,
            "code": self.code,
            "severity": self.severity.value,
            "state": state,
            "message": self.message,
            "action": self.action.value,
        }


# Faults of the card in the slot, not of the device: they belong to the customer's session
# and clear when it ends.
CARD_FAULTS = frozenset(
    {
        "no_card",
        "bad_card",
        "card_moved",
        "read_error",
        "card_pulled_out",
        "ic_position",
        "icc_error",
        "mute_card",
        "card_removed",
        "application_blocked",
        "card_expired",
        "chip_error",
    }
)


# Emitter signature: (device_kind, event_name, data) -> None
Emitter = Callable[[str, str, dict[str, Any]], None]


def _no_emit(kind: str, name: str, data: dict[str, Any]) -> None:
    pass


@dataclass
class DeviceContext:
    """What a backend gets from the runtime: a scheduler and where to post events."""

    scheduler: Any = None
    emit: Emitter = _no_emit
    peers: dict[str, Any] = field(default_factory=dict)


class Device(abc.ABC):  # noqa: B024 -- abstract by intent; each interface adds its methods
    """Base for all device interfaces.

    Subclasses call ``raise_fault`` / ``clear_fault``; those update the status
    and emit ``fault`` events, which the state machine turns into service state
    and telemetry. ``status`` is derived from the active faults. Backends
    read their locator options from ``self.loc`` while they are built.
    """

    kind = "device"
    locator = ""

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        self.ctx = ctx or DeviceContext()
        self.loc = locator if locator is not None else Locator.empty()
        self.faults: dict[str, Fault] = {}
        self.opened = False

    # lifecycle -------------------------------------------------------------
    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.opened = False

    def self_test(self) -> DeviceStatus:
        """Check the device; raise or clear faults; return the status."""
        return self.status

    def poll(self) -> DeviceStatus:
        """Read the device's status between sessions: raise or clear faults, never move a
        card or notes. The self-test, unless a backend's self-test moves something."""
        return self.self_test()

    # status and faults -----------------------------------------------------
    @property
    def status(self) -> DeviceStatus:
        if not self.opened:
            return DeviceStatus.OFFLINE
        if self.faults:  # a snapshot: a driver thread may raise a fault while the loop reads
            for fault in tuple(self.faults.values()):
                if fault.severity in (Severity.ERROR, Severity.CRITICAL):
                    return DeviceStatus.HARDWARE_ERROR
        return DeviceStatus.ONLINE

    @property
    def usable(self) -> bool:
        return self.status is DeviceStatus.ONLINE

    def emit(self, name: str, **data: Any) -> None:
        self.ctx.emit(self.kind, name, data)

    def raise_fault(
        self, code: str, message: str, severity: Severity = Severity.ERROR, action: Action = Action.MAINTENANCE
    ) -> Fault:
        """Raise ``code``, once per occurrence: while it is active, another signal of the same
        condition (a second error code, a sensor, the next self-test) only updates its details."""
        fault = Fault(self.kind, code, severity, message, action)
        active = code in self.faults
        self.faults[code] = fault
        if not active:
            self.emit("fault", fault=fault, state="raised")
        return fault

    def clear_faults(self, codes: Iterable[str]) -> None:
        for code in codes:
            self.clear_fault(code)

    def clear_fault(self, code: str) -> None:
        fault = self.faults.pop(code, None)
        if fault is not None:
            self.emit("fault", fault=fault, state="cleared")

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "locator": self.locator,
            "status": self.status.value,
            "faults": [f.as_dict("raised") for f in self.faults.values()],
        }
