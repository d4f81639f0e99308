"""The counters derived from hand-made journal rows (agent.counters, pure)."""

from agent.counters import derive
from agent.journal import Entry

CASSETTES = [{"id": "A", "denomination": 10_000, "count": 494}, {"id": "B", "denomination": 1_000, "count": 1000}]


class Rows(list):
    """Journal rows as the journal gives them, numbered in order."""

    def add(self, kind, name, session=None, intent=None, **data):
        seq = len(self) + 1
        self.append(Entry(seq, f"2026-01-01T00:00:{seq:02d}.000+00:00", session, kind, name, intent, data))
        return seq

    def command(self, name, session="s1", outcome=None, **intent):
        seq = self.add("intent", name, session, **intent)
        if outcome is not None:
            self.add("outcome", name, session, seq, **outcome)
        return seq


def withdrawal(rows, session="s1", plan=None, counts=None, picked=None, rejected=None, presented=3):
    plan = plan or {"A": 3}
    rows.add("step", "card_inserted", session)
    rows.add("step", "card_read", session, last4="0015", token="t", source="chip")
    rows.command(
        "dispense",
        session,
        {"ok": True, "picked": picked or plan, "rejected": rejected or {c: 0 for c in plan}, "fault": ""},
        plan=plan,
        amount=30_000,
        counts=counts or {"A": 500, "B": 1000},
    )
    rows.command("eject_card", session, {"ok": True, "result": None})
    rows.command("present_cash", session, {"ok": True, "result": presented}, notes=presented)


def test_no_rows_gives_zeros_and_the_table_counts_as_initial():
    figures = derive([], CASSETTES)
    assert figures["reset"] is None and figures["since"] is None
    assert figures["devices"]["dispenser"] == {
        "dispenses": 0,
        "notes_dispensed": 0,
        "notes_rejected": 0,
        "notes_retracted": 0,
        "notes_purged": 0,
        "jams": 0,
        "power_losses": 0,
    }
    assert figures["devices"]["card_reader"] == {
        "cards_inserted": 0,
        "cards_read": 0,
        "cards_retained": 0,
        "jams": 0,
        "power_losses": 0,
    }
    a = figures["cassettes"][0]
    assert a == {
        "id": "A",
        "denomination": 10_000,
        "initial": 494,
        "presented": 0,
        "rejected": 0,
        "retracted": 0,
        "unknown": 0,
        "count": 494,
        "since": None,
    }


def test_a_withdrawal_counts_the_card_and_the_notes_presented_from_their_cassette():
    rows = Rows()
    withdrawal(rows)
    figures = derive(rows, CASSETTES)
    reader, dispenser = figures["devices"]["card_reader"], figures["devices"]["dispenser"]
    assert (reader["cards_inserted"], reader["cards_read"], reader["cards_retained"]) == (1, 1, 0)
    assert (dispenser["dispenses"], dispenser["notes_dispensed"], dispenser["notes_rejected"]) == (1, 3, 0)
    a, b = figures["cassettes"]
    assert (a["initial"], a["presented"], a["rejected"], a["unknown"]) == (500, 3, 0, 0)
    assert (b["initial"], b["presented"]) == (1000, 0)
    assert figures["since"] == rows[0].ts


def test_a_jam_counts_the_rejected_notes_and_the_jam_once():
    rows = Rows()
    fault = {"device": "dispenser", "code": "jam", "severity": "error", "message": "jammed", "action": "reset"}
    rows.add("fault", "jam", **fault, state="raised")
    withdrawal(rows, picked={"A": 2}, rejected={"A": 1}, presented=1)
    rows.add("fault", "jam", **fault, state="cleared")
    figures = derive(rows, CASSETTES)
    dispenser = figures["devices"]["dispenser"]
    assert (dispenser["jams"], dispenser["notes_rejected"], dispenser["notes_dispensed"]) == (1, 1, 1)
    a = figures["cassettes"][0]
    assert (a["presented"], a["rejected"]) == (1, 1)


def test_retracted_and_purged_notes():
    rows = Rows()
    withdrawal(rows, plan={"A": 2, "B": 3}, presented=5)
    rows.command("retract_cash", "s1", {"ok": True, "result": 5}, notes=5)
    rows.add("step", "card_inserted", "s2")
    rows.command(
        "dispense",
        "s2",
        {"ok": False, "picked": {"A": 1}, "rejected": {"A": 0}, "fault": "pickup_error"},
        plan={"A": 2},
        amount=20_000,
        counts={"A": 498, "B": 997},
    )
    rows.command("purge_stacker", "s2", {"ok": True, "result": None}, notes=1)
    figures = derive(rows, CASSETTES)
    dispenser = figures["devices"]["dispenser"]
    assert (dispenser["dispenses"], dispenser["notes_dispensed"]) == (2, 5)
    assert (dispenser["notes_retracted"], dispenser["notes_purged"]) == (5, 1)
    a, b = figures["cassettes"]
    assert (a["presented"], a["retracted"], a["rejected"]) == (2, 2, 1)  # the purged note went to the reject bin
    assert (b["presented"], b["retracted"], b["rejected"]) == (3, 3, 0)


def test_a_retained_card():
    rows = Rows()
    rows.add("step", "card_inserted", "s1")
    rows.add("step", "card_read", "s1")
    rows.command("eject_card", "s1", {"ok": True, "result": None})
    rows.command("capture_card", "s1", {"ok": True, "result": None}, reason="forgotten")
    rows.add("event", "card_retained", "s1", function="balance", reason="forgotten")
    rows.command("capture_card", "s2", {"ok": False, "fault": "jam"}, reason="pin_tries")
    assert derive(rows, CASSETTES)["devices"]["card_reader"]["cards_retained"] == 1


def test_a_dispense_nobody_answered_is_a_power_loss_and_its_notes_unknown():
    rows = Rows()
    rows.add("step", "card_inserted", "s1")
    rows.command(
        "dispense",
        "s1",
        {"ok": False, "picked": {}, "rejected": {}, "fault": "no_response", "result": "unknown"},
        plan={"A": 3},
        amount=30_000,
        counts={"A": 500, "B": 1000},
    )
    figures = derive(rows, CASSETTES)
    assert figures["devices"]["dispenser"]["power_losses"] == 1
    assert figures["devices"]["dispenser"]["notes_dispensed"] == 0
    assert figures["cassettes"][0]["unknown"] == 3


def test_a_command_a_crash_cut_short_is_one_power_loss_of_its_device():
    rows = Rows()
    rows.add("step", "card_inserted", "s1")
    dispense = rows.add("intent", "dispense", "s1", plan={"A": 3}, amount=30_000, counts={"A": 500, "B": 1000})
    # Journal.recover: a recovery row, then an interrupted outcome, for the same intent
    rows.add("recovery", "dispense", "s1", dispense, result="unknown", reconcile="required", plan={"A": 3})
    rows.add("outcome", "dispense", "s1", dispense, ok=False, result="interrupted")
    rows.add("recovery", "session", "s1", reconcile=True, found="the dispense was cut short")
    eject = rows.add("intent", "eject_card", "s2")
    rows.add("recovery", "eject_card", "s2", eject, result="unknown", reconcile="required")
    rows.add("outcome", "eject_card", "s2", eject, ok=False, result="interrupted")
    figures = derive(rows, CASSETTES)
    assert figures["devices"]["dispenser"]["power_losses"] == 1
    assert figures["devices"]["card_reader"]["power_losses"] == 1
    assert figures["cassettes"][0]["unknown"] == 3
    assert figures["sessions_interrupted"] == 1


def test_a_device_reporting_its_own_power_loss():
    rows = Rows()
    fault = {"device": "card_reader", "code": "power_loss", "severity": "warning", "message": "m", "action": "reset"}
    rows.add("fault", "power_loss", **fault, state="raised")
    rows.add("fault", "power_loss", **fault, state="cleared")
    assert derive(rows, CASSETTES)["devices"]["card_reader"]["power_losses"] == 1


def test_a_replenishment_starts_the_cassette_figures_again_not_the_device_counters():
    rows = Rows()
    withdrawal(rows)
    before = [{"id": "A", "denomination": 10_000, "count": 497}, {"id": "B", "denomination": 1_000, "count": 1000}]
    after = [{"id": "A", "denomination": 10_000, "count": 2000}, {"id": "B", "denomination": 1_000, "count": 1000}]
    replenish = rows.command("replenish", None, {"ok": True, "after": after}, before=before)
    figures = derive(rows, CASSETTES)
    a = figures["cassettes"][0]
    assert (a["initial"], a["presented"], a["since"]) == (2000, 0, rows[replenish].ts)
    assert figures["devices"]["dispenser"]["notes_dispensed"] == 3


def test_the_counters_run_from_the_last_reset():
    rows = Rows()
    withdrawal(rows)
    reset = rows.add("event", "counters_reset", None, engineer="tanaka", counts={"A": 497, "B": 1000})
    withdrawal(rows, session="s2", plan={"A": 1}, counts={"A": 497, "B": 1000}, presented=1)
    figures = derive(rows, CASSETTES)
    assert figures["reset"] == {"seq": reset, "ts": rows[reset - 1].ts, "engineer": "tanaka"}
    assert figures["since"] == rows[reset - 1].ts
    assert figures["devices"]["dispenser"]["notes_dispensed"] == 1
    assert figures["devices"]["card_reader"]["cards_inserted"] == 1
    a = figures["cassettes"][0]
    assert (a["initial"], a["presented"], a["since"]) == (497, 1, rows[reset - 1].ts)


def test_deposits_count_the_notes_stored_and_returned():
    rows = Rows()
    rows.command("store_notes", "s1", {"ok": True, "result": {"10000": 2, "1000": 3}}, notes={"10000": 2, "1000": 3})
    rows.command("return_notes", "s2", {"ok": True, "result": None}, notes={"1000": 4})
    acceptor = derive(rows, CASSETTES)["devices"]["acceptor"]
    assert (acceptor["notes_stored"], acceptor["notes_returned"]) == (5, 4)


def test_a_jam_of_another_device_adds_it():
    rows = Rows()
    rows.add("fault", "jam", device="keypad", code="jam", severity="error", state="raised", message="m", action="r")
    assert derive(rows, CASSETTES)["devices"]["keypad"] == {"jams": 1, "power_losses": 0}
