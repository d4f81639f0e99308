"""A stream of simulated customers for ``atm run``.

Customers arrive one after another with a mix of functions, forgotten cards
and cash, idle customers and cancellations. Now and then the dispenser jams
and an engineer clears it, and a cash van refills a low cassette.
"""

from __future__ import annotations

import random

from hw_mocks.cards import CARDS
from hw_mocks.customer import Customer, Visit

GAP = (2.0, 6.0)  # seconds between one customer leaving and the next arriving

# (weight, visit factory)
MIX = [
    (30, lambda r: Visit("withdrawal", amount=r.choice([10_000, 20_000, 30_000, 45_000]))),
    (15, lambda r: Visit("deposit", notes={10_000: r.randint(1, 5), 1_000: r.randint(0, 9)})),
    (15, lambda r: Visit("balance")),
    (8, lambda r: Visit("transfer", amount=r.choice([5_000, 30_000]))),
    (6, lambda r: Visit("balance", forget_card=True, label="forgets the card")),
    (5, lambda r: Visit("deposit", forget_card=True, label="forgets the card after a deposit")),
    (5, lambda r: Visit("withdrawal", forget_cash=True, label="forgets the cash")),
    (5, lambda r: Visit("withdrawal", forget_card=True, come_back_after=3.0, label="comes back")),
    (5, lambda r: Visit("balance", idle_at="menu", idle_for=r.uniform(16, 25), label="is stuck")),
    (3, lambda r: Visit("withdrawal", wrong_pins=1, label="mistypes the PIN")),
    (3, lambda r: Visit("withdrawal", cancel_at="enter_amount", label="cancels")),
]
JAM_CHANCE = 0.06
ENGINEER_AFTER = 20.0


class Crowd:
    def __init__(self, agent, config, seed: int | None = None):
        self.agent = agent
        self.config = config
        self.rng = random.Random(seed)
        self.served = 0

    def start(self, first_within: float = 3.0) -> None:
        self.agent.scheduler.call_later(self.rng.uniform(0.5, first_within), self._next)

    def _visit(self) -> Visit:
        weights = [w for w, _ in MIX]
        make = self.rng.choices([f for _, f in MIX], weights)[0]
        visit = make(self.rng)
        visit.card = self.rng.choice(list(CARDS))
        visit.think = self.rng.uniform(0.5, 2.0)
        return visit

    def _next(self, _customer=None) -> None:
        self._maybe_jam()
        self._maybe_refill()
        customer = Customer(self.agent, self._visit(), done=self._gone)
        customer.arrive()

    def _gone(self, customer) -> None:
        self.served += 1
        self.agent.scheduler.call_later(self.rng.uniform(*GAP), self._next)

    def _maybe_jam(self) -> None:
        dispenser = self.agent.devices["dispenser"]
        if "jam" not in dispenser.injected and self.rng.random() < JAM_CHANCE:
            dispenser.inject("jam")
            self.agent.scheduler.call_later(ENGINEER_AFTER, self._engineer)

    def _engineer(self) -> None:
        self.agent.devices["dispenser"].remove("jam")
        self.agent.maintenance("dispenser")

    def _maybe_refill(self) -> None:
        if any(c.status != "ok" for c in self.agent.devices["dispenser"].cassettes):
            self.agent.replenish(self.config.cassettes)
