"""The agent under a SIGKILL campaign: the whole agent (devices, state machine, journal,
the crowd of customers ``atm run`` has) on the virtual clock, as fast as it goes, until killed.

An engineer stands by: when withdrawals are blocked for a count, they count the
cassettes (the simulated dispenser knows) and replenish with those counts.

Usage: python -m bench.campaign.kill_child JOURNAL SEED
Prints ``ready`` once the start-up (and its recovery) is over.
"""

from __future__ import annotations

import sys

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from devices.dispenser import Cassette
from fsm.clock import VirtualClock
from hw_mocks.crowd import Crowd

CASSETTES = [
    {"id": "A", "denomination": 10_000, "count": 2_000, "low": 50},
    {"id": "B", "denomination": 1_000, "count": 2_000, "low": 50},
]
COUNT_EVERY = 30.0  # virtual seconds between the engineer's looks


def main(journal: str, seed: int) -> None:
    cfg = configmod.from_dict({"cassettes": CASSETTES})
    cfg.journal_path = journal
    clock = VirtualClock()
    recorder = Recorder(clock, keep=False)
    ready: list[bool] = []

    def on_record(record: dict) -> None:
        if not ready and record["type"] == "state" and record.get("previous") == "starting":
            ready.append(True)
            print("ready", flush=True)

    recorder.sinks.append(on_record)
    agent = Agent(cfg, clock, recorder)
    agent.warm_prompts()
    agent.start()
    dispenser = agent.devices.dispenser

    def engineer() -> None:
        if "count_unknown" in dispenser.faults:
            agent.replenish([Cassette(**c.__dict__) for c in dispenser.cassettes])
        agent.scheduler.call_later(COUNT_EVERY, engineer)

    agent.scheduler.call_later(COUNT_EVERY, engineer)
    Crowd(agent, cfg, seed=seed).start(first_within=1.0)
    agent.loop.run_until_idle()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
