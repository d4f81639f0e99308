"""The session flow, in parts: each part holds the callbacks of a few states.

:func:`bind` turns the callback names of ``fsm.states.TRANSITIONS`` into the
parts' bound methods, and gives each state the ``on_enter_<state>`` /
``on_exit_<state>`` methods the parts define. A name no part defines is an
error when the machine is built, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from fsm.flows.card import CardFlow
from fsm.flows.cash import CashFlow
from fsm.flows.deposit import DepositFlow
from fsm.flows.gate import GateFlow
from fsm.flows.host import HostFlow
from fsm.flows.menu import MenuFlow
from fsm.flows.startup import StartUp

if TYPE_CHECKING:
    from fsm.atm import ATM

CALLBACK_KEYS = ("prepare", "conditions", "unless", "before", "after")


def _resolve(name: str, parts: list[Any]) -> Callable[..., Any]:
    for part in parts:
        method = getattr(part, name, None)
        if callable(method):
            return method  # type: ignore[no-any-return]
    raise LookupError(f"no session-flow part defines the callback {name!r}")


def bind(
    states: Iterable[str],
    table: list[dict[str, Any]],
    parts: list[Any],
    timed: Iterable[str],
    leave_state: Callable[..., Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """States with their enter/exit callbacks, and the rows with callables for names."""
    timed = set(timed)
    bound_states = []
    for state in states:
        spec: dict[str, Any] = {"name": state, "on_enter": [], "on_exit": []}
        for part in parts:
            for hook in ("on_enter", "on_exit"):
                method = getattr(part, f"{hook}_{state}", None)
                if method is not None:
                    spec[hook].append(method)
        if state in timed:
            spec["on_exit"].insert(0, leave_state)
        bound_states.append(spec)
    rows = []
    for row in table:
        bound = dict(row)
        for key in CALLBACK_KEYS:
            names = row.get(key)
            if names is None:
                continue
            names = [names] if isinstance(names, str) else list(names)
            bound[key] = [_resolve(n, parts) for n in names]
        rows.append(bound)
    return bound_states, rows


class Flows:
    """Every part of the session flow of one ATM."""

    def __init__(self, atm: ATM) -> None:
        self.startup = StartUp(atm)
        self.card = CardFlow(atm)
        self.host = HostFlow(atm)
        self.menu = MenuFlow(atm)
        self.cash = CashFlow(atm)
        self.deposit = DepositFlow(atm)
        self.gate = GateFlow(atm)

    def parts(self) -> list[Any]:
        return [self.startup, self.card, self.host, self.menu, self.cash, self.deposit, self.gate]

    def fail_safe_steps(self) -> list[Callable[[], object]]:
        """What the fail-safe does, step by step (each one best effort)."""
        return self.card.fail_safe_steps()
