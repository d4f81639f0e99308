"""Card and cash at the gate, forgotten items, and the end of the session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devices.base import CARD_FAULTS
from fsm.states import CARD_INSIDE, ESCROW_STATES

if TYPE_CHECKING:
    from fsm.atm import ATM


class GateFlow:
    """Waiting for the customer to take the card or the cash, and closing the session."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def on_enter_card_at_gate(self, event: Any) -> None:
        self._wait_for_taking("take_card", self.atm.t["card_take"])

    def on_exit_card_at_gate(self, event: Any) -> None:
        atm = self.atm
        atm.prompter.stop(event.event.name)
        if event.event.name == "card_taken":
            atm.report.step(atm.sid, "card_taken")

    def on_enter_cash_at_gate(self, event: Any) -> None:
        self._wait_for_taking("take_cash", self.atm.t["cash_take"])

    def on_exit_cash_at_gate(self, event: Any) -> None:
        atm = self.atm
        atm.prompter.stop(event.event.name)
        if event.event.name == "cash_taken":
            atm.report.step(atm.sid, "cash_taken", notes=atm.current.presented_notes)

    def _wait_for_taking(self, prompt_id: str, timeout: float) -> None:
        """Card or cash is at the gate: ask once, time out, prompt if already gone."""
        atm = self.atm
        session = atm.current
        reply = session.reply
        if reply is not None and reply.ok and session.function == "balance":
            atm.show(prompt_id, balance=reply.balance)  # stays up while the card is at the gate
        else:
            atm.show(prompt_id)
        atm.say(prompt_id)
        atm.later(timeout, "take_timed_out")
        self.start_forgotten_prompt()

    # -- forgotten items ---------------------------------------------------------
    def start_forgotten_prompt(self, event: Any = None) -> None:
        """The customer walked away with the card or cash still at the gate."""
        atm = self.atm
        if not atm.presence.away or not atm.presence.trusted:
            return
        if atm.state == "cash_at_gate":
            pattern = "forgotten_cash"
        elif atm.current.function == "deposit":
            pattern = "forgotten_card_deposit"
        else:
            pattern = "forgotten_card"
        atm.report.step(atm.sid, "forgotten_prompt", pattern=pattern)
        atm.prompter.start(pattern, atm.current.language)

    def stop_forgotten_prompt(self, event: Any = None) -> None:
        self.atm.prompter.stop("customer_returned")

    # -- the end ---------------------------------------------------------------------
    def shutting_down(self, event: Any) -> None:
        """Card back to the gate, cash at the shutter retracted and reversed, escrow returned;
        ``ending`` then purges the stacker and writes the session's end."""
        atm = self.atm
        if atm.state in CARD_INSIDE:
            atm.commands.run("card_reader", "eject_card", atm.devices.card_reader.eject, atm.sid)
        if atm.state == "cash_at_gate":
            atm.flows.cash.retract_on_shutdown()
        if atm.state in ESCROW_STATES:
            atm.current.escrow = atm.devices.acceptor.escrow()
        atm.flows.deposit.return_escrow()
        atm.prompter.stop("shutdown")

    def on_enter_ending(self, event: Any) -> None:
        atm = self.atm
        if atm.current.stacked_notes:
            atm.flows.cash.purge_stacker()
        atm.commands.when_idle(self._close)

    def _close(self) -> None:
        """Every command of the session has completed: write its end, then go on."""
        atm = self.atm
        if atm.state != "ending" or atm.session is None:
            return
        for device in (atm.devices.card_reader, atm.devices.chip):  # the card's faults went with it
            device.clear_faults(CARD_FAULTS)
        atm.report.session_end(atm.session.summary(atm.clock.now()))
        atm.service.refresh()
        atm.finished()
