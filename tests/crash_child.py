"""Child process for the crash test: withdrawals back to back on the virtual
clock, journalled to the file given, until it is killed. A kill mid-dispense
blocks withdrawals at the next start until a counted replenishment: an engineer
then counts the cassettes (the simulated dispenser knows) and replenishes."""

import sys

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from devices.dispenser import Cassette
from fsm.clock import VirtualClock
from hw_mocks.customer import Customer, Visit

CASSETTES = [
    {"id": "A", "denomination": 10_000, "count": 100_000, "low": 10},
    {"id": "B", "denomination": 1_000, "count": 100_000, "low": 10},
]


def main(journal: str) -> None:
    cfg = configmod.from_dict({"cassettes": CASSETTES})
    cfg.journal_path = journal
    clock = VirtualClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False))
    agent.start()
    dispenser = agent.devices.dispenser

    def engineer() -> None:
        if "count_unknown" in dispenser.faults:
            agent.replenish([Cassette(**c.__dict__) for c in dispenser.cassettes])

    agent.scheduler.call_later(0.5, engineer)  # after the start-up's recovery

    def next_customer(_=None):
        Customer(agent, Visit("withdrawal", amount=23_000, think=1.0), done=next_customer).arrive(0.5)

    agent.scheduler.call_later(1.0, next_customer)
    print("running", flush=True)
    agent.loop.run_until_idle()


if __name__ == "__main__":
    main(sys.argv[1])
