"""Helpers to run the simulated ATM on the virtual clock inside a test."""

from __future__ import annotations

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from agent.scenarios import Scenario, ScenarioRun
from fsm.clock import RealClock, VirtualClock
from hw_mocks.cards import CARDS
from hw_mocks.servers.wait import wait_for

RAW_PANS = [card.pan for card in CARDS.values()]


def make_agent(overrides: dict | None = None, journal: str = ":memory:", workers: bool | None = None) -> Agent:
    cfg = configmod.from_dict(overrides or {})
    cfg.journal_path = journal
    clock = VirtualClock()
    return Agent(cfg, clock, Recorder(clock), workers=workers)


def live_agent(overrides: dict, broker_url: str) -> Agent:
    """An agent on the real clock, its loop on its own thread, connected to ``broker_url``
    and idle (the caller stops it)."""
    cfg = configmod.from_dict(overrides)
    clock = RealClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False), brokers=[broker_url])
    agent.warm_prompts()
    agent.start()
    agent.start_thread()
    assert agent.publisher.wait_connected(5), "the agent did not connect"
    wait_for(lambda: agent.atm.state == "idle", message="the ATM to be idle")
    return agent


def run_visits(visits, overrides=None, setup=None, epilogue=None, journal=":memory:", workers=None):
    """Play the visits; return the finished ScenarioRun (its problems list is empty).
    ``workers=True`` runs the device commands on their worker threads, as on the real clock."""
    agent = make_agent(overrides, journal, workers)
    agent.warm_prompts()
    run = ScenarioRun(Scenario("test", "", list(visits), check=lambda r: [], setup=setup, epilogue=epilogue), agent)
    problems = run.run()
    assert problems == [], problems
    return run


class Events(list):
    """A device event callback that keeps (name, data) pairs."""

    def __call__(self, kind, name, data):
        self.append((name, data))

    def names(self) -> list[str]:
        return [n for n, _ in self]


def advance(ctx, seconds: float = 1.0) -> None:
    """Let a driver's scheduled status polls run, on the context's virtual clock."""
    clock = ctx.scheduler.clock
    clock.advance_to(clock.now() + seconds)
    ctx.scheduler.run_due()
