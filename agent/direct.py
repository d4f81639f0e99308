"""An engineer's command run with no agent running: this process opens the devices itself.

The command runs through the same :class:`fsm.operator.OperatorCommands` as on the
control socket, on a virtual clock's loop, with the ATM out of service (no agent, no
customers) and the journal's lock held, so what it journals is what an agent would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.journal import JournalError
from fsm.clock import VirtualClock
from fsm.states import State

TURN = 0.5  # virtual seconds a turn of the loop may cover
MAX_TURNS = 240  # turns (two virtual minutes) a command may take before it is given up


class DirectRefused(Exception):
    """The command was refused; ``error`` is its error code."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


def run_direct(cfg: Config, journal: str, method: str, params: dict[str, Any], engineer: str) -> dict[str, Any]:
    """Run ``method`` on this config's devices and ``journal`` (which must exist); its answer."""
    from agent.remote import BadRequest, parse_request
    from agent.runtime import Agent

    if not Path(journal).is_file():
        raise JournalError(f"journal {journal}: no such file (nothing to change: has an agent run here?)")
    try:
        args = parse_request(method, _json(params))
    except BadRequest as exc:
        raise DirectRefused(exc.reason, exc.error) from None
    cfg.journal_path = journal
    clock = VirtualClock(epoch=datetime.now(UTC))  # the journal's times are the wall clock's
    agent = Agent(cfg, clock, brokers=[])
    answers: list[dict[str, Any]] = []
    try:
        agent.open()
        _refuse_busy_ports(agent)
    except BaseException:
        agent.close()  # before the loop runs: nothing is journalled
        raise
    try:
        agent.atm.service.hold(f"{method} with no agent running")
        agent.atm.start()  # the journal's recovery and the self-tests, as an agent's start
        if _run(agent, lambda: agent.atm.state in (State.IDLE, State.OUT_OF_SERVICE)):
            who = {"transport": "direct", "engineer": engineer}
            agent.atm.operator.remote_command(method, args, answers.append, who)
            _run(agent, lambda: bool(answers))
    finally:
        agent.stop()
    if not answers:
        raise DirectRefused(f"{method}: the devices did not answer", "timeout")
    answer = answers[0]
    if not answer.get("ok", False):
        raise DirectRefused(str(answer.get("reason", answer.get("error"))), str(answer.get("error", "refused")))
    return answer


def _refuse_busy_ports(agent: Any) -> None:
    """A port another process holds (an agent with another control socket, a terminal
    program) is refused: two processes must never talk to one device."""
    for kind, device in agent.devices.items():
        fault = device.faults.get("port_busy")
        if fault is not None:
            raise DirectRefused(f"devices.{kind}: {fault.message}; nothing was done", "port_busy")


def _run(agent: Any, done: Callable[[], bool]) -> bool:
    """Turn the virtual clock's loop until ``done()``; False if it never is."""
    for _ in range(MAX_TURNS):
        if done():
            return True
        agent.loop.run_until_idle(max_time=agent.clock.now() + TURN)
        agent.clock.advance(TURN)
    return done()


def _json(params: dict[str, Any]) -> bytes:
    import json

    return json.dumps(params).encode()
