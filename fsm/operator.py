"""Commands from the monitoring centre, run on the loop thread (see ``agent.remote``).

``out_of_service`` and ``in_service`` take effect at once when no session is
running, and otherwise when the current session ends: never mid-dispense.
"""
from __future__ import annotations

from devices.base import DeviceError


class OperatorCommands:
    """Mixin of :class:`fsm.atm.ATM`."""

    held = False          # the monitoring centre took the ATM out of service
    hold_reason = ""

    def remote_command(self, command: str, args: dict, reply) -> None:
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            return reply({"ok": False, "command": command, "error": "unknown_command",
                          "reason": f"{command!r} is not a command"})
        try:
            result = handler(args)
        except Exception as exc:  # answer, then let the loop's containment log it
            reply({"ok": False, "command": command, "error": "internal", "reason": repr(exc)})
            raise
        self.journal.event(None, "remote_command", command=command, args=args, ok=result.get("ok", True))
        reply({"ok": True, "command": command, **result})

    def _busy(self) -> bool:
        return self.session is not None or self.state not in ("idle", "out_of_service")

    def _cmd_status(self, args: dict) -> dict:
        return {"state": self.state, "service": self.service, "functions": self.functions,
                "held": self.held, "hold_reason": self.hold_reason, "session_active": self._busy(),
                "devices": {k: {"status": d.status.value, "faults": sorted(d.faults)}
                            for k, d in self.devices.items()}}

    def _cmd_cash(self, args: dict) -> dict:
        return {"cassettes": [c.as_dict() for c in self.dev("dispenser").cassettes]}

    def _cmd_selftest(self, args: dict) -> dict:
        if self._busy():
            return {"ok": False, "error": "not_permitted", "reason": "a customer session is running"}
        kinds = list(self.devices) if args.get("device", "all") == "all" else [args["device"]]
        results = {}
        for kind in kinds:
            try:
                results[kind] = self.devices[kind].self_test().value
            except DeviceError as exc:
                results[kind] = f"error: {exc.fault.code}"
        self.refresh_service()
        self._follow_service()
        return {"results": results, "service": self.service}

    def _cmd_out_of_service(self, args: dict) -> dict:
        if self.held:
            return {"ok": False, "error": "not_permitted", "reason": "already out of service by request"}
        self.held, self.hold_reason = True, args.get("reason", "")
        when = "after_session" if self._busy() else "now"
        if when == "now":
            self.refresh_service()
            self._follow_service()
        return {"effective": when}

    def _cmd_in_service(self, args: dict) -> dict:
        if not self.held:
            return {"ok": False, "error": "not_permitted", "reason": "not out of service by request"}
        self.held, self.hold_reason = False, ""
        when = "after_session" if self._busy() else "now"
        if when == "now":
            self.refresh_service()
            self._follow_service()
        return {"effective": when, "service": self.service}

    def _follow_service(self) -> None:
        """Between sessions, move to the state the service calls for."""
        if self.state == "idle" and not self.can_serve():
            self.service_lost()
        elif self.state == "out_of_service" and self.can_serve():
            self.service_restored()
