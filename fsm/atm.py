"""The ATM state machine: the model whose callbacks drive the devices.

Only the event-loop thread calls into it (:meth:`ATM.handle` for events,
timer callbacks for time-outs). Device commands that move money or a card are
journalled as intent before and outcome after.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from transitions import Machine

from devices.base import DeviceError
from devices.carddata import CardDataError
from fsm.service import available_functions, service_state
from fsm.session import Session
from fsm.states import CARD_INSIDE, INPUT_STATES, STATES, TIMED_STATES, TRANSITIONS

log = logging.getLogger(__name__)
# Events that do not apply in the current state are expected (a key pressed
# while the host is busy); transitions would log each one as a warning.
logging.getLogger("transitions.core").setLevel(logging.ERROR)

# (device, event) -> trigger. Events not listed are only reported.
ROUTES = {
    ("card_reader", "inserted"): "card_inserted",
    ("card_reader", "taken"): "card_taken",
    ("dispenser", "cash_taken"): "cash_taken",
    ("acceptor", "notes_inserted"): "notes_inserted",
    ("keypad", "pin"): "pin_entered",
    ("keypad", "choice"): "chosen",
    ("keypad", "amount"): "amount_entered",
    ("keypad", "cancel"): "cancel",
}
INPUT_EVENTS = {("keypad", "key"), ("keypad", "invalid_key"), ("acceptor", "notes_inserted")}
HOST_OPS = {"withdrawal": "withdraw", "deposit": "deposit", "balance": "balance", "transfer": "transfer"}


@dataclass
class Settings:
    """The parts of the configuration the state machine uses."""

    atm_id: str
    languages: list
    card_key: bytes
    timeouts: dict
    pin_attempts: int = 3
    max_withdrawal: int = 500_000
    magstripe_fallback: bool = True
    cash_interval: float = 300.0
    help_video: str = ""


class ATM:
    def __init__(self, settings: Settings, devices: dict, scheduler, journal, telemetry,
                 prompter, host, post, out):
        self.cfg = settings
        self.t = settings.timeouts
        self.devices = devices
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.journal = journal
        self.telemetry = telemetry
        self.prompter = prompter
        self.host = host
        self.post = post            # post(name, **data): back into the event loop
        self.out = out              # out(type, **fields): what the CLI and tests see
        self.session: Session | None = None
        self.sessions_done = 0
        self.functions: list[str] = []
        self.service = "out_of_service"
        self.present = False
        self.away = False           # customer gone for longer than the debounce
        self.end_after_session: str | None = None
        self._state_timers: list = []
        self._idle_timers: list = []
        self._leave_timer = None
        self._last_input = 0.0
        self._video_on = False
        self.machine = Machine(
            model=self, states=[{"name": s, "on_exit": "leave_state"} if s in TIMED_STATES else s
                                for s in STATES],
            transitions=TRANSITIONS, initial="starting", auto_transitions=False,
            queued=True, send_event=True, ignore_invalid_triggers=True,
            after_state_change="state_changed")

    # -- helpers -------------------------------------------------------------
    @property
    def sid(self) -> str | None:
        return self.session.id if self.session else None

    def dev(self, kind: str):
        return self.devices[kind]

    def later(self, delay: float, trigger: str, **kw):
        timer = self.scheduler.call_later(delay, self.fire, trigger, kw)
        self._state_timers.append(timer)
        return timer

    def fire(self, trigger: str, kw: dict | None = None) -> None:
        getattr(self, trigger)(**(kw or {}))

    def show(self, screen: str, **fields) -> None:
        if self.dev("display").opened:
            lang = self.session.language if self.session else self.cfg.languages[0]
            self.dev("display").show(screen, self.prompter.library.display(screen, lang), **fields)

    def command(self, name: str, action, **data):
        """Run a device command that moves money or a card between an intent row
        and an outcome row. Returns ``(result, fault_code)``; never raises DeviceError."""
        intent = self.journal.intent(self.sid, name, **data)
        try:
            result = action()
        except DeviceError as exc:
            self.journal.outcome(intent, self.sid, name, ok=False, fault=exc.fault.code)
            return None, exc.fault.code
        self.journal.outcome(intent, self.sid, name, ok=True, result=result)
        return result, None

    def say(self, prompt_id: str) -> None:
        lang = self.session.language if self.session else self.cfg.languages[0]
        self.prompter.say(prompt_id, lang)

    def state_changed(self, event) -> None:
        if event.transition.dest is not None:
            self.out("state", state=self.state, previous=event.transition.source,
                     trigger=event.event.name, session=self.sid)

    def leave_state(self, event) -> None:
        for timer in self._state_timers:
            timer.cancel()
        self._state_timers.clear()
        if self.state in INPUT_STATES:
            self._disarm_idle()

    # -- start-up and service state -----------------------------------------
    def start(self) -> None:
        """Self-test every device, recover the journal, then go to service."""
        for entry in self.journal.recover():
            self.out("journal", action="recovered", op=entry.name, session=entry.session)
            if entry.name == "dispense":
                self.dev("dispenser").raise_fault(
                    "count_unknown", "a dispense was interrupted; reconcile the cassettes")
        for kind, device in self.devices.items():
            try:
                device.self_test()
            except DeviceError:
                pass
        self.refresh_service(announce=False)
        self.telemetry.status(True, self.service)
        self.publish_cash()
        self.scheduler.call_later(self.cfg.cash_interval, self._periodic_cash)
        self.scheduler.call_later(self.t["selftest_retry"], self._periodic_selftest)
        self.self_test_passed() if self.functions else self.self_test_failed()

    def refresh_service(self, announce: bool = True) -> None:
        self.functions = available_functions(self.devices)
        service = service_state(self.functions)
        if service != self.service:
            self.service = service
            self.journal.event(None, "service", state=service, functions=self.functions)
            self.out("service", service=service, functions=self.functions)
            if announce:
                self.telemetry.status(True, service)

    def can_serve(self, event=None) -> bool:
        return bool(self.functions) and self.end_after_session != "out_of_service"

    def _periodic_cash(self) -> None:
        self.publish_cash()
        self.scheduler.call_later(self.cfg.cash_interval, self._periodic_cash)

    def _periodic_selftest(self) -> None:
        if self.state in ("idle", "out_of_service"):
            for device in self.devices.values():
                if device.faults:
                    try:
                        device.self_test()
                    except DeviceError:
                        pass
            self.refresh_service()
            if self.state == "out_of_service" and self.can_serve():
                self.service_restored()
        self.scheduler.call_later(self.t["selftest_retry"], self._periodic_selftest)

    def publish_cash(self) -> None:
        self.telemetry.cash([c.as_dict() for c in self.dev("dispenser").cassettes])

    def on_fault(self, fault, state: str) -> None:
        self.journal.fault(fault.as_dict(state))
        self.telemetry.fault(fault.as_dict(state))
        self.refresh_service()
        if self.state == "idle" and not self.functions:
            self.service_lost()
        elif self.state == "out_of_service" and self.can_serve():
            self.service_restored()

    # -- events from the loop ------------------------------------------------
    def handle(self, name: str, data: dict) -> None:
        """Entry point for every event the loop delivers."""
        try:
            if name == "device":
                self._device_event(data["kind"], data["event"], data["data"])
            elif name == "host":
                self.host_replied(reply=data["reply"])
            elif name == "maintenance":
                self._maintenance(data["device"])
            elif name == "replenish":
                self._replenish(data["cassettes"])
            else:
                log.warning("unknown event %r ignored", name)
        except Exception as exc:  # a bug must not strand a card in the machine
            log.exception("error while handling %s", name)
            self.journal.event(self.sid, "software_error", error=repr(exc), state=self.state)
            if self.session is not None:
                self.session.outcome = "software_error"
            if self.state not in ("idle", "out_of_service", "starting"):
                self.aborted()

    def _device_event(self, kind: str, event: str, data: dict) -> None:
        if event == "fault":
            fault, fstate = data["fault"], data["state"]
            self.out("device", device=kind, event="fault", fault=fault.as_dict(fstate))
            self.on_fault(fault, fstate)
            return
        self.out("device", device=kind, event=event, **data)
        if (kind, event) in INPUT_EVENTS:
            self._activity()
        if kind == "proximity" and event == "presence":
            self._presence(data["present"])
        elif kind == "display" and event in ("video_started", "video_stopped"):
            self.out("video", action=event.split("_")[1], **data)
        trigger = ROUTES.get((kind, event))
        if trigger:
            self.fire(trigger, data)

    def _maintenance(self, kind: str) -> None:
        device = self.dev(kind)
        self.journal.event(None, "maintenance", device=kind)
        device.reset() if hasattr(device, "reset") else device.self_test()

    def _replenish(self, cassettes) -> None:
        """A cash van swaps the cassettes (only between sessions)."""
        if self.session is not None:
            self.scheduler.call_later(5.0, self.post, "replenish", cassettes=cassettes)
            return
        dispenser = self.dev("dispenser")
        intent = self.journal.intent(None, "replenish", before=[c.as_dict() for c in dispenser.cassettes])
        dispenser.load_cassettes(cassettes)
        self.journal.outcome(intent, None, "replenish", cassettes=dispenser.cassettes, ok=True,
                             after=[c.as_dict() for c in dispenser.cassettes])
        dispenser.self_test()
        self.publish_cash()
        self.refresh_service()
        if self.state == "out_of_service" and self.can_serve():
            self.service_restored()

    # -- presence ------------------------------------------------------------
    def _presence(self, present: bool) -> None:
        self.present = present
        if self._leave_timer is not None:
            self._leave_timer.cancel()
            self._leave_timer = None
        if present:
            if self.away:
                self.away = False
                self.customer_returned()
        else:
            self._leave_timer = self.scheduler.call_later(self.t["leave_debounce"], self._left)

    def _left(self) -> None:
        self._leave_timer = None
        self.away = True
        self.customer_left()

    def start_forgotten_prompt(self, event=None) -> None:
        """The customer walked away with the card or cash still at the gate."""
        if not self.away or not self.dev("proximity").usable:
            return
        if self.state == "cash_at_gate":
            pattern = "forgotten_cash"
        elif self.session.function == "deposit":
            pattern = "forgotten_card_deposit"
        else:
            pattern = "forgotten_card"
        self.journal.step(self.sid, "forgotten_prompt", pattern=pattern)
        self.prompter.start(pattern, self.session.language)

    def stop_forgotten_prompt(self, event=None) -> None:
        self.prompter.stop("customer_returned")

    # -- idle help -----------------------------------------------------------
    def _activity(self) -> None:
        self._stop_video("input")
        self._last_input = self.clock.now()

    def _arm_idle(self) -> None:
        """Start the idle-help and idle-cancel timers, measured from the last input.

        Input only moves ``_last_input``; a timer that fires early for that
        reason re-arms itself for the rest (one timer, not one per key).
        """
        self._disarm_idle()
        self._last_input = self.clock.now()
        self._idle_timers = [
            self.scheduler.call_later(self.t["idle_help"], self._idle_due, "idle_help"),
            self.scheduler.call_later(self.t["idle_cancel"], self._idle_due, "idle_cancel"),
        ]

    def _idle_due(self, which: str) -> None:
        remaining = self._last_input + self.t[which] - self.clock.now()
        if remaining > 1e-9:
            slot = 0 if which == "idle_help" else 1
            self._idle_timers[slot] = self.scheduler.call_later(remaining, self._idle_due, which)
        elif which == "idle_help":
            self._show_help()
        else:
            self.idle_timed_out()

    def _disarm_idle(self) -> None:
        for timer in self._idle_timers:
            timer.cancel()
        self._idle_timers = []
        self._stop_video("state_left")

    def _show_help(self) -> None:
        display = self.dev("display")
        if self.cfg.help_video and display.usable:
            self._video_on = True
            self.journal.step(self.sid, "help_video")
            display.play_video(self.cfg.help_video, loop=True)

    def _stop_video(self, reason: str) -> None:
        if self._video_on:
            self._video_on = False
            self.dev("display").stop_video()

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
        self.journal.step(self.sid, "card_inserted")
        self._snapshot()
        card, reason = self._read_card()
        if card is None:
            if reason == "stuck":
                self.session.outcome = "card_stuck"
                return self.card_stuck()
            self.session.outcome = "card_refused"
            self.journal.step(self.sid, "card_refused", reason=reason)
            self.show("card_refused", reason=reason)
            return self.card_refused()
        self.session.card = card
        self.session.language = self._language_for(card)
        self.journal.step(self.sid, "card_read", card=card.masked, token=card.token,
                          source=card.source)
        self.card_read()

    def _snapshot(self) -> None:
        camera = self.dev("camera")
        if camera.usable:
            try:
                frame = camera.snapshot()
                self.journal.step(self.sid, "camera_snapshot", shape=list(frame.shape))
            except DeviceError:
                pass

    def _read_card(self):
        """Chip first; magnetic stripe only by configuration and only when the chip fails."""
        key = self.cfg.card_key
        chip = self.dev("chip")
        card = None
        if chip.usable:
            try:
                card = chip.read_card(key)
            except (DeviceError, CardDataError) as exc:
                self.journal.step(self.sid, "chip_failed", error=str(exc))
        if card is None:
            if not self.cfg.magstripe_fallback:
                return None, "chip_unreadable"
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
        langs = self.cfg.languages
        if card.country in ("0392", "392") and "ja" in langs:
            return "ja"
        return "en" if card.country and "en" in langs else langs[0]

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
        self.refresh_service()
        self.dev("keypad").set_mode("choice", self.functions)
        self.show("menu", options=list(self.functions))
        self._arm_idle()

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
        if self.session.function == "withdrawal" and self.dev("dispenser").plan(amount) is None:
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

    def on_exit_authorising(self, event) -> None:
        reply = self.session.reply if self.session else None
        if reply is not None and reply.ok and self.session.function == "balance":
            self.show("balance", balance=reply.balance)

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
        if self.session.function in ("withdrawal", "transfer") and self.state == "authorising":
            self._reverse(self.session.amount)
        self._return_escrow()
        self.show("host_unavailable")

    def _reverse(self, amount: int) -> None:
        if amount and self.session.card is not None:
            self.journal.step(self.sid, "reversal", amount=amount)
            self.host.request("reverse", self.session.card.token, lambda reply: None, amount=amount)

    # -- withdrawal ----------------------------------------------------------
    def on_enter_dispensing(self, event) -> None:
        dispenser = self.dev("dispenser")
        plan = dispenser.plan(self.session.amount) if dispenser.usable else None
        if plan is None:
            self.session.outcome = "dispense_failed"
            self._reverse(self.session.amount)
            return self.dispensed()
        intent = self.journal.intent(self.sid, "dispense", plan=plan, amount=self.session.amount,
                                     counts={c.id: c.count for c in dispenser.cassettes})
        result = dispenser.dispense(plan)
        self.journal.outcome(intent, self.sid, "dispense", cassettes=dispenser.cassettes,
                             ok=result.complete, picked=result.picked, rejected=result.rejected,
                             fault=result.fault_code)
        self.publish_cash()
        if result.complete:
            self.session.stacked_notes = sum(plan.values())
        else:
            self.session.outcome = "dispense_failed"
            self._reverse(self.session.amount)
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
        notes, _ = self.command("retract_cash", self.dev("dispenser").retract,
                                notes=self.session.presented_notes)
        notes = notes or 0
        self.session.cash_retracted = notes
        self.session.outcome = "cash_retracted"
        self._reverse(self.session.amount)
        self.journal.event(self.sid, "cash_retracted", function=self.session.function, notes=notes)
        self.telemetry.event({"event": "cash_retracted", "session": self.sid,
                              "function": self.session.function, "notes": notes})
        self.say("cash_retracted")
        self.retracted()

    # -- deposit -------------------------------------------------------------
    def on_enter_accepting_notes(self, event) -> None:
        self.dev("acceptor").enable()
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
            self._reverse(-self.session.amount)
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
        self._reverse(self.session.amount)
        self.session.stacked_notes = 0

    def abort_session(self, reason: str) -> None:
        """End the session safely from outside (fault, shutdown)."""
        if self.session is not None and self.state in CARD_INSIDE:
            self.session.outcome = reason
            self.aborted()
