"""The journal: intents before commands, outcomes with counts, recovery after a crash."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from agent.journal import Journal
from devices.dispenser import Cassette
from fsm.clock import VirtualClock
from hw_mocks.customer import Visit
from tests.crash_child import CASSETTES
from tests.helpers import run_visits

INITIAL = [Cassette(**c) for c in CASSETTES]


def test_outcome_and_counts_commit_together(tmp_path):
    j = Journal(str(tmp_path / "j.db"), VirtualClock())
    j.save_cassettes([Cassette("A", 10_000, 10)])
    i = j.intent("s1", "dispense", plan={"A": 3})
    j.outcome(i, "s1", "dispense", cassettes=[Cassette("A", 10_000, 7)], ok=True, picked={"A": 3})
    j.close()
    again = Journal(str(tmp_path / "j.db"), VirtualClock())
    assert again.load_cassettes()[0].count == 7
    assert again.pending_intents() == []
    assert again.replay_counts([Cassette("A", 10_000, 10)]) == {"A": 7}


def test_a_row_with_text_utf8_cannot_hold_is_still_written(tmp_path):
    j = Journal(str(tmp_path / "j.db"), VirtualClock())
    j.event(None, "remote_command", command="out_of_service", reason="\ud800 and 日本")
    j.close()
    again = Journal(str(tmp_path / "j.db"), VirtualClock())
    assert [e.data["reason"] for e in again.entries() if e.name == "remote_command"] == ["\ud800 and 日本"]


def test_steps_are_written_with_the_next_intent(tmp_path):
    path = str(tmp_path / "j.db")
    j = Journal(path, VirtualClock())
    j.step("s1", "card_inserted")
    j.intent("s1", "eject_card")
    other = sqlite3.connect(path)
    names = [r[0] for r in other.execute("SELECT name FROM entries ORDER BY seq")]
    assert names == ["card_inserted", "eject_card"]


def test_recover_closes_interrupted_intents(tmp_path):
    j = Journal(str(tmp_path / "j.db"), VirtualClock())
    i = j.intent("s1", "dispense", plan={"A": 2})
    assert [e.seq for e in j.pending_intents()] == [i]
    recovered = j.recover()
    assert [e.name for e in recovered] == ["dispense"]
    assert j.pending_intents() == []
    rows = j.entries(kind="recovery")
    assert rows[0].data["reconcile"] == "required" and rows[0].intent == i


def test_every_session_step_and_money_movement_is_journalled():
    run = run_visits([Visit("withdrawal", amount=30_000)])
    j = run.agent.journal
    steps = [e.name for e in j.entries(kind="step")]
    for name in ("card_inserted", "card_read", "host_request", "chosen", "card_taken", "cash_taken"):
        assert name in steps
    intents = [e.name for e in j.entries(kind="intent")]
    assert intents == ["dispense", "eject_card", "present_cash"]
    assert j.pending_intents() == []
    assert [e.name for e in j.entries(kind="event")][-1] == "session_end"


def test_kill_9_at_random_points_loses_no_note(tmp_path):
    """Kill the agent mid-stream several times; the counts always add up."""
    path = str(tmp_path / "crash.db")
    rng = random.Random(1)
    before = 100_000
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-m", "tests.crash_child", path], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "running"
        time.sleep(rng.uniform(0.2, 0.8))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        j = Journal(path, VirtualClock())
        recorded = {c.id: c.count for c in j.load_cassettes()}
        assert recorded == j.replay_counts(INITIAL)
        assert recorded["A"] < before  # this run dispensed too
        before = recorded["A"]
        assert len(j.pending_intents()) <= 1
        j.recover()
        assert j.pending_intents() == []
        j.close()
