"""Every demo scenario runs end to end on the virtual clock, and the timer edge cases."""

import pytest

from agent.scenarios import SCENARIOS, ScenarioRun
from hw_mocks.cards import CARDS
from hw_mocks.customer import Visit
from tests.helpers import make_agent, run_visits

QUICK = {"timeouts": {"idle_help": 15, "idle_cancel": 45, "card_take": 30, "cash_take": 30}}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_ends_as_scripted(name):
    scenario = SCENARIOS[name]
    agent = make_agent(scenario.config)
    agent.warm_prompts()
    assert ScenarioRun(scenario, agent).run() == []


def states(run):
    return [r["state"] for r in run.agent.recorder.of_type("state")]


def outcomes(run):
    return [s["outcome"] for s in run.sessions()]


def test_input_just_before_the_idle_timeout_cancels_it():
    run = run_visits([Visit("balance", idle_at="menu", idle_for=44.99)], QUICK)
    assert outcomes(run) == ["completed"]
    assert len(run.videos("started")) == 1 and len(run.videos("stopped")) == 1


def test_idle_past_the_timeout_cancels_the_session_and_returns_the_card():
    run = run_visits([Visit("balance", idle_at="menu", idle_for=60)], QUICK)
    assert outcomes(run) == ["abandoned"]
    assert run.agent.devices["card_reader"].captured == []
    assert "card_at_gate" in states(run)


def test_a_customer_still_typing_never_sees_the_help_video():
    run = run_visits([Visit("withdrawal", think=14.0)], QUICK)
    assert outcomes(run) == ["completed"]
    assert run.videos("started") == []


def test_customer_who_comes_back_stops_the_prompt_and_takes_the_card():
    run = run_visits([Visit("balance", forget_card=True, come_back_after=12.0)], QUICK)
    assert outcomes(run) == ["completed"]
    stops = [p for p in run.agent.recorder.of_type("prompt") if p["action"] == "stop"]
    assert stops and stops[0]["reason"] == "customer_returned"
    assert run.agent.devices["card_reader"].captured == []
    assert len(run.prompts("forgotten_card")) >= 1


def test_card_retained_after_the_take_timeout_with_repeats():
    run = run_visits([Visit("balance", forget_card=True)], QUICK)
    plays = run.prompts("forgotten_card")
    assert [p["repeat"] for p in plays] == [1, 2, 3]
    assert plays[1]["t"] - plays[0]["t"] == pytest.approx(10.0)
    assert outcomes(run) == ["card_retained"]
    retained = [e for e in run.telemetry("event") if e.get("event") == "card_retained"]
    assert retained and retained[0]["function"] == "balance"


def test_deposit_uses_a_different_forgotten_card_pattern():
    run = run_visits([Visit("deposit", forget_card=True)], QUICK)
    assert run.prompts("forgotten_card") == []
    assert len(run.prompts("forgotten_card_deposit")) >= 2
    assert run.prompts("forgotten_card_deposit")[0]["prompt"] != "forgotten_card"


def test_no_prompt_while_the_customer_stands_there():
    run = run_visits([Visit("balance", think=40.0)], QUICK)  # slow, but present
    assert run.prompts("forgotten_card") == []


def test_a_failed_sensor_never_prompts_and_falls_back_to_timeouts():
    run = run_visits(
        [Visit("balance", forget_card=True)], QUICK, setup=lambda a: a.devices["proximity"].inject("failure")
    )
    assert run.prompts("forgotten_card") == []
    assert outcomes(run) == ["card_retained"]


def test_three_wrong_pins_retain_the_card():
    run = run_visits([Visit("balance", wrong_pins=3)])
    assert outcomes(run) == ["pin_tries_exceeded"]
    assert len(run.agent.devices["card_reader"].captured) == 1


def test_one_wrong_pin_then_the_right_one():
    run = run_visits([Visit("balance", wrong_pins=1)])
    assert outcomes(run) == ["completed"]


def test_host_decline_returns_the_card():
    run = run_visits([Visit("withdrawal")], setup=lambda a: a.host.inject("decline"))
    assert outcomes(run) == ["declined"]
    assert run.agent.devices["dispenser"].cassette("A").count == 500


def _host_dies_at(state):
    def setup(agent):
        agent.recorder.sinks.append(lambda r: agent.host.inject("timeout") if r.get("state") == state else None)

    return setup


def test_host_timeout_reverses_the_withdrawal():
    run = run_visits([Visit("withdrawal", amount=30_000)], setup=_host_dies_at("amount_entry"))
    assert outcomes(run) == ["host_timeout"]
    host = run.agent.host
    assert [op for op, _ in host.log][-2:] == ["withdraw", "reverse"]
    assert all(acct.balance == 1_000_000 for acct in host.accounts.values())
    assert run.agent.devices["dispenser"].cassette("A").count == 500


def test_host_timeout_at_pin_check_returns_the_card():
    run = run_visits([Visit("balance")], setup=_host_dies_at("pin_entry"))
    assert outcomes(run) == ["host_timeout"]
    assert "reverse" not in [op for op, _ in run.agent.host.log]
    assert run.agent.devices["card_reader"].captured == []


def test_cancel_at_amount_entry():
    run = run_visits([Visit("withdrawal", cancel_at="enter_amount")])
    assert outcomes(run) == ["cancelled"]
    assert run.agent.devices["dispenser"].cassette("A").count == 500


def test_cancel_during_deposit_returns_the_notes():
    run = run_visits([Visit("deposit", cancel_at="confirm_deposit")])
    assert outcomes(run) == ["cancelled"]
    assert run.agent.devices["acceptor"].returned == {10_000: 2, 1_000: 3}
    assert run.agent.devices["acceptor"].stored == {}


def test_jam_mid_withdrawal_never_dispenses_twice_and_is_journalled():
    run = run_visits([Visit("withdrawal", amount=40_000)], setup=lambda a: a.devices["dispenser"].inject("jam"))
    journal = run.agent.journal
    dispenses = [e for e in journal.entries(kind="intent") if e.name == "dispense"]
    assert len(dispenses) == 1
    outcome = [e for e in journal.entries(kind="outcome") if e.intent == dispenses[0].seq][0]
    assert outcome.data["ok"] is False and outcome.data["picked"] == {"A": 2}
    assert run.agent.devices["dispenser"].cassette("A").count == 498
    assert journal.load_cassettes()[0].count == 498
    assert outcomes(run) == ["dispense_failed"]
    assert "reverse" in [op for op, _ in run.agent.host.log]
    assert all(acct.balance == 1_000_000 for acct in run.agent.host.accounts.values())
    assert "presenting_cash" not in states(run)
    purge = [e for e in journal.entries(kind="intent") if e.name == "purge_stacker"]
    assert purge and purge[0].data["notes"] == 2
    assert run.agent.devices["dispenser"].stacker == 0 and run.agent.devices["dispenser"].reject_bin == 2


def test_card_jam_during_reading_takes_the_atm_out_of_service():
    run = run_visits([Visit("balance")], setup=lambda a: a.devices["card_reader"].inject("jam"))
    assert outcomes(run) == ["card_stuck"]
    assert states(run)[-1] == "out_of_service"
    assert run.telemetry("status")[-1]["service"] == "out_of_service"


def test_magstripe_card_is_read_by_fallback_only_when_allowed():
    run = run_visits([Visit("balance", card="magstripe")])
    assert outcomes(run) == ["completed"]
    run = run_visits([Visit("balance", card="magstripe")], {"session": {"magstripe_fallback": False}})
    assert outcomes(run) == ["card_refused"]


def test_overseas_card_gets_english():
    run = run_visits([Visit("transfer", card="overseas")])
    caution = [p for p in run.prompts() if p["prompt"] == "transfer_caution"]
    assert caution and caution[0]["language"] == "en"


def test_crash_mid_dispense_is_recovered_from_the_journal(tmp_path):
    path = str(tmp_path / "journal.db")
    agent = make_agent(journal=path)
    agent.open()
    agent.journal.intent("s1", "dispense", plan={"A": 3}, amount=30_000, counts={"A": 500})
    agent.close()  # the agent dies before the outcome row
    run = run_visits([Visit("balance")], journal=path)
    recovered = [e for e in run.agent.journal.entries(kind="recovery")]
    assert [e.name for e in recovered] == ["dispense", "session"]  # the command, then its session
    assert run.agent.journal.pending_intents() == []
    s1 = [e for e in run.telemetry("event") if e.get("session") == "s1"]
    assert [(e["event"], e["outcome"]) for e in s1] == [("session", "interrupted")]
    faults = [f["code"] for f in run.telemetry("fault")]
    assert "count_unknown" in faults
    assert "withdrawal" not in run.agent.atm.functions
    run.agent.close()  # one agent per journal: the next one starts after this one ends
    # A restart does not make it go away; a counted replenishment does.
    run = run_visits([Visit("balance")], journal=path, epilogue=lambda a: a.replenish(a.config.cassettes))
    faults = [(f["code"], f["state"]) for f in run.telemetry("fault")]
    assert faults == [("count_unknown", "raised"), ("count_unknown", "cleared")]
    assert "withdrawal" in run.agent.atm.functions
    run.agent.close()
    run = run_visits([Visit("withdrawal")], journal=path)
    assert outcomes(run) == ["completed"] and run.telemetry("fault") == []


def test_start_up_self_test_finds_a_faulty_card_reader_and_recovers():
    agent = make_agent({"timeouts": {"selftest_retry": 30}})
    agent.devices["card_reader"].inject("jam")
    agent.start()
    agent.loop.run_until_idle(max_time=1)
    assert agent.atm.state == "out_of_service"
    assert agent.telemetry.publishers[0].topics("status")[-1]["service"] == "out_of_service"
    agent.devices["card_reader"].remove("jam")  # an engineer frees the transport
    agent.loop.run_until_idle(max_time=31)
    assert agent.atm.state == "idle"
    statuses = agent.telemetry.publishers[0].topics("status")
    assert statuses[-1]["service"] == "in_service"
    faults = [(f["code"], f["state"]) for f in agent.telemetry.publishers[0].topics("fault")]
    assert faults == [("jam", "raised"), ("jam", "cleared")]


def test_empty_cassettes_withdraw_only_withdrawal():
    run = run_visits(
        [Visit("withdrawal", amount=10_000), Visit("balance", card="domestic2")],
        {"cassettes": [{"id": "A", "denomination": 10_000, "count": 1}]},
    )
    assert outcomes(run) == ["completed", "completed"]
    menus = [s["fields"]["options"] for s in run.agent.devices["display"].screens if s["screen"] == "menu"]
    assert "withdrawal" in menus[0] and "withdrawal" not in menus[1]
    assert run.telemetry("status")[-1]["service"] == "degraded"
    assert run.telemetry("cash")[-1]["cassettes"][0]["status"] == "empty"


def test_shutdown_mid_session_hands_the_card_back():
    agent = make_agent()
    agent.start()
    agent.scheduler.call_later(1, agent.devices["proximity"].customer_arrive)
    agent.scheduler.call_later(2, agent.devices["card_reader"].customer_insert, CARDS["domestic"])
    agent.loop.run_until_idle(max_time=3)
    assert agent.atm.state == "pin_entry"
    agent.stop()
    assert agent.devices["card_reader"].position.value == "gate"
    telemetry = [r["payload"] for r in agent.recorder.of_type("telemetry")]
    sessions = [p for p in telemetry if p.get("event") == "session"]
    assert [s["outcome"] for s in sessions] == ["shutdown"]
    assert telemetry[-1]["state"] == "offline"


def test_shutdown_with_cash_at_the_shutter_retracts_and_reverses():
    agent = make_agent()
    agent.warm_prompts()
    dev = agent.devices
    agent.start()
    at = agent.scheduler.call_later
    at(1, dev["card_reader"].customer_insert, CARDS["domestic"])
    at(2, dev["keypad"].customer_enter, "1234")
    at(3, dev["keypad"].customer_enter, "withdrawal")
    at(4, dev["keypad"].customer_enter, "30000")
    at(5, dev["card_reader"].customer_take)
    agent.loop.run_until_idle(max_time=6)
    assert agent.atm.state == "cash_at_gate"
    agent.stop()
    assert dev["dispenser"].retracted == 3 and dev["dispenser"].at_gate == 0
    assert all(acct.balance == 1_000_000 for acct in agent.host.accounts.values())


def test_a_failing_output_sink_does_not_disturb_the_session():
    def broken(record):
        raise OSError("disk full")

    run = run_visits([Visit("withdrawal")], setup=lambda a: a.recorder.sinks.insert(0, broken))
    assert outcomes(run) == ["completed"]


def test_acceptor_jam_while_storing_is_reversed_and_journalled():
    run = run_visits([Visit("deposit")], setup=lambda a: a.devices["acceptor"].inject("jam"))
    assert outcomes(run) == ["store_failed"]
    assert "reverse" in [op for op, _ in run.agent.host.log]
    assert all(acct.balance == 1_000_000 for acct in run.agent.host.accounts.values())
    store = [e for e in run.agent.journal.entries(kind="outcome") if e.name == "store_notes"]
    assert store[0].data == {"ok": False, "fault": "jam"}
    assert "deposit" not in run.agent.atm.functions and "withdrawal" in run.agent.atm.functions


def test_cash_levels_are_also_reported_periodically():
    agent = make_agent({"telemetry": {"cash_interval": 300}})
    agent.start()
    agent.loop.run_until_idle(max_time=700)
    cash = agent.telemetry.publishers[0].topics("cash")
    assert len(cash) == 3  # at start, at 300 s and at 600 s
    assert cash[1]["seq"] < cash[2]["seq"]


def test_help_video_returns_when_the_customer_is_idle_again():
    agent = make_agent(QUICK)
    dev = agent.devices
    agent.start()
    at = agent.scheduler.call_later
    at(1, dev["proximity"].customer_arrive)
    at(2, dev["card_reader"].customer_insert, CARDS["domestic"])
    at(3, dev["keypad"].customer_enter, "1234")  # menu from 3.2 s
    at(25, dev["keypad"].customer_keys, 1)  # help started at 18.2 s; this stops it
    at(75, dev["card_reader"].customer_take)
    agent.loop.run_until_idle(max_time=80)
    videos = [(v["action"], v["t"]) for v in agent.recorder.of_type("video")]
    assert [a for a, _ in videos] == ["started", "stopped", "started", "stopped"]
    assert videos[0][1] == pytest.approx(18.2) and videos[1][1] == pytest.approx(25)
    assert videos[2][1] == pytest.approx(40)  # 15 s after the key
    assert videos[3][1] == pytest.approx(70)  # idle cancel, 45 s after the key
    assert [s["outcome"] for s in agent.telemetry.publishers[0].topics("event") if s.get("event") == "session"] == [
        "abandoned"
    ]


def test_a_physically_empty_cassette_fails_safely_until_replenished():
    def refill(agent):
        agent.devices["dispenser"].remove("empty")
        agent.replenish(agent.config.cassettes)

    run = run_visits(
        [Visit("withdrawal"), Visit("balance", card="domestic2")],
        setup=lambda a: a.devices["dispenser"].inject("empty"),
        epilogue=refill,
    )
    assert outcomes(run) == ["dispense_failed", "completed"]
    faults = [(f["code"], f["state"], f["action"]) for f in run.telemetry("fault")]
    assert faults == [("cassette_empty", "raised", "replenish"), ("cassette_empty", "cleared", "replenish")]
    assert run.telemetry("status")[-1]["service"] == "in_service"
    assert run.agent.devices["dispenser"].cassette("A").count == 500


def test_host_timeout_on_a_deposit_undoes_the_credit_and_returns_the_notes():
    run = run_visits([Visit("deposit")], setup=_host_dies_at("confirming_deposit"))
    assert outcomes(run) == ["host_timeout"]
    assert all(acct.balance == 1_000_000 for acct in run.agent.host.accounts.values())
    assert run.agent.devices["acceptor"].returned == {10_000: 2, 1_000: 3}
    assert run.agent.devices["acceptor"].stored == {}


def test_a_reversal_never_creates_money_after_a_lost_decline():
    def poor(agent):
        for acct in agent.host.accounts.values():
            acct.balance = 10_000
        _host_dies_at("amount_entry")(agent)

    run = run_visits([Visit("withdrawal", amount=30_000)], setup=poor)
    assert outcomes(run) == ["host_timeout"]
    assert all(acct.balance == 10_000 for acct in run.agent.host.accounts.values())


def test_notes_from_a_jammed_dispense_never_reach_the_next_customer():
    def jam_then_heal(agent):
        agent.devices["dispenser"].inject("jam")
        agent.recorder.sinks.append(
            lambda r: agent.devices["dispenser"].remove("jam") if r.get("screen") == "dispense_failed" else None
        )

    run = run_visits(
        [Visit("withdrawal", amount=40_000), Visit("withdrawal", card="domestic2", think=6)],
        {"timeouts": {"selftest_retry": 5}},
        setup=jam_then_heal,
    )
    assert outcomes(run) == ["dispense_failed", "completed"]
    presented = [r["notes"] for r in run.agent.recorder.of_type("device") if r["event"] == "cash_presented"]
    assert presented == [3]
    disp = run.agent.devices["dispenser"]
    assert disp.cassette("A").count == 500 - 2 - 3 and disp.reject_bin == 2


def test_notes_stuck_in_the_escrow_are_never_credited_to_the_next_depositor():
    def jam_once(agent):
        acceptor = agent.devices["acceptor"]
        acceptor.inject("jam")
        agent.recorder.sinks.append(lambda r: acceptor.remove("jam") if r.get("state") == "ejecting_card" else None)

    run = run_visits(
        [Visit("deposit"), Visit("deposit", card="domestic2", notes={1_000: 1}, think=6)],
        {"timeouts": {"selftest_retry": 5}},
        setup=jam_once,
        epilogue=lambda agent: agent.maintenance("acceptor"),
    )
    assert outcomes(run)[0] == "store_failed"
    assert outcomes(run)[1] in ("cancelled", "deposit_unavailable")  # deposit is not on offer
    assert all(acct.balance == 1_000_000 for acct in run.agent.host.accounts.values())
    acceptor = run.agent.devices["acceptor"]
    assert acceptor.retained == {10_000: 2, 1_000: 3} and acceptor.escrow() == {}
    assert "deposit" in run.agent.atm.functions
    resets = [e for e in run.agent.journal.entries(kind="outcome") if e.name == "maintenance_reset_acceptor"]
    assert resets and resets[0].data["ok"] is True


def test_a_pin_check_the_host_refuses_for_another_reason_is_reported_as_declined():
    def forget_accounts(agent):
        agent.host.accounts.clear()

    run = run_visits([Visit("balance")], setup=forget_accounts)
    assert outcomes(run) == ["declined"]
    screens = [s["screen"] for s in run.agent.devices["display"].screens]
    assert "declined" in screens


def test_a_failing_journal_takes_the_atm_out_of_service_and_hands_the_card_back():
    import sqlite3

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    def break_journal_at_authorising(agent):
        def sink(r):
            if r.get("state") == "authorising":
                for name in ("intent", "outcome", "flush", "fault", "event"):
                    setattr(agent.journal, name, disk_full)

        agent.recorder.sinks.append(sink)

    run = run_visits([Visit("withdrawal", amount=30_000)], setup=break_journal_at_authorising)
    atm = run.agent.atm
    assert atm.broken and atm.state == "out_of_service"
    assert run.agent.devices["card_reader"].position.value in ("gate", "none")
    assert run.agent.devices["dispenser"].cassette("A").count == 500
    assert all(acct.balance == 1_000_000 for acct in run.agent.host.accounts.values())
    assert run.telemetry("status")[-1]["service"] == "out_of_service"


def test_an_error_in_a_timer_is_contained():
    agent = make_agent()
    agent.start()
    agent.scheduler.call_later(1, lambda: 1 / 0)
    agent.loop.run_until_idle(max_time=2)
    assert agent.loop.failed is None and agent.atm.state == "idle"
    assert [e.name for e in agent.journal.entries(kind="event")][-1] == "software_error"


def test_a_sensor_failing_after_a_walk_away_never_prompts_the_next_customer():
    def fail_sensor_for_the_second(agent):
        agent.recorder.sinks.append(
            lambda r: (
                agent.devices["proximity"].inject("failure")
                if r.get("type") == "customer" and r["card"] == "domestic2"
                else None
            )
        )

    run = run_visits(
        [Visit("balance", forget_card=True, come_back_after=3.0), Visit("balance", card="domestic2")],
        QUICK,
        setup=fail_sensor_for_the_second,
    )
    assert outcomes(run) == ["completed", "completed"]
    second_start = [r["t"] for r in run.agent.recorder.of_type("customer")][1]
    assert [p for p in run.prompts() if p["t"] > second_start and p.get("pattern")] == []


def test_the_balance_stays_on_screen_while_the_card_is_at_the_gate():
    run = run_visits([Visit("balance")])
    take = [s for s in run.agent.devices["display"].screens if s["screen"] == "take_card"]
    assert take and take[0]["fields"] == {"balance": 1_000_000}


def _stop_with_cash_at_the_gate(dispenser: str, tmp_path):
    """A withdrawal whose customer leaves the cash; the agent stops while it waits at the gate."""
    from agent.journal import Journal
    from hw_mocks.customer import Customer

    agent = make_agent({"devices": {"dispenser": dispenser}}, journal=str(tmp_path / "j.db"))
    agent.warm_prompts()
    agent.start()
    Customer(agent, Visit("withdrawal", amount=30_000, forget_cash=True)).arrive(1.0)
    for _ in range(600):  # tenth by tenth of a virtual second, until the cash waits at the gate
        until = agent.clock.now() + 0.1
        agent.loop.run_until_idle(max_time=until)
        agent.clock.advance_to(until)
        if agent.atm.state == "cash_at_gate":
            break
    assert agent.atm.state == "cash_at_gate"
    agent.stop()
    journal = Journal(str(tmp_path / "j.db"), agent.clock)
    steps = [e.name for e in journal.entries()]
    end = [e.data for e in journal.entries(kind="event") if e.name == "session_end"][-1]
    journal.close()
    balance = next(iter(agent.host.accounts.values())).balance
    return steps, end, balance, agent


def test_a_stop_with_cash_in_a_throat_without_shutter_reverses_nothing(tmp_path):
    """The LCDM-2000 has no shutter: it takes nothing back, so the customer keeps the cash and pays."""
    steps, end, balance, agent = _stop_with_cash_at_the_gate("lcdm2000+emu://", tmp_path)
    assert end["outcome"] == "shutdown" and end["cash_retracted"] == 0
    assert "reversal" not in steps
    assert agent.devices["dispenser"].at_gate == 3
    assert balance == 1_000_000 - 30_000


def test_a_stop_with_cash_at_a_shutter_reverses_what_was_retracted(tmp_path):
    steps, end, balance, agent = _stop_with_cash_at_the_gate("sim://", tmp_path)
    assert end["outcome"] == "shutdown" and end["cash_retracted"] == 3
    assert steps.count("reversal") == 1
    assert balance == 1_000_000


def test_after_the_fail_safe_no_self_test_puts_the_atm_back_in_service():
    """A broken journal: out of service until a restart, everywhere (the state, the service
    and every status message), however many periodic self-tests follow."""
    import sqlite3

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    def break_journal_at_authorising(agent):
        def sink(r):
            if r.get("state") == "authorising":
                for name in ("intent", "outcome", "flush", "fault", "event", "step"):
                    setattr(agent.journal, name, disk_full)

        agent.recorder.sinks.append(sink)

    run = run_visits(
        [Visit("withdrawal", amount=30_000)], {"timeouts": {"selftest_retry": 10}}, setup=break_journal_at_authorising
    )
    agent = run.agent
    assert agent.atm.broken
    broke_at = agent.clock.now()
    agent.loop._stop.clear()  # the scenario stopped the loop; let time run on for 5 self-tests
    agent.loop.run_until_idle(max_time=broke_at + 55)
    assert agent.loop.failed is None and not agent.loop.stopped, agent.loop.failed
    assert agent.clock.now() >= broke_at + 40  # the last self-test before the limit
    assert agent.atm.state == "out_of_service" and agent.atm.service.service == "out_of_service"
    assert agent.atm.functions == []
    after = [m for m in agent.recorder.of_type("telemetry") if m["topic"].endswith("/status")]
    services = [m["payload"]["service"] for m in after]
    assert services[0] == "in_service" and services[1:] and set(services[1:]) == {"out_of_service"}


def test_a_card_fault_belongs_to_its_session_raised_once_and_cleared_when_it_ends():
    run = run_visits([Visit("balance", card="mute"), Visit("balance", card="mute"), Visit("balance")])
    faults = [(f["code"], f["state"]) for f in run.telemetry("fault")]
    assert faults == [("mute_card", "raised"), ("mute_card", "cleared")] * 2
    assert not run.agent.devices["chip"].faults


# -- what the session event says about the cash ---------------------------------------
def test_a_completed_withdrawal_says_what_reached_the_customer():
    run = run_visits([Visit("withdrawal", amount=30_000)])
    (end,) = run.sessions()
    assert (end["outcome"], end["notes_dispensed"], end["amount_dispensed"]) == ("completed", 3, 30_000)


def test_a_partial_dispense_behind_a_shutter_says_nothing_reached_the_customer():
    run = run_visits([Visit("withdrawal", amount=40_000)], setup=lambda a: a.devices["dispenser"].inject("jam"))
    (end,) = run.sessions()
    assert (end["outcome"], end["amount"], end["notes_dispensed"], end["amount_dispensed"]) == (
        "dispense_failed",
        40_000,
        0,
        0,
    )


def test_a_partial_dispense_without_a_shutter_says_how_many_notes_and_how_much():
    """The LCDM-2000 picks half of the notes, then stops (pickup_error): those are the customer's."""
    run = run_visits(
        [Visit("withdrawal", amount=40_000)],
        {"devices": {"dispenser": "lcdm2000+emu://?fault=pickup_error"}},
    )
    (end,) = run.sessions()
    assert end["outcome"] == "dispense_failed" and end["amount"] == 40_000
    assert (end["notes_dispensed"], end["amount_dispensed"]) == (2, 20_000)
    reversal = [args for op, args in run.agent.host.log if op == "reverse"]
    assert reversal, "the rest is reversed"
    assert next(iter(run.agent.host.accounts.values())).balance == 1_000_000 - 20_000


def test_cash_levels_are_flagged_unknown_after_a_dispense_without_answer():
    run = run_visits(
        [Visit("withdrawal", amount=30_000)],
        {"devices": {"dispenser": "lcdm2000+emu://"}},
        setup=lambda a: a.devices["dispenser"].inject("garbled"),
    )
    assert outcomes(run) == ["dispense_uncertain"]
    (end,) = run.sessions()
    assert end["notes_dispensed"] is None and end["amount_dispensed"] is None  # no shutter: unknown
    last = run.telemetry("cash")[-1]
    assert {c["accuracy"] for c in last["cassettes"]} == {"unknown"}
    assert {c["accuracy"] for c in run.telemetry("cash")[0]["cassettes"]} == {"accurate"}
