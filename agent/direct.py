"""An engineer's command with no agent running: this process writes the journal itself.

One set of rules for every such command (``atm cash replenish|reconcile``, and the
``atm exercise`` actions that need no agent):

- the journal must exist (a mistyped path is refused, never made);
- its lock is taken, so an agent cannot start on it meanwhile (and one running without
  a control socket refuses the command, naming its PID);
- nothing in it may be interrupted (an intent without its outcome, a session without
  its end): the agent's start-up recovers those, so the engineer starts it first;
- the command leaves the rows an agent would write, and one ``remote_command`` row with
  ``transport: "direct"`` and the engineer; times are the wall clock's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.journal import Journal, JournalError
from fsm.cash_service import CashRefused, plan_change
from fsm.clock import RealClock


class DirectRefused(Exception):
    """The command was refused; ``error`` is its error code. Nothing was written."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


class EngineerJournal:
    """The journal, opened for one engineer's command (a context manager)."""

    def __init__(self, path: str, signing_key: str = ""):
        """``signing_key``: the config's ``security.signing_key`` (its checkpoints are signed)."""
        if not Path(path).is_file():
            raise JournalError(f"journal {path}: no such file (nothing to change: has an agent run here?)")
        self.journal = Journal(path, RealClock(), signing_key=signing_key)
        if self.journal.pending_intents() or self.journal.open_sessions():
            self.journal.close()
            raise JournalError(
                f"journal {path}: a session or command was interrupted; start the agent (atm run) so that it"
                " recovers it first"
            )

    def __enter__(self) -> EngineerJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.journal.close()

    def command_row(self, command: str, args: dict[str, Any], engineer: str, **outcome: Any) -> None:
        """The ``remote_command`` row an agent writes for a request, as this process's."""
        self.journal.event(
            None,
            "remote_command",
            command=command,
            args=args,
            ok=True,
            **outcome,
            transport="direct",
            engineer=engineer,
        )
        self.journal.flush()


def checked(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request's arguments as the agent checks them; DirectRefused if bad."""
    from agent.remote import BadRequest, parse_request

    try:
        return parse_request(method, json.dumps(params).encode())
    except BadRequest as exc:
        raise DirectRefused(exc.reason, exc.error) from None


def cash_direct(cfg: Config, path: str, method: str, params: dict[str, Any], engineer: str) -> dict[str, Any]:
    """``replenish`` or ``reconcile`` on a stopped ATM's journal: the same change, and the same
    rows, as the agent's (:func:`fsm.cash_service.plan_change`); no device is opened."""
    args = checked(method, params)
    with EngineerJournal(path, cfg.signing_key) as held:
        journal = held.journal
        cassettes = journal.load_cassettes() or cfg.cassettes
        try:
            change = plan_change(method, cassettes, args, counts_unknown=journal.counts_unreconciled())
        except CashRefused as exc:
            raise DirectRefused(exc.reason, exc.error) from None
        intent = journal.intent(None, change.name, **change.intent)
        journal.outcome(intent, None, change.name, cassettes=change.after, **change.outcome)
        held.command_row(method, args, engineer)
    return {"ok": True, "command": method, "agent": "not running", **change.answer}
