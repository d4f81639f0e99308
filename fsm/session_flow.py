"""What happens in a customer session: card, PIN, menu, host, cash and card at the gate.

A mixin of :class:`fsm.atm.ATM`: transitions finds these callbacks on the model
by name (``on_enter_<state>``, conditions and ``before`` callbacks in
``fsm.states``). Every device command that moves money or a card goes through
``ATM.command`` (intent row, command, outcome row).
"""
from __future__ import annotations

from agent.prompts import language_for_country
from devices.base import Action, DeviceError
from devices.carddata import CardDataError
from fsm.session import Session

# Chip faults that mean the chip never answered: the only case for a magnetic-stripe fallback.
CHIP_SILENT = {"mute_card", "no_card", "chip_unavailable"}
# Chip faults that refuse the card outright, and the reason the customer hears.
CHIP_REFUSALS = {"application_blocked": "blocked", "card_expired": "expired", "card_removed": "removed"}
REFUSAL_PROMPTS = {"expired": "card_expired", "blocked": "card_blocked", "unreadable": "card_unreadable",
                   "removed": "card_unreadable"}
HOST_OPS = {"withdrawal": "withdraw", "deposit": "deposit", "balance": "balance", "transfer": "transfer"}


class SessionFlow:
    """Callbacks for the session states; needs the attributes ATM sets up."""

    # -- the session ---------------------------------------------------------
    def on_enter_idle(self, event) -> None:
        self.session = None
        self.dev("card_reader").enable_entry()
        self.show("welcome")

    def on_enter_out_of_service(self, event) -> None:
        self.session = None
        reader = self.dev("card_reader")
        if reader.usable:
            reader.disable_entry()
        self.show("out_of_service")

    def on_enter_reading_card(self, event) -> None:
        self.sessions_done += 1
        self.session = Session(f"{self.cfg.atm_id}-{self.sessions_done:06d}", self.clock.now(),
                               self.cfg.languages[0])
        self.journal.step(self.sid, "card_inserted", camera=self._snapshot())
        card, reason = self._read_card()
        if card is None:
            if reason == "stuck":
                self.session.outcome = "card_stuck"
                return self.card_stuck()
            self.session.outcome = "card_refused"
            self.journal.step(self.sid, "card_refused", reason=reason)
            self.show("card_refused", reason=reason)
            if reason in REFUSAL_PROMPTS:
                self.say(REFUSAL_PROMPTS[reason])
            return self.card_refused()
        self.session.card = card
        self.session.language = self._language_for(card)
        # The token answers "was this card used here?"; the last 4 digits are for people.
        # Never the masked BIN next to the token: together they narrow the number too much.
        self.journal.step(self.sid, "card_read", last4=card.last4, token=card.token,
                          source=card.source)
        self.out("card", masked=card.masked, source=card.source, country=card.country,
                 label=card.label, session=self.sid)
        self.card_read()

    def _snapshot(self) -> list | None:
        """Take a camera picture of the customer; returns its shape, or None without a camera."""
        camera = self.dev("camera")
        if camera.usable:
            try:
                return list(camera.snapshot().shape)
            except DeviceError:
                pass
        return None

    def _read_card(self):
        """Chip first. The magnetic stripe only by configuration, and only when the chip
        did not answer at all: a chip that answered (expired, blocked, bad data) is refused."""
        key = self.cfg.card_key
        chip = self.dev("chip")
        card, chip_fault = None, "chip_unavailable"
        if chip.usable:
            try:
                card = chip.read_card(key)
            except DeviceError as exc:
                chip_fault = exc.fault.code
            except CardDataError:
                chip_fault = "bad_card_data"
            if card is None:
                self.journal.step(self.sid, "chip_failed", fault=chip_fault)
        if card is None:
            if chip_fault in CHIP_REFUSALS:
                return None, CHIP_REFUSALS[chip_fault]
            if chip_fault not in CHIP_SILENT or not self.cfg.magstripe_fallback:
                return None, "unreadable"
            try:
                card = self.dev("card_reader").read(key)
            except DeviceError as exc:
                stuck = exc.fault.code == "jam"
                return None, "stuck" if stuck else "unreadable"
            except CardDataError:
                return None, "unreadable"
        if card.expired(self.clock.utcnow().strftime("%y%m")):
            return None, "expired"
        return card, ""

    def _language_for(self, card) -> str:
        """The card's issuer country decides, until the customer chooses."""
        return language_for_country(card.country, self.cfg.languages, self.cfg.languages[0])

    def on_enter_pin_entry(self, event) -> None:
        self.dev("keypad").set_mode("pin")
        self.show("enter_pin", tries_left=self.cfg.pin_attempts - self.session.pin_tries)
        self._arm_idle()

    def on_enter_verifying_pin(self, event) -> None:
        self.dev("keypad").set_mode("off")
        self._host_request("verify_pin", pin=event.kwargs.get("pin"))

    def _host_request(self, op: str, amount: int = 0, pin=None) -> None:
        self.session.reply = None
        self.session.host_request = self.host.request(
            op, self.session.card.token, self._host_reply, pin=pin, amount=amount)
        if op in ("withdraw", "deposit", "transfer"):
            self.session.money_request = self.session.host_request
        self.journal.step(self.sid, "host_request", op=op, amount=amount)
        self.later(self.t["host"], "host_timed_out")

    def _host_reply(self, reply) -> None:
        self.post("host", reply=reply)

    def is_current_reply(self, event) -> bool:
        reply = event.kwargs.get("reply")
        if self.session is None or reply is None or reply.request_id != self.session.host_request:
            return False
        self.session.reply = reply
        self.journal.step(self.sid, "host_reply", code=reply.code)
        return True

    def reply_ok(self, event) -> bool:
        return self.session.reply.ok

    def reply_wrong_pin(self, event) -> bool:
        if self.session.reply.code != "wrong_pin":
            return False
        self.show("wrong_pin")
        self.say("wrong_pin")
        return True

    def pin_tries_used_up(self, event) -> bool:
        if self.session.reply.code != "wrong_pin":
            return False
        self.session.pin_tries += 1
        if self.session.pin_tries >= self.cfg.pin_attempts:
            self.session.outcome = "pin_tries_exceeded"
            return True
        return False

    def on_enter_menu(self, event) -> None:
        # self.functions is current: every fault, refill and session end refreshes it.
        languages = [f"lang:{lang}" for lang in self.cfg.languages]
        self.dev("keypad").set_mode("choice", [*self.functions, *languages])
        self.show("menu", options=list(self.functions), languages=list(self.cfg.languages),
                  language=self.session.language)
        self._arm_idle()

    def chose_language(self, event) -> bool:
        """The customer picks a language on the menu: everything from now on uses it."""
        value = event.kwargs.get("value", "")
        if not value.startswith("lang:") or value[5:] not in self.cfg.languages:
            return False
        self.session.language = value[5:]
        self.journal.step(self.sid, "language", language=self.session.language)
        self.show("menu", options=list(self.functions), languages=list(self.cfg.languages),
                  language=self.session.language)
        return True

    def _chose(self, event, function: str) -> bool:
        if event.kwargs.get("value") != function or function not in self.functions:
            return False
        self.session.function = function
        self.journal.step(self.sid, "chosen", function=function)
        return True

    def chose_withdrawal(self, event) -> bool:
        return self._chose(event, "withdrawal")

    def chose_deposit(self, event) -> bool:
        return self._chose(event, "deposit")

    def chose_balance(self, event) -> bool:
        return self._chose(event, "balance")

    def chose_transfer(self, event) -> bool:
        return self._chose(event, "transfer")

    def chose_confirm(self, event) -> bool:
        return event.kwargs.get("value") == "confirm"

    def is_withdrawal(self, event) -> bool:
        return self.session.function == "withdrawal"

    def is_deposit(self, event) -> bool:
        return self.session.function == "deposit"

    def on_enter_transfer_caution(self, event) -> None:
        self.dev("keypad").set_mode("confirm", ("confirm",))
        self.show("transfer_caution")
        self.say("transfer_caution")
        self.journal.step(self.sid, "transfer_caution")
        self._arm_idle()

    def on_enter_amount_entry(self, event) -> None:
        self.dev("keypad").set_mode("amount")
        self.show("enter_amount", function=self.session.function)
        self._arm_idle()

    def amount_ok(self, event) -> bool:
        amount = event.kwargs.get("value", 0)
        if not 0 < amount <= self.cfg.max_withdrawal:
            return False
        if self.session.function == "withdrawal":
            # Planned once: nothing else can touch the cassettes until this session ends.
            self.session.plan = self.dev("dispenser").plan(amount)
            if self.session.plan is None:
                return False
        self.session.amount = amount
        return True

    def refuse_amount(self, event) -> None:
        self.journal.step(self.sid, "amount_refused", amount=event.kwargs.get("value"))
        self.show("amount_refused", amount=event.kwargs.get("value"))

    def on_enter_authorising(self, event) -> None:
        self.dev("keypad").set_mode("off")
        self._host_request(HOST_OPS[self.session.function], amount=self.session.amount)

    def host_declined(self, event) -> None:
        self.session.outcome = "declined"
        self.show("declined", reason=self.session.reply.code)
        self.say("declined")
        self._return_escrow()

    def on_enter_ejecting_card(self, event) -> None:
        _, fault = self.command("eject_card", self.dev("card_reader").eject)
        if fault:
            self.session.outcome = "card_stuck"
            return self.card_stuck()
        return self.card_ejected()

    def host_lost(self, event) -> None:
        """No answer from the host: undo whatever it may have done."""
        self.session.outcome = "host_timeout"
        self.journal.step(self.sid, "host_timeout", op=self.session.function)
        if self.state == "authorising":  # the host may have moved the money: undo it
            self._reverse()
        self._return_escrow()
        self.show("host_unavailable")

    def _reverse(self, amount: int | None = None) -> None:
        """Ask the host to undo this session's money movement, or ``amount`` of it (once;
        the host ignores one that never happened)."""
        original = self.session.money_request
        amount = self.session.amount if amount is None else amount
        if original is not None and amount > 0:
            self.session.money_request = None
            self.journal.step(self.sid, "reversal", original=original, amount=amount)
            self.host.request("reverse", self.session.card.token, lambda reply: None, original=original,
                              amount=amount)

    # -- withdrawal ----------------------------------------------------------
    def on_enter_dispensing(self, event) -> None:
        dispenser = self.dev("dispenser")
        plan = self.session.plan if dispenser.usable else None
        if plan is None:
            self.session.outcome = "dispense_failed"
            self._reverse()
            return self.dispensed()
        intent = self.journal.intent(self.sid, "dispense", plan=plan, amount=self.session.amount,
                                     counts={c.id: c.count for c in dispenser.cassettes})
        result = dispenser.dispense(plan)
        self.journal.outcome(intent, self.sid, "dispense", cassettes=dispenser.cassettes,
                             ok=result.complete, picked=result.picked, rejected=result.rejected,
                             fault=result.fault_code,
                             **({"result": "unknown", "reconcile": "required"} if result.uncertain else {}))
        self.publish_cash()
        self.session.stacked_notes = sum(result.stacked(cid) for cid in result.picked)
        if result.uncertain:  # nobody knows what left the cassettes: count them before paying out again
            dispenser.raise_fault("count_unknown", "a dispense got no answer; count and replenish the cassettes",
                                  action=Action.REPLENISH)
            self.session.outcome = "dispense_uncertain"
            self.telemetry.event({"event": "dispense_uncertain", "session": self.sid, "plan": plan})
            self.show("dispense_failed")
        elif not result.complete:
            self.session.outcome = "dispense_failed"
            if dispenser.has_shutter:  # never presented, never retried: purge what was stacked
                self._purge_stacker()
            else:  # what passed the exit is the customer's: reverse only the rest
                value = sum(result.stacked(cid) * dispenser.cassette(cid).denomination for cid in result.picked)
                self.journal.step(self.sid, "partial_dispense", notes=self.session.stacked_notes, value=value)
                self._reverse(self.session.amount - value)
            self.show("dispense_failed")
        self.dispensed()

    def cash_waiting(self, event) -> bool:
        return self.session.stacked_notes > 0

    def on_enter_presenting_cash(self, event) -> None:
        notes, fault = self.command("present_cash", self.dev("dispenser").present,
                                    notes=self.session.stacked_notes)
        if fault:
            self.session.outcome = "present_failed"
            return self.cash_stuck()
        self.session.presented_notes, self.session.stacked_notes = notes, 0
        return self.cash_presented()

    def on_enter_cash_at_gate(self, event) -> None:
        self._wait_for_taking("take_cash", self.t["cash_take"])

    def on_exit_cash_at_gate(self, event) -> None:
        self.prompter.stop(event.event.name)
        if event.event.name == "cash_taken":
            self.journal.step(self.sid, "cash_taken", notes=self.session.presented_notes)

    def on_enter_retracting_cash(self, event) -> None:
        dispenser = self.dev("dispenser")
        if not dispenser.has_shutter:  # the notes stay within reach: they are the customer's
            self.session.outcome = "cash_left"
            notes = self.session.presented_notes
            self.journal.event(self.sid, "cash_left", function=self.session.function, notes=notes)
            self.telemetry.event({"event": "cash_left", "session": self.sid,
                                  "function": self.session.function, "notes": notes})
            return self.retracted()
        notes, _ = self.command("retract_cash", dispenser.retract, notes=self.session.presented_notes)
        notes = notes or 0
        self.session.cash_retracted = notes
        self.session.outcome = "cash_retracted"
        self._reverse()
        self.journal.event(self.sid, "cash_retracted", function=self.session.function, notes=notes)
        self.telemetry.event({"event": "cash_retracted", "session": self.sid,
                              "function": self.session.function, "notes": notes})
        self.say("cash_retracted")
        self.retracted()

    # -- deposit -------------------------------------------------------------
    def on_enter_accepting_notes(self, event) -> None:
        acceptor = self.dev("acceptor")
        if acceptor.escrow():  # someone else's notes: never credit them to this customer
            acceptor.raise_fault("escrow_not_empty", "notes are left in the escrow")
            self.session.outcome = "deposit_unavailable"
            return self.aborted()
        acceptor.enable()
        self.show("insert_notes")
        self._arm_idle()

    def on_exit_accepting_notes(self, event) -> None:
        self.dev("acceptor").disable()

    def on_enter_confirming_deposit(self, event) -> None:
        escrow = self.dev("acceptor").escrow()
        self.session.escrow = escrow
        self.session.amount = sum(d * n for d, n in escrow.items())
        self.dev("keypad").set_mode("confirm", ("confirm",))
        self.show("confirm_deposit", amount=self.session.amount)
        self._arm_idle()

    def on_enter_storing(self, event) -> None:
        _, fault = self.command("store_notes", self.dev("acceptor").store, notes=self.session.escrow)
        if fault:
            self.session.outcome = "store_failed"
            self._reverse()
        self.session.escrow = {}
        self.stored()

    def _return_escrow(self) -> None:
        if self.session and self.session.escrow:
            self.command("return_notes", self.dev("acceptor").return_notes, notes=self.session.escrow)
            self.session.escrow = {}

    # -- cancel and idle -----------------------------------------------------
    def cancelled(self, event) -> None:
        self._end_early("cancelled")

    def abandoned(self, event) -> None:
        self._end_early("abandoned")

    def _end_early(self, outcome: str) -> None:
        """The customer cancelled or walked off: give back any notes in escrow."""
        self.session.outcome = outcome
        self.journal.step(self.sid, outcome, state=self.state)
        if self.state in ("accepting_notes", "confirming_deposit"):
            self.session.escrow = self.dev("acceptor").escrow()
        self._return_escrow()

    # -- card at the gate ----------------------------------------------------
    def on_enter_card_at_gate(self, event) -> None:
        self._wait_for_taking("take_card", self.t["card_take"])

    def _wait_for_taking(self, prompt_id: str, timeout: float) -> None:
        """Card or cash is at the gate: ask once, time out, prompt if already gone."""
        reply = self.session.reply
        if reply is not None and reply.ok and self.session.function == "balance":
            self.show(prompt_id, balance=reply.balance)  # stays up while the card is at the gate
        else:
            self.show(prompt_id)
        self.say(prompt_id)
        self.later(timeout, "take_timed_out")
        self.start_forgotten_prompt()

    def on_exit_card_at_gate(self, event) -> None:
        self.prompter.stop(event.event.name)
        if event.event.name == "card_taken":
            self.journal.step(self.sid, "card_taken")

    def on_enter_retaining_card(self, event) -> None:
        reason = "forgotten" if event.event.name == "take_timed_out" else self.session.outcome
        self.command("capture_card", self.dev("card_reader").capture, reason=reason)
        self.session.card_retained = True
        self.session.outcome = "card_retained" if reason == "forgotten" else reason
        self.journal.event(self.sid, "card_retained", function=self.session.function, reason=reason)
        self.telemetry.event({"event": "card_retained", "session": self.sid,
                              "function": self.session.function, "reason": reason})
        self.show("card_retained")
        self.say("card_retained")
        self.retained()

    # -- end of session ------------------------------------------------------
    def on_enter_ending(self, event) -> None:
        session = self.session
        if session.stacked_notes:
            self._purge_stacker()
        summary = session.summary(self.clock.now())
        self.journal.event(self.sid, "session_end", **summary)
        self.journal.flush()
        self.telemetry.event({"event": "session", **summary})
        self.refresh_service()
        self.finished()

    def _purge_stacker(self) -> None:
        """Notes that were never presented go to the reject bin; the host is credited."""
        self.command("purge_stacker", self.dev("dispenser").reset, notes=self.session.stacked_notes)
        self._reverse()
        self.session.stacked_notes = 0
