"""The ATM state machine: the model whose callbacks drive the devices.

Only the event-loop thread calls into it (:meth:`ATM.handle` for events,
timer callbacks for time-outs). Device commands that move money or a card are
journalled as intent before and outcome after.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from transitions import Machine

from devices.base import Action, DeviceError
from fsm.operator import OperatorCommands
from fsm.service import available_functions, service_state
from fsm.session import Session
from fsm.session_flow import SessionFlow
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


class ATM(SessionFlow, OperatorCommands):
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
        self._state_timers: list = []
        self._idle_timers: list = []
        self._leave_timer = None
        self._last_input = 0.0
        self._video_on = False
        self.broken = False         # an error could not be contained: out of service until restart
        self.machine = Machine(
            model=self, states=[{"name": s, "on_exit": self.leave_state} if s in TIMED_STATES else s
                                for s in STATES],
            transitions=TRANSITIONS, initial="starting", auto_transitions=False,
            queued=True, send_event=True, ignore_invalid_triggers=True,
            after_state_change=self.state_changed)

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
        if self.journal.counts_unreconciled():  # survives restarts until a replenishment
            self.dev("dispenser").raise_fault(
                "count_unknown", "a dispense was interrupted; count and replenish the cassettes",
                action=Action.REPLENISH)
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
        self.functions = [] if self.held else available_functions(self.devices)
        service = service_state(self.functions)
        if service != self.service:
            self.service = service
            self.journal.event(None, "service", state=service, functions=self.functions)
            self.out("service", service=service, functions=self.functions)
            if announce:
                self.telemetry.status(True, service)

    def can_serve(self, event=None) -> bool:
        return bool(self.functions) and not self.broken

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
        """Entry point for every event the loop delivers (errors go to ``contain_error``)."""
        if name == "device":
            self._device_event(data["kind"], data["event"], data["data"])
        elif name == "host":
            self.host_replied(reply=data["reply"])
        elif name == "maintenance":
            self._maintenance(data["device"])
        elif name == "replenish":
            self._replenish(data["cassettes"])
        elif name == "abort":
            self.abort_session(data["reason"])
        elif name == "remote":
            self.remote_command(data["command"], data["args"], data["reply"])
        elif name == "remote_audit":  # answered on the network thread: only journalled here
            self.journal.event(None, "remote_command", command=data["command"], ok=data["ok"],
                               error=data["error"])
        else:
            log.warning("unknown event %r ignored", name)

    def contain_error(self, exc: Exception, where: str) -> None:
        """An event or timer failed (a bug, a full disk): end the session safely.

        If even that fails, the ATM goes out of service for good (until a
        restart) without touching the journal again: never serve half-broken.
        """
        log.error("error in %s: %r", where, exc, exc_info=exc)
        try:
            self.journal.event(self.sid, "software_error", error=repr(exc), where=where, state=self.state)
            if self.session is not None:
                self.session.outcome = "software_error"
            if self.state not in ("idle", "out_of_service", "starting"):
                self.aborted()
        except Exception:
            log.exception("could not end the session safely; out of service until restarted")
            self.fail_safe()

    def fail_safe(self) -> None:
        """Stop taking cards, hand back a card that is inside, undo the host's money
        movement, and report out of service: each step on its own, best effort."""
        previous = self.state
        self.broken = True
        self.machine.set_state("out_of_service")
        self.service = "out_of_service"
        reader = self.dev("card_reader")
        steps = [reader.disable_entry, lambda: self.telemetry.status(True, "out_of_service")]
        if self.session is not None:
            steps[:0] = [self._reverse, lambda: reader.eject() if reader.position.value == "inside" else None]
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("fail-safe step failed")
        self.out("state", state="out_of_service", previous=previous, trigger="fail_safe", session=self.sid)

    def _device_event(self, kind: str, event: str, data: dict) -> None:
        if event == "fault":
            fault, fstate = data["fault"], data["state"]
            self.out("device", device=kind, event="fault", fault=fault.as_dict(fstate))
            if kind == "proximity" and fstate == "raised":  # forget what a failing sensor said
                self._presence(True)
                self.prompter.stop("sensor_fault")
            self.on_fault(fault, fstate)
            return
        self.out("device", device=kind, event=event, **data)
        if (kind, event) in INPUT_EVENTS:
            self._activity()
            if event == "key":
                return
        if kind == "proximity" and event == "presence":
            self._presence(data["present"])
        elif kind == "card_reader" and event == "inserted":
            self._presence(True)  # whoever inserts a card is standing at the ATM
        elif kind == "display" and event in ("video_started", "video_stopped"):
            self.out("video", action=event.split("_")[1], **data)
            if event == "video_stopped":
                self._video_on = False
        trigger = ROUTES.get((kind, event))
        if trigger:
            self.fire(trigger, data)

    def _maintenance(self, kind: str) -> None:
        """An engineer resets a device; a reset may move notes (purge), so it is journalled."""
        device = self.dev(kind)
        self.command(f"maintenance_reset_{kind}", getattr(device, "reset", device.self_test))

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
        dispenser.clear_fault("count_unknown")  # the cassettes were counted and reloaded
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

    def presence_trusted(self) -> bool:
        """Only a sensor with no fault and a current reading may trigger a prompt."""
        sensor = self.dev("proximity")
        return sensor.usable and not sensor.faults and sensor.present is not None

    def start_forgotten_prompt(self, event=None) -> None:
        """The customer walked away with the card or cash still at the gate."""
        if not self.away or not self.presence_trusted():
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
        timers = self._idle_timers
        if timers and timers[0].cancelled:  # help already shown: show it again if idle again
            timers[0] = self.scheduler.call_later(self.t["idle_help"], self._idle_due, "idle_help")

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
            lang = self.session.language if self.session else self.cfg.languages[0]
            display.play_video(self.cfg.help_video, loop=True, language=lang,
                               cancel_at=self._last_input + self.t["idle_cancel"])

    def _stop_video(self, reason: str) -> None:
        if self._video_on:
            self._video_on = False
            self.journal.step(self.sid, "help_video_stopped", reason=reason)
            self.dev("display").stop_video()

    def abort_session(self, reason: str) -> None:
        """The agent is stopping: close the session now, with nothing left hanging."""
        if self.session is not None and self.state != "ending":
            self.session.outcome = reason
            self.shut_down()

    def shutting_down(self, event) -> None:
        """Card back to the gate, cash at the shutter retracted and reversed, escrow returned;
        ``ending`` then purges the stacker and writes the session's end."""
        if self.state in CARD_INSIDE:
            self.command("eject_card", self.dev("card_reader").eject)
        if self.state == "cash_at_gate":
            notes, _ = self.command("retract_cash", self.dev("dispenser").retract,
                                    notes=self.session.presented_notes)
            self.session.cash_retracted = notes or 0
            self._reverse()
        if self.state in ("accepting_notes", "confirming_deposit"):
            self.session.escrow = self.dev("acceptor").escrow()
        self._return_escrow()
        self.prompter.stop("shutdown")
