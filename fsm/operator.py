"""Operator and engineer commands, run on the loop thread.

Remote commands come from the monitoring centre (see ``agent.remote``);
``out_of_service`` and ``in_service`` take effect at once when no session is
running, and otherwise when the current session ends: never mid-dispense. A
device reset and a replenishment may move notes, so they are journalled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devices.commands import Completion
from fsm.cash_service import CashService
from fsm.events import MaintenanceRequested, RemoteAudit, RemoteRequest, ReplenishRequested
from fsm.exercise import Exercises
from fsm.ports import COUNTERS_RESET
from fsm.states import State

if TYPE_CHECKING:
    from fsm.atm import ATM

Reply = Callable[[dict[str, Any]], None]


class OperatorCommands:
    """What the monitoring centre and field engineers may ask of the ATM."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm
        cash = CashService(atm)
        self.handlers: dict[str, Callable[[dict[str, Any], Reply], dict[str, Any] | None]] = {
            "status": self.status,
            "cash": self.cash,
            "selftest": self.selftest,
            "out_of_service": self.out_of_service,
            "in_service": self.in_service,
            "replenish": cash.replenish,
            "reconcile": cash.reconcile,
            "counters_reset": self.counters_reset,
            "exercise": Exercises(atm).handle,
        }
        self.asking: dict[str, str] = {}  # who asks for the command being run (transport, engineer)

    # -- remote requests ---------------------------------------------------------
    def remote(self, request: RemoteRequest) -> None:
        who = _who(request.transport, request.engineer)
        self.remote_command(request.command, dict(request.args), request.reply, who)

    def remote_command(
        self, command: str, args: dict[str, Any], reply: Reply, who: dict[str, str] | None = None
    ) -> None:
        """Run one command and answer it; the answer may come later (a self-test). Each
        answer leaves one ``remote_command`` row, refused or not, naming who asked how."""
        who = who or {}
        handler = self.handlers.get(command)
        if handler is None:
            return self._refuse(command, args, reply, who, "unknown_command", f"{command!r} is not a command")

        def answer(result: dict[str, Any]) -> None:
            ok = result.get("ok", True)
            refused = {} if ok else {"error": result.get("error", "")}
            self._journal(command=command, args=args, ok=ok, **refused, **_outcome(result), **who)
            reply({"ok": True, "command": command, **result})

        self.asking = who
        try:
            result = handler(args, answer)
        except Exception as exc:  # answer and journal, then let the loop's containment log it
            self._refuse(command, args, reply, who, "internal", repr(exc))
            raise
        if result is not None:
            answer(result)

    def _refuse(
        self, command: str, args: dict[str, Any], reply: Reply, who: dict[str, str], error: str, reason: str
    ) -> None:
        self._journal(command=command, args=args, ok=False, error=error, **who)
        reply({"ok": False, "command": command, "error": error, "reason": reason})

    def audit(self, event: RemoteAudit) -> None:
        """A request answered on the network thread: only journalled here."""
        refused = {} if event.ok else {"error": event.error}
        who = _who(event.transport, event.engineer)
        asked = {"args": dict(event.args)} if event.args is not None else {}
        self._journal(command=event.command, **asked, ok=event.ok, **refused, **who)

    def _journal(self, **row: Any) -> None:
        """One ``remote_command`` row, written at once: who did what to the ATM is evidence."""
        self.atm.journal.event(None, "remote_command", **row)
        self.atm.journal.flush()

    @property
    def busy(self) -> bool:
        atm = self.atm
        return atm.session is not None or atm.state not in (State.IDLE, State.OUT_OF_SERVICE)

    def status(self, args: dict[str, Any], answer: Reply) -> dict[str, Any]:
        atm, service = self.atm, self.atm.service
        return {
            "state": atm.state,
            "service": service.service,
            "functions": service.functions,
            "held": service.held,
            "hold_reason": service.hold_reason,
            "session_active": self.busy,
            "session": self._session(),
            "cassettes": [
                {**level, "low": c.low, "empty": c.empty}
                for level, c in zip(atm.cash_levels(), atm.devices.dispenser.cassettes)
            ],
            "devices": {k: d.describe() for k, d in atm.devices.items()},
        }

    def _session(self) -> dict[str, Any] | None:
        """The open session as an engineer may see it: its id, function and state, never its card."""
        session = self.atm.session
        if session is None:
            return None
        started = self.atm.clock.now() - session.started
        return {
            "id": session.id,
            "function": session.function,
            "state": str(self.atm.state),
            "age_s": round(started, 1),
        }

    def cash(self, args: dict[str, Any], answer: Reply) -> dict[str, Any]:
        return {"cassettes": self.atm.cash_levels()}

    def selftest(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        if self.busy:
            return {"ok": False, "error": "not_permitted", "reason": "a customer session is running"}
        atm = self.atm
        kinds = list(atm.devices) if args.get("device", "all") == "all" else [args["device"]]

        def done(results: dict[str, str]) -> None:
            atm.service.refresh()
            atm.follow_service()
            answer({"results": results, "service": atm.service.service})

        atm.flows.startup.self_test(kinds, done)
        return None

    def counters_reset(self, args: dict[str, Any], answer: Reply) -> dict[str, Any]:
        """Journal the reset with the counters it ends, read from the journal by the asker
        (off this thread); refused if rows came since they were read."""
        journal = self.atm.journal
        seq, _ = journal.head()
        if seq != args["through"]:
            return {"ok": False, "error": "journal_moved", "reason": f"the journal has rows after {args['through']}"}
        counts = {c.id: c.count for c in self.atm.devices.dispenser.cassettes}
        if args["counts"] != counts:  # figures read from another journal, or made up
            return {"ok": False, "error": "bad_field", "reason": f"counts: the cassettes hold {counts}"}
        engineer = self.asking.get("engineer", "")
        journal.event(None, COUNTERS_RESET, engineer=engineer, **args)
        seq, ts = journal.head()
        return {"seq": seq, "ts": ts, "engineer": engineer}

    def out_of_service(self, args: dict[str, Any], answer: Reply) -> dict[str, Any]:
        service = self.atm.service
        if service.held:
            return {"ok": False, "error": "not_permitted", "reason": "already out of service by request"}
        service.hold(args.get("reason", ""))
        return {"effective": self._apply()}

    def in_service(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        service = self.atm.service
        if not service.held:
            return {"ok": False, "error": "not_permitted", "reason": "not out of service by request"}
        if self.atm.commands.busy and not self.busy:  # an engineer's exercise: no customer before it ends

            def later() -> None:
                result = self.in_service(args, answer)
                if result is not None:
                    answer(result)

            self.atm.commands.when_idle(later)
            return None
        service.release()
        effective = self._apply()
        return {"effective": effective, "service": service.service}

    def _apply(self) -> str:
        """A hold changed: now between sessions, else when the session ends."""
        if self.busy:
            return "after_session"
        self.atm.service.refresh()
        self.atm.follow_service()
        return "now"

    # -- engineer actions --------------------------------------------------------
    def maintenance(self, event: MaintenanceRequested) -> None:
        """An engineer resets a device; a reset may move notes (purge), so it is journalled."""
        device = self.atm.devices[event.device]
        action = getattr(device, "reset", device.self_test)
        self.atm.commands.run(event.device, f"maintenance_reset_{event.device}", action, None)

    def replenish(self, event: ReplenishRequested) -> None:
        """A cash van swaps the cassettes (only between sessions)."""
        atm = self.atm
        if atm.session is not None:
            atm.scheduler.call_later(5.0, atm.post, event)
            return
        dispenser = atm.devices.dispenser
        intent = atm.journal.intent(None, "replenish", before=[c.as_dict() for c in dispenser.cassettes])
        dispenser.load_cassettes(list(event.cassettes))
        atm.journal.outcome(
            intent,
            None,
            "replenish",
            cassettes=dispenser.cassettes,
            ok=True,
            after=[c.as_dict() for c in dispenser.cassettes],
        )
        dispenser.clear_fault("count_unknown")  # the cassettes were counted and reloaded

        def tested(completion: Completion) -> None:
            atm.publish_cash()
            atm.service.refresh()
            atm.follow_service()

        atm.commands.send("dispenser", "self_test", dispenser.self_test, then=tested)


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    """What the answer's row keeps of its result: an exercise's ``outcome``."""
    return {"outcome": result["outcome"]} if "outcome" in result else {}


def _who(transport: str, engineer: str) -> dict[str, str]:
    """The journal's record of who asked: the transport (``mqtt``: the monitoring centre;
    ``control``: the local socket) and, on the socket, the engineer."""
    return {"transport": transport, **({"engineer": engineer} if engineer else {})}
