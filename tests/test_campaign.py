"""The two-broker campaign against the real `atm run` (bench/campaign/brokers.py): primary
kill -9, primary SIGSTOP, agent kill -9 and restart, an outage of both sites, then the
drain. Nothing may be lost: per boot every seq up to the highest one arrives at one
centre or the other; duplicates are allowed (at least once) and counted.

The outage is shortened here (``CAMPAIGN_OUTAGE``, 5 s); bench/failover.py runs 60 s.
"""

import os

import pytest

from bench.campaign.brokers import Campaign

OUTAGE = float(os.environ.get("CAMPAIGN_OUTAGE", "5"))


@pytest.mark.slow
@pytest.mark.mosquitto
def test_two_broker_campaign_loses_nothing_and_leaves_no_seq_gap(tmp_path):
    report = Campaign(tmp_path, outage=OUTAGE).run()
    print("\n".join(report.lines()))
    assert [b.boot for b in report.boots] == [1, 2], report.lines()
    for boot in report.boots:
        assert boot.missing == [], f"boot {boot.boot} lost seq {boot.missing[:20]}"
        assert boot.unique > 20  # the campaign did send something on every phase
    assert report.timings["primary SIGSTOP: on the secondary"] < 10
