"""Withdrawal: dispensing into the stacker, presenting, retracting, purging."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from devices.base import Action
from devices.commands import Completion
from devices.dispenser import DispenseResult
from fsm.commands import raise_unexpected

if TYPE_CHECKING:
    from fsm.atm import ATM


class CashFlow:
    """The cash's states. A failed or partial dispense is never retried."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def on_enter_dispensing(self, event: Any) -> None:
        atm = self.atm
        dispenser = atm.devices.dispenser
        session = atm.current
        plan = session.plan if dispenser.usable else None
        if plan is None:
            session.outcome = "dispense_failed"
            atm.flows.host.reverse()
            atm.dispensed()
            return
        atm.commands.run(
            "dispenser",
            "dispense",
            partial(dispenser.dispense, plan),
            atm.sid,
            then=self._dispensed,
            outcome=self._dispense_outcome,
            cassettes=dispenser.cassettes,
            plan=plan,
            amount=session.amount,
            counts={c.id: c.count for c in dispenser.cassettes},
        )

    def _result(self, completion: Completion) -> DispenseResult:
        """What the dispense did; a command that raised may have moved notes unseen."""
        result = completion.result
        if isinstance(result, DispenseResult):
            return result
        return DispenseResult(
            requested=dict(self.atm.current.plan or {}),
            fault_code=completion.fault_code or "hardwareError",
            uncertain=True,
        )

    def _dispense_outcome(self, completion: Completion) -> dict[str, Any]:
        result = self._result(completion)
        return {
            "ok": result.complete,
            "picked": result.picked,
            "rejected": result.rejected,
            "fault": result.fault_code,
            **({"result": "unknown", "reconcile": "required"} if result.uncertain else {}),
        }

    def _dispensed(self, completion: Completion) -> None:
        raise_unexpected(completion)
        atm = self.atm
        session = atm.current
        dispenser = atm.devices.dispenser
        result = self._result(completion)
        session.stacked_notes = sum(result.stacked(cid) for cid in result.picked)
        session.stacked_value = sum(result.stacked(cid) * dispenser.cassette(cid).denomination for cid in result.picked)
        if result.uncertain:  # nobody knows what left the cassettes: count them before paying out again
            dispenser.raise_fault(
                "count_unknown", "a dispense got no answer; count and replenish the cassettes", action=Action.REPLENISH
            )
            session.outcome = "dispense_uncertain"
            if not dispenser.has_shutter:  # whatever left went straight to the customer: unknown
                session.dispensed_notes = session.dispensed_amount = None
            atm.report.notify(atm.sid, "dispense_uncertain", plan=session.plan)
            atm.show("dispense_failed")
        elif not result.complete:
            session.outcome = "dispense_failed"
            if dispenser.has_shutter:  # never presented, never retried: purge what was stacked
                self.purge_stacker()
            else:  # what passed the exit is the customer's: reverse only the rest
                value = session.stacked_value
                atm.report.step(atm.sid, "partial_dispense", notes=session.stacked_notes, value=value)
                atm.flows.host.reverse(session.amount - value)
            atm.show("dispense_failed")
        atm.publish_cash()  # after count_unknown, so the levels say they are not to be trusted
        atm.dispensed()

    def cash_waiting(self, event: Any) -> bool:
        return self.atm.current.stacked_notes > 0

    def on_enter_presenting_cash(self, event: Any) -> None:
        atm = self.atm
        atm.commands.run(
            "dispenser",
            "present_cash",
            atm.devices.dispenser.present,
            atm.sid,
            then=self._presented,
            notes=atm.current.stacked_notes,
        )

    def _presented(self, completion: Completion) -> None:
        raise_unexpected(completion)
        atm = self.atm
        session = atm.current
        if not completion.ok:
            session.outcome = "present_failed"
            atm.cash_stuck()
            return
        session.presented_notes, session.stacked_notes = completion.result, 0
        session.dispensed_notes, session.dispensed_amount = session.presented_notes, session.stacked_value
        atm.evidence.take("cash_presented")
        atm.cash_presented()

    def on_enter_retracting_cash(self, event: Any) -> None:
        atm = self.atm
        session = atm.current
        dispenser = atm.devices.dispenser
        if not dispenser.has_shutter:  # the notes stay within reach: they are the customer's
            session.outcome = "cash_left"
            atm.report.event(atm.sid, "cash_left", function=session.function, notes=session.presented_notes)
            atm.retracted()
            return
        atm.commands.run(
            "dispenser", "retract_cash", dispenser.retract, atm.sid, then=self._retracted, notes=session.presented_notes
        )

    def _reverse_retracted(self, completion: Completion) -> int:
        """Credit the customer for exactly the notes taken back: all of them, none, or, when
        only some came back, nothing until an engineer counts the retract bin."""
        atm = self.atm
        session = atm.current
        notes = (completion.result if completion.ok else 0) or 0
        session.cash_retracted = notes
        if notes and notes >= session.presented_notes:
            atm.flows.host.reverse()
        elif notes:
            atm.report.step(
                atm.sid, "reversal_withheld", notes=notes, presented=session.presented_notes, reconcile="required"
            )
        return int(notes)

    def _retracted(self, completion: Completion) -> None:
        raise_unexpected(completion)
        atm = self.atm
        session = atm.current
        notes = self._reverse_retracted(completion)
        session.outcome = "cash_retracted"
        atm.report.event(atm.sid, "cash_retracted", function=session.function, notes=notes)
        atm.say("cash_retracted")
        atm.retracted()

    def retract_on_shutdown(self) -> None:
        """The agent stops with cash at the gate: retract it, and reverse what came back
        (a dispenser without a shutter takes nothing back: the notes are the customer's)."""
        atm = self.atm
        atm.commands.run(
            "dispenser",
            "retract_cash",
            atm.devices.dispenser.retract,
            atm.sid,
            then=self._shutdown_retracted,
            notes=atm.current.presented_notes,
        )

    def _shutdown_retracted(self, completion: Completion) -> None:
        self._reverse_retracted(completion)

    def purge_stacker(self) -> None:
        """Notes that were never presented go to the reject bin; the host is credited."""
        atm = self.atm
        session = atm.current
        atm.commands.run(
            "dispenser", "purge_stacker", atm.devices.dispenser.reset, atm.sid, notes=session.stacked_notes
        )
        atm.flows.host.reverse()
        session.stacked_notes, session.stacked_value = 0, 0
