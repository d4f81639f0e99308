"""Cash dispenser with cassettes.

The driver keeps the logical cassette table (denomination, count,
thresholds). ``dispense`` moves notes to the stacker, ``present`` to the
gate; then ``cash_taken`` follows, or ``retract`` pulls them back.
Events emitted: ``cash_presented``, ``cash_taken``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cache, reduce
from math import gcd

from devices.base import Device, DeviceContext
from devices.locator import Locator


@dataclass
class Cassette:
    id: str
    denomination: int
    count: int
    low: int = 0  # at or below: "low" (replenish soon)
    empty: int = 0  # at or below: "empty" (the cassette is not used)
    near_end: bool = False  # the cassette's near-end sensor

    @property
    def status(self) -> str:
        if self.count <= self.empty:
            return "empty"
        if self.count <= self.low or self.near_end:
            return "low"
        return "ok"

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "denomination": self.denomination, "count": self.count, "status": self.status}


@dataclass
class DispenseResult:
    """What left each cassette. ``picked`` notes left the cassette for good;
    ``rejected`` of those went to the reject tray; the rest wait in the stacker."""

    requested: dict[str, int]
    picked: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    fault_code: str = ""
    uncertain: bool = False  # the device may have moved notes that nobody counted

    @property
    def complete(self) -> bool:
        return not self.fault_code and all(
            self.picked.get(c, 0) - self.rejected.get(c, 0) == n for c, n in self.requested.items()
        )

    def stacked(self, cassette_id: str) -> int:
        return self.picked.get(cassette_id, 0) - self.rejected.get(cassette_id, 0)


def plan_notes(cassettes: list[Cassette], amount: int, max_notes: int) -> dict[str, int] | None:
    """Choose notes that make ``amount``, within counts and ``max_notes``.

    Largest notes first, which gives the fewest notes for the usual 1-2-5
    series; when that cannot pay, a memoised search over (cassette, amount
    left) finds the fewest notes. Amounts no mix of the denominations can make
    are refused at once, so it stays fast for any input.
    """
    usable = sorted((c for c in cassettes if c.status != "empty"), key=lambda c: -c.denomination)
    if amount <= 0 or not usable or amount % reduce(gcd, (c.denomination for c in usable)):
        return None
    limit = [min(c.count - c.empty, max_notes) for c in usable]
    greedy, rest = {}, amount
    for cas, most in zip(usable, limit):
        n = min(rest // cas.denomination, most)
        if n:
            greedy[cas.id], rest = n, rest - n * cas.denomination
    if rest == 0 and sum(greedy.values()) <= max_notes:
        return greedy
    reach = [0] * (len(usable) + 1)  # the most cassettes i.. can pay
    for i in range(len(usable) - 1, -1, -1):
        reach[i] = reach[i + 1] + limit[i] * usable[i].denomination

    @cache
    def fewest(i: int, rest: int) -> int | None:
        if rest == 0:
            return 0
        if rest > reach[i]:
            return None
        d, best = usable[i].denomination, None
        for n in range(min(rest // d, limit[i]), -1, -1):
            sub = fewest(i + 1, rest - n * d)
            if sub is not None and (best is None or n + sub < best):
                best = n + sub
        return best

    total = fewest(0, amount)
    if total is None or total > max_notes:
        return None
    plan, rest = {}, amount
    for i, cas in enumerate(usable):
        need = fewest(i, rest)
        for n in range(min(rest // cas.denomination, limit[i]), -1, -1):
            sub = fewest(i + 1, rest - n * cas.denomination)
            if sub is not None and n + sub == need:
                if n:
                    plan[cas.id] = n
                rest -= n * cas.denomination
                break
    return plan


class CashDispenser(Device):
    kind = "dispenser"
    max_notes = 60
    has_shutter = True  # False: notes go straight out to the customer; no stacker, no retract

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.cassettes: list[Cassette] = []

    def load_cassettes(self, cassettes: list[Cassette]) -> None:
        """Tell the driver what each cassette holds (from config or the journal)."""
        self.cassettes = [Cassette(**c.__dict__) for c in cassettes]

    def cassette(self, cassette_id: str) -> Cassette:
        for cas in self.cassettes:
            if cas.id == cassette_id:
                return cas
        raise KeyError(cassette_id)

    def plan(self, amount: int) -> dict[str, int] | None:
        return plan_notes(self.cassettes, amount, self.max_notes)

    def can_pay(self, amount: int) -> bool:
        return self.plan(amount) is not None

    @abc.abstractmethod
    def dispense(self, plan: dict[str, int]) -> DispenseResult:
        """Pick notes into the stacker. Never raises for a device fault: the
        result carries the fault code and the partial counts."""

    @abc.abstractmethod
    def test_dispense(self, cassette_id: str, notes: int) -> DispenseResult:
        """Pick ``notes`` from one cassette straight into the reject bin (an engineer's check):
        ``picked`` and ``rejected`` both count them; the cassette's count goes down."""

    @abc.abstractmethod
    def present(self) -> int:
        """Move the stacked notes to the gate; return how many."""

    @abc.abstractmethod
    def retract(self) -> int:
        """Pull presented notes back into the retract bin; return how many."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear the transport (purge) and re-check; clears faults that went away."""

    def _apply(self, result: DispenseResult) -> None:
        for cid, n in result.picked.items():
            self.cassette(cid).count -= n
