"""Device commands from the state machine: queued, never waited for.

A command that moves money or a card keeps the journal's protocol: the
intent row is committed before the command is queued, and the outcome row
(with the cassette counts, for the dispenser) when its completion comes back
to the loop. Then the continuation given with the command runs, on the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from devices.commands import Completion
from fsm.ports import JournalPort

Continuation = Callable[[Completion], None]
OutcomeFields = Callable[[Completion], dict[str, Any]]


class Queue(Protocol):
    def submit(self, command: str, action: Callable[[], Any], on_complete: Callable[[Completion], None]) -> int: ...


@dataclass
class _Pending:
    intent: int | None
    session: str | None
    name: str
    then: Continuation | None
    outcome: OutcomeFields | None
    cassettes: Any


def plain_outcome(completion: Completion) -> dict[str, Any]:
    """The outcome row of a command: what it returned, or the fault it raised."""
    if completion.ok:
        return {"ok": True, "result": completion.result}
    return {"ok": False, "fault": completion.fault_code}


class DeviceCommands:
    """Issues commands to the devices' queues and routes their completions."""

    def __init__(self, queues: dict[str, Queue], journal: JournalPort, post: Callable[[object], None]) -> None:
        self.queues = queues
        self.journal = journal
        self.post = post  # completions go back to the loop as events
        self._pending: dict[int, _Pending] = {}
        self._when_idle: list[Callable[[], None]] = []

    @property
    def busy(self) -> bool:
        """True while a command issued here has not completed."""
        return bool(self._pending)

    def run(
        self,
        device: str,
        name: str,
        action: Callable[[], Any],
        session: str | None,
        then: Continuation | None = None,
        outcome: OutcomeFields | None = plain_outcome,
        cassettes: Any = None,
        **intent: Any,
    ) -> int:
        """Journal the intent (unless ``outcome`` is None), queue ``action``, and
        run ``then(completion)`` on the loop when it ends."""
        row = self.journal.intent(session, name, **intent) if outcome is not None else None
        command_id = self.queues[device].submit(name, action, self.post)
        self._pending[command_id] = _Pending(row, session, name, then, outcome, cassettes)
        return command_id

    def send(self, device: str, name: str, action: Callable[[], Any], then: Continuation | None = None) -> int:
        """A command that moves nothing (enable entry, a self-test): not journalled."""
        return self.run(device, name, action, None, then, outcome=None)

    def complete(self, completion: Completion) -> bool:
        """On the loop: write the outcome, run the continuation. False if not ours."""
        pending = self._pending.pop(completion.id, None)
        if pending is None:
            return False
        if pending.outcome is not None and pending.intent is not None:
            extra = {"cassettes": pending.cassettes} if pending.cassettes is not None else {}
            self.journal.outcome(pending.intent, pending.session, pending.name, **extra, **pending.outcome(completion))
        try:
            if pending.then is not None:
                pending.then(completion)
        finally:
            if not self._pending:
                self._run_idle()
        return True

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once no command issued here is pending (now, if none is)."""
        if not self._pending:
            callback()
        else:
            self._when_idle.append(callback)

    def _run_idle(self) -> None:
        while self._when_idle and not self._pending:
            self._when_idle.pop(0)()

    def forget(self) -> None:
        """Drop the continuations (fail-safe): completions are then only ignored."""
        self._pending.clear()
        self._when_idle.clear()


def raise_unexpected(completion: Completion, *expected: type[BaseException]) -> None:
    """Re-raise an error that is neither a device fault nor one of ``expected``: a bug
    in a driver is contained by the loop as a software error, as on any other path."""
    error = completion.error
    if error is None or completion.fault is not None or isinstance(error, expected):
        return
    raise error
