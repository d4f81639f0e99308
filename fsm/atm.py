"""The ATM state machine: the model that transitions drives.

Only the event-loop thread calls into it: :meth:`ATM.handle` for events,
timer callbacks for time-outs. The work is done by small collaborators: the
session-flow parts (:mod:`fsm.flows`), the service state, presence, idle help,
fault routing, operator commands, device commands and session reporting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Machine

from devices.commands import Completion
from fsm import events as ev
from fsm.clock import Scheduler, Timer
from fsm.commands import DeviceCommands
from fsm.evidence import Evidence, EvidenceStore
from fsm.faults import FaultRouter
from fsm.flows import Flows, bind
from fsm.idle_help import IdleHelp
from fsm.operator import OperatorCommands
from fsm.ports import BankHost, JournalPort, Out, TelemetryPort
from fsm.presence import PresenceTracker
from fsm.prompter import Prompter
from fsm.reporting import SessionReporter
from fsm.screens import HELP_TOPICS, SCREENS
from fsm.service import ServiceState
from fsm.session import Session
from fsm.states import INPUT_STATES, STATES, TIMED_STATES, TRANSITIONS, State

log = logging.getLogger(__name__)
# Events that do not apply in the current state are expected (a key pressed
# while the host is busy); transitions would log each one as a warning.
logging.getLogger("transitions.core").setLevel(logging.ERROR)

# Device events and the trigger each fires.
TRIGGERS: dict[type, str] = {
    ev.CardInserted: "card_inserted",
    ev.CardTaken: "card_taken",
    ev.CashTaken: "cash_taken",
    ev.NotesInserted: "notes_inserted",
    ev.PinEntered: "pin_entered",
    ev.Chosen: "chosen",
    ev.AmountEntered: "amount_entered",
    ev.CancelPressed: "cancel",
}


@dataclass(frozen=True)
class Settings:
    """The parts of the configuration the state machine uses."""

    atm_id: str
    languages: list[str]
    card_key: bytes
    timeouts: dict[str, float]
    pin_attempts: int = 3
    max_withdrawal: int = 500_000
    magstripe_fallback: bool = True
    cash_interval: float = 300.0
    help_video: str = ""
    help_videos: Callable[[str, str], str] | None = None  # (topic, language) -> the file to play


class ATM:
    """The model: state, session and the entry points of the loop."""

    state: str  # set by transitions

    # The triggers of ``fsm.states.TRANSITIONS``, which transitions adds to the model when
    # the machine is built: declared for the type checker only (an annotation without a
    # value, since transitions skips a name the model already has). tests/test_diagram.py
    # checks this list against the table. Keyword arguments reach the callbacks as
    # ``event.kwargs``; the result is transitions' (whether the trigger was taken or queued).
    self_test_passed: Callable[..., bool]
    self_test_failed: Callable[..., bool]
    service_restored: Callable[..., bool]
    service_lost: Callable[..., bool]
    card_inserted: Callable[..., bool]
    card_read: Callable[..., bool]
    card_refused: Callable[..., bool]
    card_stuck: Callable[..., bool]
    pin_entered: Callable[..., bool]
    host_replied: Callable[..., bool]
    chosen: Callable[..., bool]
    amount_entered: Callable[..., bool]
    host_timed_out: Callable[..., bool]
    dispensed: Callable[..., bool]
    notes_inserted: Callable[..., bool]
    stored: Callable[..., bool]
    card_ejected: Callable[..., bool]
    card_taken: Callable[..., bool]
    take_timed_out: Callable[..., bool]
    retained: Callable[..., bool]
    cash_presented: Callable[..., bool]
    cash_stuck: Callable[..., bool]
    cash_taken: Callable[..., bool]
    retracted: Callable[..., bool]
    cancel: Callable[..., bool]
    idle_timed_out: Callable[..., bool]
    aborted: Callable[..., bool]
    shut_down: Callable[..., bool]
    customer_left: Callable[..., bool]
    customer_returned: Callable[..., bool]
    finished: Callable[..., bool]

    def __init__(
        self,
        settings: Settings,
        devices: Any,
        scheduler: Scheduler,
        commands: DeviceCommands,
        journal: JournalPort,
        telemetry: TelemetryPort,
        prompter: Prompter,
        host: BankHost,
        post: Callable[[object], None],
        out: Out,
        session_prefix: str = "",
        evidence: EvidenceStore | None = None,
    ) -> None:
        self.cfg = settings
        self.t = settings.timeouts
        # A devices.deviceset.DeviceSet; Any because naming it makes mypy check every device
        # module with the strict options, and devices/display.py does not pass them yet.
        self.devices = devices
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.commands = commands
        self.journal = journal
        self.telemetry = telemetry
        self.report = SessionReporter(journal, telemetry)
        self.prompter = prompter
        self.host = host
        self.post = post  # back into the event loop
        self.out = out  # out(type, **fields): what the CLI and tests see
        self.session: Session | None = None
        self.session_prefix = session_prefix or settings.atm_id
        self.sessions_done = journal.last_session_number(self.session_prefix)
        self.service = ServiceState(devices, journal, telemetry, out, changed=self.publish_birth)
        self.presence = PresenceTracker(
            scheduler,
            self.t["leave_debounce"],
            devices.proximity,
            left=lambda: self.fire("customer_left"),
            returned=lambda: self.fire("customer_returned"),
        )
        self.idle = IdleHelp(
            scheduler,
            self.t,
            devices.display,
            settings.help_video,
            journal_step=lambda name, **data: journal.step(self.sid, name, **data),
            language=self.language,
            timed_out=lambda: self.fire("idle_timed_out"),
            topic=lambda: HELP_TOPICS.get(self.state, "general"),
            video_for=settings.help_videos,
        )
        self.evidence = Evidence(self, evidence)  # camera snapshots at session events (off: None)
        self.faults = FaultRouter(self)
        self.operator = OperatorCommands(self)
        self.flows = Flows(self)
        self._state_timers: list[Timer] = []
        self._stop: ev.StopRequested | None = None
        # What the ATM does with a device event before its trigger (False: no trigger).
        self._reactions: dict[type, Callable[[Any], bool]] = {
            ev.KeyPressed: self._customer_input,
            ev.InvalidKey: self._customer_input,
            ev.NotesInserted: self._customer_input,
            ev.PresenceChanged: self._presence_changed,
            ev.CardInserted: self._card_inserted,
            ev.VideoChanged: self._video_changed,
        }
        self._handlers: dict[type, Callable[[Any], None]] = {
            Completion: self._completed,
            ev.HostReplied: self.flows.host.replied,
            ev.FaultChanged: self.faults.changed,
            ev.MaintenanceRequested: self.operator.maintenance,
            ev.ReplenishRequested: self.operator.replenish,
            ev.StopRequested: self.stop_requested,
            ev.RemoteRequest: self.operator.remote,
            ev.RemoteAudit: self.operator.audit,
        }
        states, transitions = bind(STATES, TRANSITIONS, [*self.flows.parts(), self], TIMED_STATES, self.leave_state)
        self.machine = Machine(
            model=self,
            states=states,
            transitions=transitions,
            initial=State.STARTING.value,
            auto_transitions=False,
            queued=True,
            send_event=True,
            ignore_invalid_triggers=True,
            after_state_change=self.state_changed,
        )

    # -- helpers for the flows ----------------------------------------------
    @property
    def current(self) -> Session:
        """The open session, for the states that only run within one."""
        session = self.session
        if session is None:
            raise RuntimeError(f"no session is open in state {self.state!r}")
        return session

    @property
    def sid(self) -> str | None:
        return self.session.id if self.session else None

    def language(self) -> str:
        return self.session.language if self.session else self.cfg.languages[0]

    def fire(self, trigger: str, kw: dict[str, Any] | None = None) -> None:
        getattr(self, trigger)(**(kw or {}))

    def later(self, delay: float, trigger: str, **kw: Any) -> Timer:
        """A time-out that belongs to the current state (cancelled when it is left)."""
        timer = self.scheduler.call_later(delay, self.fire, trigger, kw)
        self._state_timers.append(timer)
        return timer

    def show(self, screen: str, **fields: Any) -> None:
        """Show one of :data:`fsm.screens.SCREENS` in the customer's language."""
        if screen not in SCREENS:
            raise ValueError(f"{screen!r} is not a screen of fsm.screens.SCREENS")
        display = self.devices.display
        if display.opened:
            display.show(screen, self.prompter.library.screen_text(screen, self.language(), fields), **fields)

    def say(self, prompt_id: str) -> None:
        self.prompter.say(prompt_id, self.language())

    def state_changed(self, event: Any) -> None:
        if event.transition.dest is not None:
            self.out(
                "state", state=self.state, previous=event.transition.source, trigger=event.event.name, session=self.sid
            )
            if event.transition.source == State.STARTING:
                self.publish_birth()  # no longer "starting"

    def leave_state(self, event: Any) -> None:
        for timer in self._state_timers:
            timer.cancel()
        self._state_timers.clear()
        if self.state in INPUT_STATES:
            self.idle.disarm()

    def can_serve(self, event: Any = None) -> bool:
        return self.service.can_serve

    @property
    def functions(self) -> list[str]:
        return self.service.functions

    @property
    def broken(self) -> bool:
        return self.service.broken

    def publish_birth(self) -> None:
        """Hand the link a fresh snapshot for its next birth message (at start-up, and when
        the service, a fault or the cash changes)."""
        self.telemetry.birth_changed(
            {
                "service": self.service.service if self.state != State.STARTING else "starting",
                "functions": list(self.service.functions),
                "devices": {k: {"locator": d.locator, "status": d.status.value} for k, d in self.devices.items()},
                "cassettes": self.cash_levels(),
            }
        )

    def follow_service(self) -> None:
        """Between sessions, move to the state the service calls for."""
        if self.state == State.IDLE and not self.can_serve():
            self.service_lost()
        elif self.state == State.OUT_OF_SERVICE and self.can_serve():
            self.service_restored()

    def cash_levels(self) -> list[dict[str, object]]:
        """Each cassette's level, with XFS4IoT's ``accuracy``: ``unknown`` while a dispense
        that got no answer is not yet reconciled (``count_unknown``), else ``accurate``."""
        dispenser = self.devices.dispenser
        accuracy = "unknown" if "count_unknown" in dispenser.faults else "accurate"
        return [{**c.as_dict(), "accuracy": accuracy} for c in dispenser.cassettes]

    def publish_cash(self) -> None:
        self.telemetry.cash(self.cash_levels())
        self.publish_birth()

    # -- start-up -------------------------------------------------------------
    def start(self) -> None:
        """Recover the journal, self-test every device, then go to service."""
        self.flows.startup.start()
        self.evidence.start()

    # -- events from the loop -------------------------------------------------
    def handle(self, event: object) -> None:
        """Entry point for every event the loop delivers (errors go to ``contain_error``)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)
        elif isinstance(event, ev.DeviceEvent):
            self._device_event(event)
        else:
            log.warning("unknown event %r ignored", event)

    def _device_event(self, event: ev.DeviceEvent) -> None:
        self.out("device", device=event.device, event=event.name, **event.data)
        react = self._reactions.get(type(event))
        if react is not None and not react(event):
            return
        trigger = TRIGGERS.get(type(event))
        if trigger:
            self.fire(trigger, dict(event.data))

    def _customer_input(self, event: ev.DeviceEvent) -> bool:
        self.idle.activity()
        return True

    def _presence_changed(self, event: ev.DeviceEvent) -> bool:
        self.presence.update(event.data["present"])
        return True

    def _card_inserted(self, event: ev.DeviceEvent) -> bool:
        self.presence.update(True)  # whoever inserts a card is standing at the ATM
        return self._stop is None  # stopping: take no new customer

    def _video_changed(self, event: ev.DeviceEvent) -> bool:
        self.out("video", action=event.name.split("_")[1], **event.data)
        if event.name == "video_stopped":
            self.idle.video_stopped()
        return True

    def _completed(self, completion: Completion) -> None:
        try:
            self.commands.complete(completion)
        finally:
            self._continue_stop()

    # -- stopping and errors ----------------------------------------------------
    def session_closed(self) -> None:
        """Back between sessions: a stop that waited for the session goes on."""
        self._continue_stop()

    def stop_requested(self, event: ev.StopRequested) -> None:
        """The agent is stopping: close the session (once no command runs), then say so."""
        self._stop = event
        self._continue_stop()

    def _continue_stop(self) -> None:
        stop = self._stop
        if stop is None or self.commands.busy:
            return
        if self.session is not None and self.state != State.ENDING:
            self.session.outcome = stop.reason
            self.shut_down()
        elif self.session is None or self.broken:
            self._stop = None
            stop.done()

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
            if self.state not in (State.IDLE, State.OUT_OF_SERVICE, State.STARTING):
                self.aborted()
        except Exception:
            log.exception("could not end the session safely; out of service until restarted")
            self.fail_safe()

    def fail_safe(self) -> None:
        """Stop taking cards, hand back a card that is inside, undo the host's money
        movement, and report out of service: each step on its own, best effort."""
        previous = self.state
        self.service.lose()
        self.commands.forget()
        self.machine.set_state(State.OUT_OF_SERVICE.value)
        steps = self.flows.fail_safe_steps()
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("fail-safe step failed")
        self.out("state", state=State.OUT_OF_SERVICE.value, previous=previous, trigger="fail_safe", session=self.sid)
        self._continue_stop()
