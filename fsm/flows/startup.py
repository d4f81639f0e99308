"""Start-up and self-tests: recover the journal, test every device, go to service."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from devices.base import Action
from devices.commands import Completion
from fsm.recovery import SessionRecoverer

if TYPE_CHECKING:
    from fsm.atm import ATM


class StartUp:
    """The ATM's start-up, and the self-tests that follow it."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm
        self._polling = False  # a poll of every device is on the queues

    def start(self) -> None:
        atm = self.atm
        for entry in atm.journal.recover():
            atm.out("journal", action="recovered", op=entry.name, session=entry.session)
        SessionRecoverer(atm).recover()  # before the counts are judged: it may block withdrawals
        if atm.journal.counts_unreconciled():  # survives restarts until a replenishment
            atm.devices.dispenser.raise_fault(
                "count_unknown",
                "a dispense was interrupted; count and replenish the cassettes",
                action=Action.REPLENISH,
            )
        self.self_test(list(atm.devices), lambda results: self._tested())

    def _tested(self) -> None:
        atm = self.atm
        atm.service.refresh(announce=False)
        atm.telemetry.status(True, atm.service.service)
        atm.publish_cash()
        atm.scheduler.call_later(atm.cfg.cash_interval, self._periodic_cash)
        atm.scheduler.call_later(atm.t["selftest_retry"], self._periodic_selftest)
        atm.scheduler.call_later(atm.t["status_poll"], self._periodic_poll)
        if atm.service.functions:
            atm.self_test_passed()
        else:
            atm.self_test_failed()

    def self_test(self, kinds: list[str], then: Callable[[dict[str, str]], None]) -> None:
        """Self-test ``kinds`` on their queues; ``then(results)`` once every one has answered."""
        self._on_queues(kinds, "self_test", then)

    def _on_queues(self, kinds: list[str], method: str, then: Callable[[dict[str, str]], None]) -> None:
        """Run ``method`` of each of ``kinds`` on its queue; ``then(results)`` once all answered."""
        atm = self.atm
        results: dict[str, str] = {}
        if not kinds:
            return then(results)

        def tested(kind: str) -> Callable[[Completion], None]:
            def record(completion: Completion) -> None:
                if completion.ok:
                    results[kind] = completion.result.value
                else:
                    results[kind] = f"error: {completion.fault_code}"
                if len(results) == len(kinds):
                    then({k: results[k] for k in kinds})

            return record

        for kind in kinds:
            atm.commands.send(kind, method, getattr(atm.devices[kind], method), then=tested(kind))

    def _periodic_cash(self) -> None:
        atm = self.atm
        atm.publish_cash()
        atm.scheduler.call_later(atm.cfg.cash_interval, self._periodic_cash)

    def _periodic_poll(self) -> None:
        """Between sessions, read every device's status (nothing moves); the service follows."""
        atm = self.atm
        atm.scheduler.call_later(atm.t["status_poll"], self._periodic_poll)
        if self._polling or atm.state not in ("idle", "out_of_service"):
            return
        self._polling = True

        def polled(results: dict[str, str]) -> None:
            self._polling = False
            atm.service.refresh()
            atm.follow_service()

        self._on_queues(list(atm.devices), "poll", polled)

    def _periodic_selftest(self) -> None:
        atm = self.atm
        atm.scheduler.call_later(atm.t["selftest_retry"], self._periodic_selftest)
        if atm.state not in ("idle", "out_of_service"):
            return
        faulty = [kind for kind, device in atm.devices.items() if device.faults]

        def tested(results: dict[str, str]) -> None:
            atm.service.refresh()
            if atm.state == "out_of_service" and atm.can_serve():
                atm.service_restored()

        self.self_test(faulty, tested)
