"""Sessions a crash interrupted: what the journal says happened, and how to close them.

The journal's intent/outcome protocol tells which *command* a crash cut short;
this module looks at the whole *session* it belonged to. From the session's
rows alone (pure: :func:`plan_recovery`) it decides what is owed:

- notes dispensed into the stacker and never presented are purged to the
  reject bin, and the host is credited for them;
- notes that reached the customer's reach (presented, or in the throat of a
  dispenser without a shutter) are the customer's: never reversed;
- money the host may have moved for a session that delivered nothing
  (approved, or never answered) is reversed; a reversal already sent is not
  sent again;
- a session that moved notes blocks withdrawals until an engineer counts
  and replenishes the cassettes (``reconcile``).

:class:`SessionRecoverer` carries that out at start-up and ends the session
with the outcome ``interrupted``. Every step is safe to repeat: a crash
during the recovery recovers again on the next start (a purge of an empty
stacker moves nothing; the host reverses a request at most once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fsm.ports import JournalRow

if TYPE_CHECKING:
    from fsm.atm import ATM

UNKNOWN = -1  # a number of notes nobody knows


Row = JournalRow  # one journal row


@dataclass
class _Command:
    """An intent and its outcome (None while it has none)."""

    intent: dict[str, Any]
    outcome: dict[str, Any] | None = None

    @property
    def interrupted(self) -> bool:
        return self.outcome is None or self.outcome.get("result") == "interrupted"

    @property
    def ok(self) -> bool:
        return self.outcome is not None and bool(self.outcome.get("ok"))


@dataclass(frozen=True)
class SessionRecovery:
    """What is owed for one interrupted session."""

    session: str
    function: str | None
    amount: int
    token: str | None = field(repr=False)  # the card's keyed hash, for the host; never journalled here
    money_request: int | None  # the host request that may have moved money
    reverse: int  # amount to credit back to the customer (0: nothing)
    purge: int  # notes in the stacker to purge to the reject bin (UNKNOWN: maybe some)
    cash_left: int  # notes within the customer's reach (UNKNOWN: maybe some)
    cash_left_value: int  # their value (UNKNOWN when the notes are)
    reconcile: bool  # notes left the cassettes: count them before withdrawals
    found: str  # how far the session got, in a few words
    started: str  # the first and last row's timestamps
    ended: str

    def record(self) -> dict[str, Any]:
        """The journal's recovery row: everything but the card's token."""
        data = asdict(self)
        del data["token"]
        return data

    @property
    def duration_s(self) -> float:
        try:
            seconds = (datetime.fromisoformat(self.ended) - datetime.fromisoformat(self.started)).total_seconds()
        except ValueError:
            return 0.0
        return round(max(seconds, 0.0), 3)


def _commands(rows: Iterable[Row]) -> dict[str, list[_Command]]:
    """The session's commands by name, each with its outcome."""
    by_seq: dict[int, _Command] = {}
    named: dict[str, list[_Command]] = {}
    for row in rows:
        if row.kind == "intent":
            by_seq[row.seq] = command = _Command(row.data)
            named.setdefault(row.name, []).append(command)
        elif row.kind == "outcome" and row.intent in by_seq:
            by_seq[row.intent].outcome = row.data
    return named


def _stacked(outcome: Mapping[str, Any]) -> dict[str, int]:
    """Notes per cassette that reached the stacker (picked, less those rejected)."""
    picked, rejected = outcome.get("picked") or {}, outcome.get("rejected") or {}
    return {cid: n - int(rejected.get(cid, 0)) for cid, n in picked.items() if n - int(rejected.get(cid, 0)) > 0}


@dataclass
class _Money:
    """The session's money request at the host, from its steps."""

    request: int | None = None
    op: str | None = None
    amount: int = 0
    approved: bool | None = None  # None: no answer on record
    reversed: bool = False


def _money(rows: Iterable[Row]) -> _Money:
    money = _Money()
    for row in rows:
        if row.kind != "step":
            continue
        if row.name == "host_request" and row.data.get("op") in ("withdraw", "deposit", "transfer"):
            money = _Money(row.data.get("request"), row.data["op"], int(row.data.get("amount", 0)))
        elif row.name == "host_reply" and money.request is not None and row.data.get("request") == money.request:
            money.approved = row.data.get("code") == "approved"
        elif row.name == "reversal":
            money.reversed = True
    return money


def plan_recovery(
    session: str, rows: list[Row], has_shutter: bool, denominations: Mapping[str, int]
) -> SessionRecovery:
    """What an interrupted session owes, from its journal rows alone."""
    steps = {row.name: row.data for row in rows if row.kind == "step"}
    function = steps.get("chosen", {}).get("function")
    token = steps.get("card_read", {}).get("token")
    money = _money(rows)
    commands = _commands(rows)
    owed = money.amount if money.request is not None and money.approved is not False and not money.reversed else 0
    purge = cash_left = stacked_value = 0
    reconcile = False
    found = "no money moved"
    dispense = commands.get("dispense", [None])[-1]
    if dispense is not None:
        reconcile = True
        presents = commands.get("present_cash", [])
        purged = bool(commands.get("purge_stacker"))
        if dispense.interrupted:
            found = "the dispense was cut short"
            stacked_notes, stacked_value = UNKNOWN, 0
        else:
            stacked = _stacked(dispense.outcome or {})
            stacked_notes = sum(stacked.values())
            stacked_value = sum(n * denominations.get(cid, 0) for cid, n in stacked.items())
            found = "notes dispensed, not presented"
        if not has_shutter:  # the notes went straight to the throat: the customer's
            cash_left = stacked_notes
            owed = max(owed - stacked_value, 0) if stacked_notes != UNKNOWN else 0
            found += " (no shutter: at the exit)"
        elif presents:
            owed, cash_left, found = _presented(presents[-1], commands.get("retract_cash", []), owed)
        elif not purged:
            purge = stacked_notes
    elif money.op == "deposit":
        store = commands.get("store_notes", [None])[-1]
        if store is not None:
            owed = 0  # stored, or nobody knows: the acceptor's counts decide
            reconcile = store.interrupted
            found = "the notes were being stored" if store.interrupted else "notes stored"
    elif money.op == "transfer" and money.approved:
        owed, found = 0, "transfer approved"
    return SessionRecovery(
        session=session,
        function=function,
        amount=money.amount,
        token=token,
        money_request=money.request,
        reverse=owed if token is not None else 0,
        purge=purge,
        cash_left=cash_left,
        cash_left_value=stacked_value if cash_left > 0 else cash_left,
        reconcile=reconcile,
        found=found,
        started=rows[0].ts if rows else "",
        ended=rows[-1].ts if rows else "",
    )


def _presented(present: _Command, retracts: list[_Command], owed: int) -> tuple[int, int, str]:
    """(owed, cash_left, found) once the cash was presented: the customer may have taken it,
    unless a retract brought every note back."""
    if present.interrupted or not present.ok:
        return 0, UNKNOWN, "the cash was being presented"
    notes = int((present.outcome or {}).get("result") or 0)
    retract = retracts[-1] if retracts else None
    if retract is not None and retract.ok and int((retract.outcome or {}).get("result") or 0) >= notes:
        return owed, 0, "the cash was retracted"
    return 0, notes, "the cash was presented"


class SessionRecoverer:
    """Closes the sessions a crash interrupted, at start-up, on the state machine's thread."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def recover(self) -> list[SessionRecovery]:
        atm = self.atm
        dispenser = atm.devices.dispenser
        denominations = {c.id: c.denomination for c in dispenser.cassettes}
        plans = [
            plan_recovery(session, rows, dispenser.has_shutter, denominations)
            for session, rows in atm.journal.open_sessions().items()
        ]
        for plan in plans:
            self._carry_out(plan)
        return plans

    def _carry_out(self, plan: SessionRecovery) -> None:
        atm = self.atm
        atm.journal.recovery(plan.session, "session", **plan.record())
        atm.out("journal", action="recovered", op="session", session=plan.session, found=plan.found)
        if plan.reverse and plan.token is not None:
            atm.report.step(plan.session, "reversal", original=plan.money_request, amount=plan.reverse, recovered=True)
            atm.host.request(
                "reverse", plan.token, lambda reply: None, original=plan.money_request, amount=plan.reverse
            )
        if plan.cash_left > 0 and plan.function is not None:  # unknown: in the recovery row only
            atm.report.event(plan.session, "cash_left", function=plan.function, notes=plan.cash_left)
        if plan.purge:
            dispenser = atm.devices.dispenser
            atm.commands.run(
                "dispenser",
                "purge_stacker",
                dispenser.reset,
                plan.session,
                then=lambda completion: self._end(plan),
                notes=max(plan.purge, 0) if plan.purge != UNKNOWN else "unknown",
            )
        else:
            self._end(plan)

    def _end(self, plan: SessionRecovery) -> None:
        self.atm.report.session_end(
            {
                "session": plan.session,
                "function": plan.function,
                "outcome": "interrupted",
                "amount": plan.amount,
                "language": self.atm.cfg.languages[0],
                "card_retained": False,
                "cash_retracted": 0,
                "notes_dispensed": None if plan.cash_left == UNKNOWN else plan.cash_left,
                "amount_dispensed": None if plan.cash_left_value == UNKNOWN else plan.cash_left_value,
                "duration_s": plan.duration_s,
            }
        )
