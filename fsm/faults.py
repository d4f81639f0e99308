"""Fault routing: a device's fault goes to the journal, telemetry and the service state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsm.events import FaultChanged

if TYPE_CHECKING:
    from fsm.atm import ATM


class FaultRouter:
    """Reports each raised or cleared fault and lets the service follow it."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def changed(self, event: FaultChanged) -> None:
        atm = self.atm
        record = event.fault.as_dict(event.state)
        atm.out("device", device=event.device, event="fault", fault=record)
        if event.device == "proximity" and event.state == "raised":  # forget what a failing sensor said
            atm.presence.update(True)
            atm.prompter.stop("sensor_fault")
        atm.report.fault(record)
        atm.service.refresh()
        atm.publish_birth()
        atm.follow_service()
