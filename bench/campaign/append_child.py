"""A journal writer under a SIGKILL campaign: only the journal, appending as the agent does
(steps and events buffered, an intent and its outcome with the cassette counts, a checkpoint
every few rows), as fast as it goes, until killed. Starts as the agent does: recovers the
interrupted intents first.

Usage: python -m bench.campaign.append_child JOURNAL SEED
Prints ``ready`` once the start-up (and its recovery) is over.
"""

from __future__ import annotations

import random
import sys

from agent.journal import Journal
from devices.dispenser import Cassette
from fsm.clock import VirtualClock

CHECKPOINT_ROWS = 7  # small: kills land in checkpoints too


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    clock = VirtualClock()
    journal = Journal(path, clock, checkpoint_rows=CHECKPOINT_ROWS, checkpoint_seconds=5.0)
    journal.recover()
    cassettes = journal.load_cassettes() or [Cassette("A", 10_000, 1_000_000)]
    print("ready", flush=True)
    n = journal.last_session_number("kill") + 1
    while True:
        session = f"kill-{n:06d}"
        journal.step(session, "card_inserted", masked="411111******1111")
        for i in range(rng.randrange(1, 6)):
            journal.step(session, "chosen", option=i, text="日本語" * rng.randrange(3))
        intent = journal.intent(session, "dispense", plan={"A": 1})
        cassettes = [Cassette("A", 10_000, cassettes[0].count - 1)]
        journal.outcome(intent, session, "dispense", cassettes=cassettes, ok=True, picked={"A": 1})
        journal.event(session, "session_end", outcome="completed")
        journal.flush()
        clock.advance(rng.uniform(0.1, 2.0))
        n += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
