"""The card: idle, reading it, the PIN pad, handing it back and retaining it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from devices.carddata import CardDataError
from devices.commands import Completion
from fsm.commands import raise_unexpected
from fsm.language import language_for_country
from fsm.session import Session
from fsm.states import ESCROW_STATES

if TYPE_CHECKING:
    from devices.carddata import CardData
    from fsm.atm import ATM

# Chip faults that mean the chip never answered: the only case for a magnetic-stripe fallback.
CHIP_SILENT = {"mute_card", "no_card", "chip_unavailable"}
# Chip faults that refuse the card outright, and the reason the customer hears.
CHIP_REFUSALS = {"application_blocked": "blocked", "card_expired": "expired", "card_removed": "removed"}
REFUSAL_PROMPTS = {
    "expired": "card_expired",
    "blocked": "card_blocked",
    "unreadable": "card_unreadable",
    "removed": "card_unreadable",
}


class CardFlow:
    """Callbacks of the card's states. Reading is a chain of device commands:
    the chip, and (by configuration) the magnetic stripe; the camera's evidence snapshot
    runs beside them."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def on_enter_idle(self, event: Any) -> None:
        atm = self.atm
        atm.session = None
        reader = atm.devices.card_reader
        atm.commands.send("card_reader", "enable_entry", reader.enable_entry)
        atm.show("welcome")
        atm.session_closed()

    def on_enter_out_of_service(self, event: Any) -> None:
        atm = self.atm
        atm.session = None
        reader = atm.devices.card_reader
        if reader.usable:
            atm.commands.send("card_reader", "disable_entry", reader.disable_entry)
        atm.show("out_of_service")
        atm.session_closed()

    # -- reading the card -----------------------------------------------------
    def on_enter_reading_card(self, event: Any) -> None:
        atm = self.atm
        atm.sessions_done += 1
        atm.session = Session(f"{atm.session_prefix}-{atm.sessions_done:06d}", atm.clock.now(), atm.cfg.languages[0])
        atm.report.step(atm.sid, "card_inserted")
        atm.evidence.take("card_inserted")  # on the camera's queue: the chip does not wait for it
        chip = atm.devices.chip
        if chip.usable:
            atm.commands.send("chip", "read_card", partial(chip.read_card, atm.cfg.card_key), then=self._chip_read)
        else:
            self._chip_failed("chip_unavailable")

    def _chip_read(self, completion: Completion) -> None:
        raise_unexpected(completion, CardDataError)
        if completion.ok:
            return self._card_known(completion.result)
        fault = "bad_card_data" if isinstance(completion.error, CardDataError) else completion.fault_code
        self.atm.report.step(self.atm.sid, "chip_failed", fault=fault)
        self._chip_failed(fault)

    def _chip_failed(self, fault: str | None) -> None:
        """Chip first. The magnetic stripe only by configuration, and only when the chip
        did not answer at all: a chip that answered (expired, blocked, bad data) is refused."""
        atm = self.atm
        if fault in CHIP_REFUSALS:
            return self._refused(CHIP_REFUSALS[fault])
        if fault not in CHIP_SILENT or not atm.cfg.magstripe_fallback:
            return self._refused("unreadable")
        reader = atm.devices.card_reader
        atm.commands.send("card_reader", "read", partial(reader.read, atm.cfg.card_key), then=self._stripe_read)

    def _stripe_read(self, completion: Completion) -> None:
        raise_unexpected(completion, CardDataError)
        if completion.ok:
            return self._card_known(completion.result)
        self._refused("stuck" if completion.fault_code == "jam" else "unreadable")

    def _card_known(self, card: CardData) -> None:
        atm = self.atm
        if card.expired(atm.clock.utcnow().strftime("%y%m")):
            return self._refused("expired")
        session = atm.current
        session.card = card
        session.language = language_for_country(card.country, atm.cfg.languages, atm.cfg.languages[0])
        # The token answers "was this card used here?"; the last 4 digits are for people.
        # Never the masked BIN next to the token: together they narrow the number too much.
        atm.report.step(atm.sid, "card_read", last4=card.last4, token=card.token, source=card.source)
        atm.out("card", masked=card.masked, source=card.source, country=card.country, label=card.label, session=atm.sid)
        atm.card_read()

    def _refused(self, reason: str) -> None:
        atm = self.atm
        if reason == "stuck":
            atm.current.outcome = "card_stuck"
            atm.card_stuck()
            return
        atm.current.outcome = "card_refused"
        atm.report.step(atm.sid, "card_refused", reason=reason)
        atm.show("card_refused", reason=reason)
        if reason in REFUSAL_PROMPTS:
            atm.say(REFUSAL_PROMPTS[reason])
        atm.card_refused()

    # -- PIN ------------------------------------------------------------------
    def on_enter_pin_entry(self, event: Any) -> None:
        atm = self.atm
        atm.devices.keypad.set_mode("pin")
        atm.show("enter_pin", tries_left=atm.cfg.pin_attempts - atm.current.pin_tries)
        atm.idle.arm()

    # -- handing the card back ------------------------------------------------
    def on_enter_ejecting_card(self, event: Any) -> None:
        atm = self.atm
        atm.commands.run("card_reader", "eject_card", atm.devices.card_reader.eject, atm.sid, then=self._ejected)

    def _ejected(self, completion: Completion) -> None:
        raise_unexpected(completion)
        atm = self.atm
        if not completion.ok:
            atm.current.outcome = "card_stuck"
            atm.card_stuck()
            return
        atm.card_ejected()

    def on_enter_retaining_card(self, event: Any) -> None:
        atm = self.atm
        reason = "forgotten" if event.event.name == "take_timed_out" else atm.current.outcome
        atm.commands.run(
            "card_reader",
            "capture_card",
            atm.devices.card_reader.capture,
            atm.sid,
            then=lambda completion: self._retained(reason, completion),
            reason=reason,
        )

    def _retained(self, reason: str, completion: Completion) -> None:
        raise_unexpected(completion)
        atm = self.atm
        session = atm.current
        session.card_retained = True
        session.outcome = "card_retained" if reason == "forgotten" else reason
        atm.report.event(atm.sid, "card_retained", function=session.function, reason=reason)
        atm.evidence.take("card_retained")
        atm.show("card_retained")
        atm.say("card_retained")
        atm.retained()

    # -- the customer gives up ------------------------------------------------
    def cancelled(self, event: Any) -> None:
        self._end_early("cancelled")

    def abandoned(self, event: Any) -> None:
        self._end_early("abandoned")

    def _end_early(self, outcome: str) -> None:
        """The customer cancelled or walked off: give back any notes in escrow."""
        atm = self.atm
        session = atm.current
        session.outcome = outcome
        atm.report.step(atm.sid, outcome, state=atm.state)
        if atm.state in ESCROW_STATES:
            session.escrow = atm.devices.acceptor.escrow()
        atm.flows.deposit.return_escrow()

    def fail_safe_steps(self) -> list[Callable[[], object]]:
        """Stop taking cards; with a session open, undo its money and hand the card back."""
        atm = self.atm
        reader = atm.devices.card_reader
        queue = atm.commands.queues["card_reader"]

        def ignore(completion: Completion) -> None:
            pass

        steps: list[Callable[[], object]] = [
            lambda: queue.submit("disable_entry", reader.disable_entry, ignore),
            lambda: atm.telemetry.status(True, "out_of_service"),
        ]
        if atm.session is not None:
            steps[:0] = [
                atm.flows.host.reverse,
                lambda: queue.submit("eject_card", reader.eject, ignore) if reader.position.value == "inside" else None,
            ]
        return steps
