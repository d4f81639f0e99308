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
from typing import TYPE_CHECKING, Any

from devices.commands import Completion
from devices.fields import Field, fields

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
    Field("denomination", int, 0, "the note value, if it changes", low=1, high=10_000_000),
)
RECONCILE_FIELDS = fields(
    Field("counted", dict, description="the notes counted in each cassette", check=_counted_problem),
)


class CashService:
    """``replenish`` and ``reconcile`` for :class:`fsm.operator.OperatorCommands`."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def refusal(self) -> dict[str, Any] | None:
        """Why cash may not be touched now, or None."""
        atm = self.atm
        if atm.session is not None or atm.operator.busy:
            return _refused("not_permitted", "a customer session is running")
        if not atm.service.held:
            return _refused("not_permitted", "take the ATM out of service first (atm service out)")
        return None

    def replenish(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        refused = self.refusal()
        if refused:
            return refused
        dispenser = self.atm.devices.dispenser
        if self.counts_unknown():
            return _refused(
                "not_permitted", "the counts are unknown: count every cassette first (atm cash reconcile --counted)"
            )
        try:
            cassette = dispenser.cassette(args["cassette"])
        except KeyError:
            return _refused("bad_field", f"no cassette {args['cassette']!r} (cassettes: {self._ids()})")
        count, denomination = args["count"], args.get("denomination") or cassette.denomination
        before = [c.as_dict() for c in dispenser.cassettes]
        intent = self.atm.journal.intent(None, "replenish", before=before, cassette=cassette.id)
        cassette.count, cassette.denomination = count, denomination
        after = [c.as_dict() for c in dispenser.cassettes]
        self.atm.journal.outcome(
            intent, None, "replenish", cassettes=dispenser.cassettes, ok=True, after=after, replenished=[cassette.id]
        )
        self._retest(lambda: answer({"cassette": cassette.as_dict(), "before": _find(before, cassette.id)}))
        return None

    def reconcile(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        refused = self.refusal()
        if refused:
            return refused
        dispenser = self.atm.devices.dispenser
        counted: dict[str, int] = args["counted"]
        ids = [c.id for c in dispenser.cassettes]
        unknown = sorted(set(counted) - set(ids))
        missing = [cid for cid in ids if cid not in counted]
        if unknown:
            return _refused("bad_field", f"no cassette {unknown[0]!r} (cassettes: {self._ids()})")
        if missing:
            return _refused("bad_field", f"count every cassette: {', '.join(missing)} missing")
        uncertain = self.counts_unknown()
        differences = [
            {"id": c.id, "journal": c.count, "counted": counted[c.id], "difference": counted[c.id] - c.count}
            for c in dispenser.cassettes
        ]
        before = [c.as_dict() for c in dispenser.cassettes]
        intent = self.atm.journal.intent(None, "reconcile", before=before, counted=counted)
        for cassette in dispenser.cassettes:
            cassette.count = counted[cassette.id]
        after = [c.as_dict() for c in dispenser.cassettes]
        self.atm.journal.outcome(
            intent,
            None,
            "reconcile",
            cassettes=dispenser.cassettes,
            ok=True,
            after=after,
            differences=differences,
            count_was_unknown=uncertain,
        )
        dispenser.clear_fault("count_unknown")  # every cassette was counted
        self._retest(lambda: answer({"differences": differences, "count_was_unknown": uncertain}))
        return None

    def counts_unknown(self) -> bool:
        """The dispenser says so, or the journal does (an agent that has not run its start-up)."""
        return "count_unknown" in self.atm.devices.dispenser.faults or self.atm.journal.counts_unreconciled()

    def _retest(self, then: Callable[[], None]) -> None:
        """Self-test the dispenser (its near-end sensors), publish the levels, then answer."""
        atm = self.atm

        def tested(completion: Completion) -> None:
            atm.publish_cash()
            atm.service.refresh()
            atm.follow_service()
            then()

        atm.commands.send("dispenser", "self_test", atm.devices.dispenser.self_test, then=tested)

    def _ids(self) -> str:
        return ", ".join(c.id for c in self.atm.devices.dispenser.cassettes)


def _refused(error: str, reason: str) -> dict[str, Any]:
    return {"ok": False, "error": error, "reason": reason}


def _find(cassettes: list[dict[str, object]], cid: str) -> dict[str, object]:
    return next(c for c in cassettes if c["id"] == cid)
