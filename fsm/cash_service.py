"""An engineer's cash commands at the ATM: replenish one cassette, reconcile all of them.

Both run on the loop thread, only while the ATM is out of service by request and no
session is open (ours: counting notes needs the safe open, so the ATM is in the
engineer's hands). Each is an intent, the counts changed, and an outcome with the
cassette counts, like any command that moves notes:

- ``replenish``: cassette X now holds N notes (of denomination D); refused while the
  counts are unknown, since adding to an unknown count gives an unknown count.
- ``reconcile``: the engineer counted every cassette; each count replaces the journal's
  figure, the difference of each is journalled, and ``count_unknown`` is cleared.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from devices.commands import Completion
from devices.dispenser import Cassette
from devices.fields import ABSENT, Field, fields
from fsm.engineer_gate import when_quiet

if TYPE_CHECKING:
    from fsm.atm import ATM

Reply = Callable[[dict[str, Any]], None]
MAX_NOTES = 10_000  # notes a cassette may be said to hold (ours)
CASSETTE_ID = r"[A-Za-z0-9]{1,8}"


def _counted_problem(counted: dict[str, Any]) -> str | None:
    if not 1 <= len(counted) <= 8:
        return "name 1 to 8 cassettes"
    for cid, n in counted.items():
        if not re.fullmatch(CASSETTE_ID, cid):
            return f"{cid[:20]!r} is not a cassette id (1 to 8 letters or digits)"
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_NOTES:
            return f"cassette {cid}: the count must be a whole number 0..{MAX_NOTES}"
    return None


REPLENISH_FIELDS = fields(
    Field("cassette", str, description="the cassette's id, e.g. A", pattern=CASSETTE_ID),
    Field("count", int, description="the notes it now holds", low=0, high=MAX_NOTES),
    Field("denomination", int, ABSENT, "the note value, if it changes", low=1, high=10_000_000),
)
RECONCILE_FIELDS = fields(
    Field("counted", dict, description="the notes counted in each cassette", check=_counted_problem),
)


class CashRefused(ValueError):
    """A change that may not be made: ``error`` is its code, ``reason`` for people."""

    def __init__(self, error: str, reason: str):
        super().__init__(reason)
        self.error, self.reason = error, reason


@dataclass(frozen=True)
class CashChange:
    """One change of the cassettes, planned before anything is written (pure)."""

    name: str  # the journal's command name: replenish or reconcile
    intent: dict[str, Any]  # the intent row's data
    after: list[Cassette]  # the cassettes once it is made
    outcome: dict[str, Any]  # the outcome row's data (without the cassette counts)
    answer: dict[str, Any]  # what the engineer is told


def plan_change(name: str, cassettes: list[Cassette], args: dict[str, Any], counts_unknown: bool) -> CashChange:
    """The ``replenish`` or ``reconcile`` of ``args`` on ``cassettes``; CashRefused if not."""
    plan = plan_replenish if name == "replenish" else plan_reconcile
    return plan(cassettes, args, counts_unknown)


def plan_replenish(cassettes: list[Cassette], args: dict[str, Any], counts_unknown: bool) -> CashChange:
    if counts_unknown:
        raise CashRefused(
            "not_permitted", "the counts are unknown: count every cassette first (atm cash reconcile --counted)"
        )
    cid = args["cassette"]
    if cid not in [c.id for c in cassettes]:
        raise CashRefused("bad_field", f"no cassette {cid!r} (cassettes: {_ids(cassettes)})")
    before = [c.as_dict() for c in cassettes]
    after = [
        replace(c, count=args["count"], denomination=args.get("denomination", c.denomination)) if c.id == cid else c
        for c in cassettes
    ]
    after_dicts = [c.as_dict() for c in after]
    outcome = {"ok": True, "after": after_dicts, "replenished": [cid]}
    answer = {"cassette": _find(after_dicts, cid), "before": _find(before, cid)}
    return CashChange("replenish", {"before": before, "cassette": cid}, after, outcome, answer)


def plan_reconcile(cassettes: list[Cassette], args: dict[str, Any], counts_unknown: bool) -> CashChange:
    counted: dict[str, int] = args["counted"]
    ids = [c.id for c in cassettes]
    unknown = sorted(set(counted) - set(ids))
    missing = [cid for cid in ids if cid not in counted]
    if unknown:
        raise CashRefused("bad_field", f"no cassette {unknown[0]!r} (cassettes: {_ids(cassettes)})")
    if missing:
        raise CashRefused("bad_field", f"count every cassette: {', '.join(missing)} missing")
    differences = [
        {"id": c.id, "journal": c.count, "counted": counted[c.id], "difference": counted[c.id] - c.count}
        for c in cassettes
    ]
    after = [replace(c, count=counted[c.id]) for c in cassettes]
    outcome = {
        "ok": True,
        "after": [c.as_dict() for c in after],
        "differences": differences,
        "count_was_unknown": counts_unknown,
    }
    intent = {"before": [c.as_dict() for c in cassettes], "counted": counted}
    answer = {"differences": differences, "count_was_unknown": counts_unknown}
    return CashChange("reconcile", intent, after, outcome, answer)


class CashService:
    """``replenish`` and ``reconcile`` for :class:`fsm.operator.OperatorCommands`."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def replenish(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        return self._change("replenish", args, answer)

    def reconcile(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        return self._change("reconcile", args, answer)

    def _change(self, name: str, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        return when_quiet(self.atm, answer, lambda: self._make(name, args, answer))

    def _make(self, name: str, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        """Plan it, then intent, the counts changed, outcome; answer after the self-test."""
        dispenser = self.atm.devices.dispenser
        counts_unknown = "count_unknown" in dispenser.faults  # the start-up raised it from the journal
        try:
            change = plan_change(name, dispenser.cassettes, args, counts_unknown)
        except CashRefused as exc:
            return _refused(exc.error, exc.reason)
        journal = self.atm.journal
        intent = journal.intent(None, change.name, **change.intent)
        dispenser.load_cassettes(change.after)
        journal.outcome(intent, None, change.name, cassettes=dispenser.cassettes, **change.outcome)
        if name == "reconcile":
            dispenser.clear_fault("count_unknown")  # every cassette was counted
        self._retest(lambda: answer(change.answer))
        return None

    def _retest(self, then: Callable[[], None]) -> None:
        """Self-test the dispenser (its near-end sensors), publish the levels, then answer."""
        atm = self.atm

        def tested(completion: Completion) -> None:
            atm.publish_cash()
            atm.service.refresh()
            atm.follow_service()
            then()

        atm.commands.send("dispenser", "self_test", atm.devices.dispenser.self_test, then=tested)


def _refused(error: str, reason: str) -> dict[str, Any]:
    return {"ok": False, "error": error, "reason": reason}


def _ids(cassettes: list[Cassette]) -> str:
    return ", ".join(c.id for c in cassettes)


def _find(cassettes: list[dict[str, object]], cid: str) -> dict[str, object]:
    return next(c for c in cassettes if c["id"] == cid)
