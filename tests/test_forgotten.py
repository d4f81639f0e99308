"""Forgotten card and cash, presence, and the help video: timing on the virtual clock."""

from __future__ import annotations

from hw_mocks.customer import Visit
from tests.helpers import RAW_PANS, run_visits


def times(run, kind, **match):
    return [r["t"] for r in run.agent.recorder.of_type(kind) if all(r.get(k) == v for k, v in match.items())]


def test_the_prompt_starts_within_the_debounce_after_the_customer_leaves():
    run = run_visits([Visit("withdrawal", forget_card=True)])
    left = times(run, "device", device="proximity", event="presence", present=False)
    first = times(run, "prompt", action="play", pattern="forgotten_card")[0]
    debounce = run.agent.config.timeouts["leave_debounce"]
    leaving = max(t for t in left if t <= first)
    assert 0 <= first - leaving <= debounce + 1e-6


def test_the_prompt_repeats_per_its_pattern_then_the_card_is_retained_and_reported():
    run = run_visits([Visit("withdrawal", forget_card=True)])
    plays = [p for p in run.prompts("forgotten_card")]
    pattern = run.agent.catalogue.pattern("forgotten_card")
    assert [p["repeat"] for p in plays] == list(range(1, pattern.repeats + 1))
    gaps = [b["t"] - a["t"] for a, b in zip(plays, plays[1:])]
    chime = run.agent.prompts.chime().duration
    assert all(pattern.interval - 1e-6 <= g <= pattern.interval + chime + 1e-6 for g in gaps)
    assert all(p["language"] == "ja" and p["prompt"] for p in plays)
    last = plays[-1]  # the escalation: another phrase, louder, after a chime
    assert last["prompt"] == pattern.escalate_prompt and last["volume"] == pattern.escalate_volume
    retained = [e for e in run.telemetry("event") if e.get("event") == "card_retained"]
    assert len(retained) == 1 and retained[0]["function"] == "withdrawal"
    journal = [e for e in run.agent.journal.entries() if e.name == "card_retained"]
    assert journal and journal[0].data["function"] == "withdrawal"
    text = repr(retained) + repr([e.data for e in run.agent.journal.entries()])
    assert not any(pan in text for pan in RAW_PANS)


def test_forgotten_cash_is_retracted_and_the_counts_reconcile():
    run = run_visits([Visit("withdrawal", amount=30_000, forget_cash=True)])
    assert [s["outcome"] for s in run.sessions()] == ["cash_retracted"]
    assert len(run.prompts("forgotten_cash")) >= 2
    dispenser = run.agent.devices["dispenser"]
    assert dispenser.retracted == 3
    replayed = run.agent.journal.replay_counts(run.agent.config.cassettes)
    assert replayed == {c.id: c.count for c in dispenser.cassettes}


def test_the_deposit_pattern_differs_from_the_withdrawal_pattern():
    deposit = run_visits([Visit("deposit", forget_card=True)])
    withdrawal = run_visits([Visit("withdrawal", forget_card=True)])
    d = [(p["prompt"], round(p["t"], 3)) for p in deposit.prompts("forgotten_card_deposit")]
    w = [(p["prompt"], round(p["t"], 3)) for p in withdrawal.prompts("forgotten_card")]
    assert d and w and not withdrawal.prompts("forgotten_card_deposit")
    d_gaps = {round(b[1] - a[1], 3) for a, b in zip(d, d[1:])}
    w_gaps = {round(b[1] - a[1], 3) for a, b in zip(w, w[1:])}
    assert d_gaps != w_gaps or {p for p, _ in d} != {p for p, _ in w}


def test_passers_by_on_the_distance_trace_never_prompt_a_waiting_customer():
    run = run_visits([Visit("balance")], {"devices": {"proximity": "trace://"}})
    assert [s["outcome"] for s in run.sessions()] == ["completed"]
    assert not [p for p in run.prompts() if p.get("pattern")]


def test_a_customer_who_walks_away_on_the_distance_trace_is_called_back():
    run = run_visits([Visit("balance", forget_card=True)], {"devices": {"proximity": "trace://"}})
    assert [s["outcome"] for s in run.sessions()] == ["card_retained"]
    assert len(run.prompts("forgotten_card")) >= 2


def test_the_help_video_waits_for_real_idleness_and_stops_on_input():
    run = run_visits([Visit("balance", idle_at="menu", idle_for=20.0)])
    started = times(run, "video", action="started")
    stopped = times(run, "video", action="stopped")
    menu = times(run, "device", device="display", event="screen", screen="menu")[0]
    idle = run.agent.config.timeouts["idle_help"]
    assert len(started) == 1 and abs(started[0] - (menu + idle)) < 1e-6
    key = [t for t in times(run, "device", device="keypad", event="key") if t > started[0]][0]
    assert stopped and stopped[0] == key


def test_the_customers_language_choice_wins_over_the_cards_country():
    run = run_visits([Visit("withdrawal", language="ko", forget_card=True)])
    plays = run.prompts("forgotten_card")
    assert plays and all(p["language"] == "ko" for p in plays)
    menus = [r for r in run.agent.recorder.of_type("device") if r.get("screen") == "menu"]
    assert menus[0]["fields"]["language"] == "ja" and menus[-1]["fields"]["language"] == "ko"


def test_an_overseas_chinese_card_hears_chinese():
    from hw_mocks import cards

    card = cards.SimCard("6200000000000005", country="0156", label="SIM UNIONPAY")
    cards.CARDS["unionpay"] = card
    try:
        run = run_visits([Visit("balance", card="unionpay", forget_card=True)])
    finally:
        del cards.CARDS["unionpay"]
    assert run.prompts("forgotten_card") and all(p["language"] == "zh" for p in run.prompts("forgotten_card"))
