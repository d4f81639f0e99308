"""Deposit: notes into the escrow, confirmed, stored or given back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devices.commands import Completion
from fsm.commands import raise_unexpected

if TYPE_CHECKING:
    from fsm.atm import ATM


class DepositFlow:
    """The deposit's states. Notes left in the escrow are never credited to anyone."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def on_enter_accepting_notes(self, event: Any) -> None:
        atm = self.atm
        acceptor = atm.devices.acceptor
        if acceptor.escrow():  # someone else's notes: never credit them to this customer
            acceptor.raise_fault("escrow_not_empty", "notes are left in the escrow")
            atm.current.outcome = "deposit_unavailable"
            atm.aborted()
            return
        atm.commands.send("acceptor", "enable", acceptor.enable)
        atm.show("insert_notes")
        atm.idle.arm()

    def on_exit_accepting_notes(self, event: Any) -> None:
        acceptor = self.atm.devices.acceptor
        self.atm.commands.send("acceptor", "disable", acceptor.disable)

    def on_enter_confirming_deposit(self, event: Any) -> None:
        atm = self.atm
        session = atm.current
        escrow = atm.devices.acceptor.escrow()
        session.escrow = escrow
        session.amount = sum(d * n for d, n in escrow.items())
        atm.devices.keypad.set_mode("confirm", ("confirm",))
        atm.show("confirm_deposit", amount=session.amount)
        atm.idle.arm()

    def on_enter_storing(self, event: Any) -> None:
        atm = self.atm
        atm.commands.run(
            "acceptor", "store_notes", atm.devices.acceptor.store, atm.sid, then=self._stored, notes=atm.current.escrow
        )

    def _stored(self, completion: Completion) -> None:
        raise_unexpected(completion)
        atm = self.atm
        session = atm.current
        if not completion.ok:
            session.outcome = "store_failed"
            atm.flows.host.reverse()
        session.escrow = {}
        atm.stored()

    def return_escrow(self) -> None:
        """Give the notes in the escrow back to the customer."""
        atm = self.atm
        session = atm.session
        if session and session.escrow:
            atm.commands.run(
                "acceptor", "return_notes", atm.devices.acceptor.return_notes, atm.sid, notes=session.escrow
            )
            session.escrow = {}
