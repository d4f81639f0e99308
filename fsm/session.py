"""One customer session: what the state machine remembers between events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.carddata import CardData
from fsm.ports import HostReply


@dataclass
class Session:
    id: str
    started: float
    language: str
    card: CardData | None = None
    function: str | None = None  # withdrawal / deposit / balance / transfer
    amount: int = 0
    plan: dict[str, int] | None = None  # notes per cassette for a withdrawal
    offered_plan: dict[str, int] | None = None  # the plan for the amount being entered (before it is taken)
    pin_tries: int = 0
    host_request: int | None = None
    money_request: int | None = None  # the host request that moved money, for a reversal
    reply: HostReply | None = None  # the last host reply
    stacked_notes: int = 0  # dispensed into the stacker, not yet presented
    stacked_value: int = 0  # their value
    presented_notes: int = 0
    dispensed_notes: int | None = 0  # reached the customer: presented, or out of a dispenser
    dispensed_amount: int | None = 0  # without a shutter; their value. None: nobody knows
    outcome: str = "completed"
    card_retained: bool = False
    cash_retracted: int = 0
    escrow: dict[int, int] = field(default_factory=dict)  # notes per denomination

    @property
    def token(self) -> str:
        """The card's token, for the host: a session asks the host only once its card is read."""
        if self.card is None:
            raise RuntimeError(f"session {self.id} has no card read")
        return self.card.token

    def summary(self, ended: float) -> dict[str, Any]:
        """What telemetry and the journal get: never any card data."""
        return {
            "session": self.id,
            "function": self.function,
            "outcome": self.outcome,
            "amount": self.amount,
            "language": self.language,
            "card_retained": self.card_retained,
            "cash_retracted": self.cash_retracted,
            "notes_dispensed": self.dispensed_notes,
            "amount_dispensed": self.dispensed_amount,
            "duration_s": round(ended - self.started, 3),
        }
