"""Finite scripted scenarios for ``atm demo``, run on the virtual clock.

Each scenario says how to set up the rig, which customers come, what happens
after them, and how to tell that it ended as scripted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hw_mocks.customer import Customer, Visit

MAX_VIRTUAL_SECONDS = 3600.0


@dataclass
class Scenario:
    name: str
    description: str
    visits: list[Visit]
    check: Callable[[ScenarioRun], list[str]]
    config: dict = field(default_factory=dict)  # overrides for the config file
    setup: Callable[[object], None] | None = None  # agent -> None, before the first visit
    epilogue: Callable[[object], None] | None = None  # agent -> None, after the last visit
    linger: float = 5.0  # virtual seconds to run on after the last visit


class ScenarioRun:
    """Runs a scenario on an agent whose clock is virtual."""

    def __init__(self, scenario: Scenario, agent):
        self.scenario = scenario
        self.agent = agent
        self.pending = list(scenario.visits)
        self.customers: list[Customer] = []
        self.problems: list[str] = []

    def run(self) -> list[str]:
        agent = self.agent
        agent.start()
        if self.scenario.setup:
            agent.scheduler.call_later(0, self.scenario.setup, agent)
        agent.scheduler.call_later(1.0, self._next)
        agent.loop.run_until_idle(max_time=MAX_VIRTUAL_SECONDS)
        if not agent.loop.stopped:
            return [
                f"scenario did not finish within {MAX_VIRTUAL_SECONDS:.0f} virtual seconds (state {agent.atm.state})"
            ]
        return self.scenario.check(self)

    def _next(self, _customer=None) -> None:
        if self.pending:
            customer = Customer(self.agent, self.pending.pop(0), done=self._next)
            self.customers.append(customer)
            customer.arrive(delay=2.0)
            return
        if self.scenario.epilogue:
            self.scenario.epilogue(self.agent)
        self.agent.scheduler.call_later(self.scenario.linger, self.agent.loop.stop)

    # what the checks look at -------------------------------------------------
    def sessions(self) -> list[dict]:
        return [
            m["payload"]
            for m in self.agent.recorder.of_type("telemetry")
            if m["topic"].endswith("/event") and m["payload"].get("event") == "session"
        ]

    def telemetry(self, kind: str) -> list[dict]:
        return [m["payload"] for m in self.agent.recorder.of_type("telemetry") if m["topic"].endswith("/" + kind)]

    def prompts(self, pattern: str | None = None) -> list[dict]:
        return [
            p
            for p in self.agent.recorder.of_type("prompt")
            if p.get("action") == "play" and (pattern is None or p.get("pattern") == pattern)
        ]

    def videos(self, action: str) -> list[dict]:
        return [v for v in self.agent.recorder.of_type("video") if v["action"] == action]


def expect(condition: bool, problem: str, problems: list[str]) -> None:
    if not condition:
        problems.append(problem)


def outcomes(run: ScenarioRun) -> list[str]:
    return [s["outcome"] for s in run.sessions()]


def _completed(function: str, more: Callable[[ScenarioRun, list], None] | None = None):
    def check(run: ScenarioRun) -> list[str]:
        problems: list[str] = []
        expect(
            [(s["function"], s["outcome"]) for s in run.sessions()] == [(function, "completed")],
            f"expected one completed {function}, got {outcomes(run)}",
            problems,
        )
        if more:
            more(run, problems)
        return problems

    return check


def _withdrawal_more(run, problems):
    cas = run.agent.devices["dispenser"].cassette("A")
    expect(cas.count == 497, f"cassette A should hold 497 notes, holds {cas.count}", problems)
    expect(run.agent.devices["dispenser"].at_gate == 0, "cash left at the gate", problems)


def _deposit_more(run, problems):
    stored = run.agent.devices["acceptor"].stored
    expect(stored == {10_000: 2, 1_000: 3}, f"stored notes {stored}", problems)


def _transfer_more(run, problems):
    expect(
        any(p["prompt"] == "transfer_caution" for p in run.prompts()),
        "the transfer-fraud caution was not spoken",
        problems,
    )


def _check_forgotten_card(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    expect(outcomes(run) == ["card_retained"], f"outcomes {outcomes(run)}", problems)
    expect(len(run.prompts("forgotten_card")) >= 2, "forgotten-card prompt not repeated", problems)
    expect(len(run.agent.devices["card_reader"].captured) == 1, "card not captured", problems)
    return problems


def _check_forgotten_cash(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    dispenser = run.agent.devices["dispenser"]
    expect(len(run.prompts("forgotten_cash")) >= 2, "forgotten-cash prompt not repeated", problems)
    if dispenser.has_shutter:
        expect(outcomes(run) == ["cash_retracted"], f"outcomes {outcomes(run)}", problems)
        expect(dispenser.retracted == 3, f"retracted {dispenser.retracted} notes, expected 3", problems)
    else:  # no shutter: the notes stay in the throat, reported as left behind
        expect(outcomes(run) == ["cash_left"], f"outcomes {outcomes(run)}", problems)
        left = [e["notes"] for e in run.telemetry("event") if e.get("event") == "cash_left"]
        expect(left == [3] and dispenser.at_gate == 3, f"cash left {left}, at the gate {dispenser.at_gate}", problems)
    return problems


def _check_idle_help(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    expect(outcomes(run) == ["completed"], f"outcomes {outcomes(run)}", problems)
    expect(len(run.videos("started")) == 1, "help video did not start once", problems)
    expect(len(run.videos("stopped")) == 1, "help video did not stop on input", problems)
    return problems


def _jam(agent):
    agent.devices["dispenser"].inject("jam")


def _engineer_clears_jam(agent):
    agent.devices["dispenser"].remove("jam")
    agent.maintenance("dispenser")


def _check_jam(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    expect(outcomes(run) == ["dispense_failed", "completed"], f"outcomes {outcomes(run)}", problems)
    faults = run.telemetry("fault")
    states = [(f["code"], f["state"]) for f in faults if f["device"] == "dispenser"]
    expect(states == [("jam", "raised"), ("jam", "cleared")], f"dispenser faults {states}", problems)
    services = [s["service"] for s in run.telemetry("status")]
    expect("degraded" in services and services[-1] == "in_service", f"service states {services}", problems)
    return problems


def _check_cash_low(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    expect(outcomes(run) == ["completed"], f"outcomes {outcomes(run)}", problems)
    last = run.telemetry("cash")[-1]["cassettes"]
    a = next(c for c in last if c["id"] == "A")
    expect(a["status"] == "low" and a["count"] == 49, f"cassette A reported {a}", problems)
    return problems


def _check_forgotten_card_deposit(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    expect(outcomes(run) == ["card_retained"], f"outcomes {outcomes(run)}", problems)
    played = {p["prompt"] for p in run.prompts("forgotten_card_deposit")}
    expect(len(run.prompts("forgotten_card_deposit")) >= 2, "deposit pattern not repeated", problems)
    expect(not run.prompts("forgotten_card"), "the withdrawal pattern was used after a deposit", problems)
    expect("forgotten_card" not in played, f"played {sorted(played)}", problems)
    retained = [e for e in run.telemetry("event") if e.get("event") == "card_retained"]
    expect(len(retained) == 1 and retained[0]["function"] == "deposit", f"card_retained events {retained}", problems)
    return problems


def _check_customer_returns(run: ScenarioRun) -> list[str]:
    problems: list[str] = []
    expect(outcomes(run) == ["completed"], f"outcomes {outcomes(run)}", problems)
    expect(len(run.prompts("forgotten_card")) >= 1, "the prompt never started", problems)
    stops = [
        p
        for p in run.agent.recorder.of_type("prompt")
        if p.get("action") == "stop" and p.get("reason") == "customer_returned"
    ]
    expect(len(stops) == 1, f"prompt stops {stops}", problems)
    expect(len(run.agent.devices["card_reader"].captured) == 0, "the card was captured", problems)
    return problems


def _check_no_prompt(run: ScenarioRun, sessions: int) -> list[str]:
    problems: list[str] = []
    expect(len(outcomes(run)) == sessions, f"outcomes {outcomes(run)}", problems)
    forgotten = [p for p in run.prompts() if p.get("pattern")]
    expect(not forgotten, f"forgotten-item prompts played: {forgotten}", problems)
    return problems


def _check_passer_by(run: ScenarioRun) -> list[str]:
    problems = _check_no_prompt(run, 0)
    seen = [r for r in run.agent.recorder.of_type("device") if r.get("event") == "presence" and r.get("present")]
    expect(bool(seen), "the sensor never saw the passer who stopped", problems)
    return problems


def _check_sensor_glitch(run: ScenarioRun) -> list[str]:
    problems = _check_no_prompt(run, 1)
    expect(outcomes(run) == ["completed"], f"outcomes {outcomes(run)}", problems)
    faults = [(f["code"], f["state"]) for f in run.telemetry("fault") if f["device"] == "proximity"]
    expect(
        ("no_readings", "raised") in faults and faults[-1] == ("no_readings", "cleared"),
        f"sensor faults {faults}",
        problems,
    )
    return problems


def _sensor_fails(agent):
    agent.devices["proximity"].inject("failure")


def _sensor_recovers(agent):
    agent.devices["proximity"].remove("failure")


SCENARIOS = {
    s.name: s
    for s in [
        Scenario(
            "withdrawal",
            "A customer withdraws 30,000 yen and takes card and cash.",
            [Visit("withdrawal", amount=30_000)],
            _completed("withdrawal", _withdrawal_more),
        ),
        Scenario(
            "deposit", "A customer deposits 23,000 yen.", [Visit("deposit")], _completed("deposit", _deposit_more)
        ),
        Scenario("balance", "A customer checks the balance.", [Visit("balance")], _completed("balance")),
        Scenario(
            "transfer",
            "A transfer, with the fraud caution spoken and shown first.",
            [Visit("transfer", amount=50_000)],
            _completed("transfer", _transfer_more),
        ),
        Scenario(
            "forgotten-card",
            "After a balance inquiry the customer walks away without the card.",
            [Visit("balance", forget_card=True)],
            _check_forgotten_card,
        ),
        Scenario(
            "forgotten-cash",
            "The customer takes the card but walks away without the cash.",
            [Visit("withdrawal", forget_cash=True)],
            _check_forgotten_cash,
        ),
        Scenario(
            "idle-help",
            "A customer is stuck at the menu; the help video plays until a key is pressed.",
            [Visit("balance", idle_at="menu", idle_for=20.0)],
            _check_idle_help,
        ),
        Scenario(
            "dispenser-jam",
            "The dispenser jams mid-withdrawal; balance still works; an engineer clears it.",
            [Visit("withdrawal"), Visit("balance", card="domestic2")],
            _check_jam,
            setup=_jam,
            epilogue=_engineer_clears_jam,
        ),
        Scenario(
            "cash-low",
            "A withdrawal takes cassette A below its low threshold.",
            [Visit("withdrawal", amount=40_000)],
            _check_cash_low,
            config={
                "cassettes": [
                    {"id": "A", "denomination": 10_000, "count": 53, "low": 50},
                    {"id": "B", "denomination": 1_000, "count": 1000, "low": 100},
                ]
            },
        ),
        Scenario(
            "forgotten-card-deposit",
            "After a deposit the customer walks away without the card:"
            " the deposit pattern (chime, more often, more urgent) calls them back, then the card is retained.",
            [Visit("deposit", forget_card=True)],
            _check_forgotten_card_deposit,
        ),
        Scenario(
            "customer-returns",
            "The customer walks away from the card, hears the prompt, comes back and takes the card.",
            [Visit("balance", forget_card=True, come_back_after=6.0)],
            _check_customer_returns,
        ),
        Scenario(
            "passer-by",
            "Nobody uses the ATM; people walk past the distance sensor and one stops briefly.",
            [],
            _check_passer_by,
            config={"devices": {"proximity": "trace://passers-by"}},
            linger=40.0,
        ),
        Scenario(
            "sensor-glitch",
            "The presence sensor stops reporting during a session: no prompt, the"
            " ATM relies on its time-outs; the fault is raised and cleared.",
            [Visit("balance", forget_card=True, come_back_after=4.0)],
            _check_sensor_glitch,
            setup=_sensor_fails,
            epilogue=_sensor_recovers,
        ),
    ]
}
