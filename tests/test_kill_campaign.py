"""The SIGKILL campaign (bench/campaign/kill.py): 200 kills of the agent, audited after each."""

import pytest

from bench.campaign.kill import run_campaign


@pytest.mark.slow
def test_200_random_kills_lose_no_note_and_leave_nothing_unrecovered(tmp_path):
    report = run_campaign(str(tmp_path / "journal.db"), kills=200, seed=11)
    assert report.mismatches == [], report.summary()
    assert report.restart_failures == [], report.summary()
    assert report.chain_failures == [], report.summary()
    assert report.kills == 200
    # The campaign reached what it attacks: start-ups, the dispense, interrupted sessions.
    assert report.during_startup > 0 and report.dispense_to_present > 0, report.summary()
    assert report.interrupted_sessions > 0 and report.sessions > 200, report.summary()


def test_a_few_kills_in_the_quick_suite(tmp_path):
    report = run_campaign(str(tmp_path / "journal.db"), kills=8, seed=3)
    assert (report.mismatches, report.restart_failures, report.chain_failures) == ([], [], []), report.summary()
