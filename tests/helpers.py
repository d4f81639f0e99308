"""Helpers to run the simulated ATM on the virtual clock inside a test."""

from __future__ import annotations

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from agent.scenarios import Scenario, ScenarioRun
from fsm.clock import VirtualClock
from hw_mocks.cards import CARDS

RAW_PANS = [card.pan for card in CARDS.values()]


def make_agent(overrides: dict | None = None, journal: str = ":memory:", workers: bool | None = None) -> Agent:
    cfg = configmod.from_dict(overrides or {})
    cfg.journal_path = journal
    clock = VirtualClock()
    return Agent(cfg, clock, Recorder(clock), workers=workers)


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
