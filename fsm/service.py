"""Which functions the ATM can offer, from the state of its devices."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fsm.ports import JournalPort, Out, TelemetryPort

FUNCTIONS = ("withdrawal", "deposit", "balance", "transfer")

# Devices every session needs, and the extra ones each function needs.
ESSENTIAL = ("card_reader", "keypad", "display")
NEEDS = {
    "withdrawal": ("dispenser",),
    "deposit": ("acceptor",),
    "balance": (),
    "transfer": (),
}


def available_functions(devices: Mapping[str, Any] | Any) -> list[str]:
    """Functions whose devices are all usable (a dispenser must also hold cash)."""
    if not all(devices[k].usable for k in ESSENTIAL if k in devices):
        return []
    out = []
    for function in FUNCTIONS:
        if not all(k in devices and devices[k].usable for k in NEEDS[function]):
            continue
        if function == "withdrawal" and all(c.status == "empty" for c in devices["dispenser"].cassettes):
            continue
        out.append(function)
    return out


def service_state(functions: list[str]) -> str:
    if not functions:
        return "out_of_service"
    return "in_service" if len(functions) == len(FUNCTIONS) else "degraded"


class ServiceState:
    """The service the ATM offers: derived from the devices, held by an operator,
    or lost for good (``broken``) when an error could not be contained."""

    def __init__(
        self,
        devices: Any,
        journal: JournalPort,
        telemetry: TelemetryPort,
        out: Out,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.devices = devices
        self.journal = journal
        self.telemetry = telemetry
        self.out = out
        self.changed = changed  # tells the owner (the birth snapshot follows the service)
        self.functions: list[str] = []
        self.service = "out_of_service"
        self.held = False  # the monitoring centre took the ATM out of service
        self.hold_reason = ""
        self.broken = False  # out of service until restarted

    @property
    def can_serve(self) -> bool:
        return bool(self.functions) and not self.broken

    def refresh(self, announce: bool = True) -> None:
        """Recompute the functions; journal, print and announce a change of service."""
        self.functions = [] if self.held or self.broken else available_functions(self.devices)
        service = service_state(self.functions)
        if service != self.service:
            self.service = service
            self.journal.event(None, "service", state=service, functions=self.functions)
            self.out("service", service=service, functions=self.functions)
            if announce:
                self.telemetry.status(True, service)
            self.changed()

    def hold(self, reason: str) -> None:
        self.held, self.hold_reason = True, reason

    def release(self) -> None:
        self.held, self.hold_reason = False, ""

    def lose(self) -> None:
        """An error beyond containment: out of service until restarted."""
        self.broken = True
        self.functions = []
        self.service = "out_of_service"
        self.changed()
