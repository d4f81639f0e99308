"""The service counters, derived from the journal's rows (pure).

Nothing else keeps them: the journal records every card step, every device
command's intent and outcome and every fault, so the counters are whatever those
rows add up to since the last ``counters_reset`` event (``atm counters reset``).
They survive a restart because the journal does.

Per cassette, as XFS's cash units count them: ``initial`` (the count when its
figures started: the reset, its last replenishment, or before its first
dispense), ``presented`` (to the customer), ``rejected`` (to the reject bin: at
the pick, or purged from the stacker), ``retracted`` (taken back after being
presented) and ``unknown`` (notes a dispense nobody answered may have moved). A
replenishment or a reconciliation (the notes were counted) starts its cassettes'
figures again; the device counters run on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fsm.ports import COUNTERS_RESET, JournalRow

RESET = COUNTERS_RESET  # the event row `atm counters reset` writes
CUT_SHORT = ("unknown", "interrupted")  # an outcome's result when nobody knows what the command did

DEVICE_COUNTERS = {
    "card_reader": ("cards_inserted", "cards_read", "cards_retained"),
    "dispenser": ("dispenses", "notes_dispensed", "notes_rejected", "notes_retracted", "notes_purged"),
    "acceptor": ("notes_stored", "notes_returned"),
}
FAULT_COUNTERS = ("jams", "power_losses")
CASSETTE_COUNTERS = ("presented", "rejected", "retracted", "unknown")

COMMAND_DEVICES = {
    "dispense": "dispenser",
    "present_cash": "dispenser",
    "retract_cash": "dispenser",
    "purge_stacker": "dispenser",
    "replenish": "dispenser",
    "reconcile": "dispenser",
    "test_dispense": "dispenser",  # an engineer's `atm exercise dispenser test-dispense`
    "exercise_purge": "dispenser",
    "exercise_eject": "card_reader",
    "exercise_capture": "card_reader",
    "eject_card": "card_reader",
    "capture_card": "card_reader",
    "store_notes": "acceptor",
    "return_notes": "acceptor",
}


Row = JournalRow  # one journal row


def command_device(name: str) -> str | None:
    """The device a journalled command went to."""
    if name.startswith("maintenance_reset_"):
        return name.removeprefix("maintenance_reset_")
    return COMMAND_DEVICES.get(name)


def _notes(value: Any) -> int:
    """A number of notes from a row: an int, or a {denomination or cassette: n} mapping."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, Mapping):
        return sum(_notes(n) for n in value.values())
    return 0


def _per_cassette(value: Any) -> dict[str, int]:
    return {str(k): _notes(n) for k, n in value.items()} if isinstance(value, Mapping) else {}


def _take(bundle: dict[str, int], notes: int) -> dict[str, int]:
    """``notes`` of the bundle, cassette by cassette (which ones, when only some of a mixed
    bundle moved, nobody knows: counted from the first cassette of the bundle on)."""
    taken: dict[str, int] = {}
    for cid, n in bundle.items():
        if notes <= 0:
            break
        taken[cid] = min(n, notes)
        notes -= taken[cid]
    return taken


class _Tally:
    """The counters while the rows are read, in order."""

    def __init__(self, cassettes: list[dict[str, Any]]) -> None:
        self.table = {str(c["id"]): c for c in cassettes}
        self.intents: dict[int, Row] = {}
        self.stacked: dict[str | None, dict[str, int]] = {}  # per session: in the stacker, by cassette
        self.presented: dict[str | None, dict[str, int]] = {}  # per session: at the exit, by cassette
        self.cut_short: set[int] = set()
        self.start(None, None, {})

    def start(self, reset: dict[str, Any] | None, since: str | None, counts: Mapping[str, Any]) -> None:
        """Every counter at zero, from a reset row (or the journal's first row)."""
        self.reset, self.since = reset, since
        self.devices: dict[str, dict[str, int]] = {}
        for device in DEVICE_COUNTERS:
            self.device(device)
        self.sessions_interrupted = 0
        self.cassettes: dict[str, dict[str, Any]] = {}
        for cid, count in counts.items():
            self.cassette(str(cid), since)["initial"] = _notes(count)

    def device(self, name: str) -> dict[str, int]:
        if name not in self.devices:
            self.devices[name] = dict.fromkeys((*DEVICE_COUNTERS.get(name, ()), *FAULT_COUNTERS), 0)
        return self.devices[name]

    def cassette(self, cid: str, since: str | None = None) -> dict[str, Any]:
        if cid not in self.cassettes:
            self.cassettes[cid] = {"initial": None, **dict.fromkeys(CASSETTE_COUNTERS, 0), "since": since}
        return self.cassettes[cid]

    def add(self, figure: str, bundle: Mapping[str, int]) -> None:
        for cid, n in bundle.items():
            self.cassette(cid, self.since)[figure] += n

    # the rows --------------------------------------------------------------------
    def row(self, row: Row) -> None:
        if row.kind == "event" and row.name == RESET:
            reset = {"seq": row.seq, "ts": row.ts, "engineer": row.data.get("engineer")}
            self.start(reset, row.ts, row.data.get("counts") or {})
        elif self.since is None:
            self.since = row.ts
        if row.kind == "step" and row.name in ("card_inserted", "card_read"):
            self.device("card_reader")["cards_" + row.name.removeprefix("card_")] += 1
        elif row.kind == "fault" and row.data.get("state") == "raised":
            self.fault(row.data)
        elif row.kind == "intent":
            self.intent(row)
        elif row.kind == "outcome" and row.intent in self.intents:
            self.outcome(self.intents[row.intent], row)
        elif row.kind == "recovery":
            self.recovery(row)

    def fault(self, fault: Mapping[str, Any]) -> None:
        counter = {"jam": "jams", "power_loss": "power_losses"}.get(str(fault.get("code")))
        if counter is not None:
            self.device(str(fault.get("device") or "unknown"))[counter] += 1

    def intent(self, row: Row) -> None:
        self.intents[row.seq] = row
        if row.name == "dispense":
            self.device("dispenser")["dispenses"] += 1
        if row.name in ("dispense", "test_dispense"):
            for cid, count in _per_cassette(row.data.get("counts")).items():
                cassette = self.cassette(cid, self.since)
                if cassette["initial"] is None:  # nothing had left it yet in this period
                    cassette["initial"] = count

    def outcome(self, intent: Row, row: Row) -> None:
        data, session, name = row.data, intent.session, intent.name
        if data.get("result") in CUT_SHORT:
            self.lost(intent, data)
            if name == "dispense" and data.get("result") == "interrupted":
                return
        ok = bool(data.get("ok"))
        if name == "dispense":
            picked, rejected = _per_cassette(data.get("picked")), _per_cassette(data.get("rejected"))
            self.device("dispenser")["notes_rejected"] += sum(rejected.values())
            self.add("rejected", rejected)
            self.stacked[session] = {c: n - rejected.get(c, 0) for c, n in picked.items() if n > rejected.get(c, 0)}
        elif name == "test_dispense":  # every note it picked went to the reject bin
            rejected = _per_cassette(data.get("rejected"))
            self.device("dispenser")["notes_rejected"] += sum(rejected.values())
            self.add("rejected", rejected)
        elif name == "present_cash" and ok:
            notes = _notes(data.get("result"))
            self.device("dispenser")["notes_dispensed"] += notes
            self.presented[session] = _take(self.stacked.pop(session, {}), notes)
            self.add("presented", self.presented[session])
        elif name == "retract_cash" and ok:
            notes = _notes(data.get("result"))
            self.device("dispenser")["notes_retracted"] += notes
            self.add("retracted", _take(self.presented.pop(session, {}), notes))
        elif name == "purge_stacker" and ok:
            notes = _notes(intent.data.get("notes"))
            self.device("dispenser")["notes_purged"] += notes
            self.add("rejected", _take(self.stacked.pop(session, {}), notes))
        elif name == "capture_card" and ok:
            self.device("card_reader")["cards_retained"] += 1
        elif name == "store_notes" and ok:
            self.device("acceptor")["notes_stored"] += _notes(data.get("result"))
        elif name == "return_notes" and ok:
            self.device("acceptor")["notes_returned"] += _notes(intent.data.get("notes"))
        elif name in ("replenish", "reconcile") and ok:  # counted: the figures start again
            replenished = data.get("replenished")  # one cassette (atm cash replenish), else all
            for cassette in data.get("after") or ():
                cid = str(cassette.get("id"))
                if replenished is None or cid in replenished:
                    self.cassettes.pop(cid, None)
                    self.cassette(cid, row.ts)["initial"] = _notes(cassette.get("count"))

    def recovery(self, row: Row) -> None:
        if row.intent in self.intents:
            self.lost(self.intents[row.intent])
        elif row.name == "session":
            self.sessions_interrupted += 1

    def lost(self, intent: Row, outcome: Mapping[str, Any] | None = None) -> None:
        """A command nobody knows the end of: a power loss of its device (once)."""
        if intent.seq in self.cut_short:
            return
        self.cut_short.add(intent.seq)
        device = command_device(intent.name)
        if device is not None:
            self.device(device)["power_losses"] += 1
        if intent.name in ("dispense", "test_dispense"):  # what it picked, if anything, nobody counted
            picked = _per_cassette((outcome or {}).get("picked"))
            plan = _per_cassette(intent.data.get("plan"))
            self.add("unknown", {c: n - picked.get(c, 0) for c, n in plan.items() if n > picked.get(c, 0)})
        elif intent.name == "present_cash":
            self.add("unknown", self.stacked.pop(intent.session, {}))

    # the result --------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        ids = list(self.table) + [cid for cid in self.cassettes if cid not in self.table]
        cassettes = []
        for cid in ids:
            tally = self.cassette(cid, self.since)
            known = self.table.get(cid, {})
            initial = tally["initial"] if tally["initial"] is not None else known.get("count")
            cassettes.append(
                {
                    "id": cid,
                    "denomination": known.get("denomination"),
                    "initial": initial,
                    **{k: tally[k] for k in CASSETTE_COUNTERS},
                    "count": known.get("count"),
                    "since": tally["since"],
                }
            )
        return {
            "since": self.since,
            "reset": self.reset,
            "devices": self.devices,
            "sessions_interrupted": self.sessions_interrupted,
            "cassettes": cassettes,
        }


def derive(rows: Iterable[Row], cassettes: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters since the last reset, from the journal's rows in order and its cassette
    table (``id``, ``denomination``, ``count``: the counts now)."""
    tally = _Tally(cassettes)
    for row in rows:
        tally.row(row)
    return tally.figures()
