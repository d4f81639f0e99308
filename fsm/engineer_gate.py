"""When an engineer's command that moves notes, cards or counts may run.

Only while the ATM is held out of service by request, never during start-up or a
customer's session; and it waits until no other device command is running (a
test-dispense on its worker, say): one change at a time, each on a quiet ATM (ours).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fsm.states import State

if TYPE_CHECKING:
    from fsm.atm import ATM

NOT_HELD = "take the ATM out of service first (atm service out)"
IN_SESSION = "a customer session is running"
STARTING = "the ATM is still starting up"
Reply = Callable[[dict[str, Any]], None]


def engineer_refusal(atm: ATM) -> str | None:
    """Why an engineer's command may not run now; None when it may."""
    if atm.state == State.STARTING:
        return STARTING
    if atm.session is not None or atm.state not in (State.IDLE, State.OUT_OF_SERVICE):
        return IN_SESSION
    if not atm.service.held:
        return NOT_HELD
    return None


def when_quiet(atm: ATM, answer: Reply, run: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """Refuse now, or ``run()`` once no device command is pending (at once if none is),
    checking again then; the handler's result, or None when the answer comes later."""
    reason = engineer_refusal(atm)
    if reason:
        return {"ok": False, "error": "not_permitted", "reason": reason}
    if not atm.commands.busy:
        return run()

    def later() -> None:
        result = when_quiet(atm, answer, run)
        if result is not None:
            answer(result)

    atm.commands.when_idle(later)
    return None
