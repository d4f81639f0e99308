"""Silent-site failover and the two-broker campaign, against real local mosquitto brokers.

1. Silent-site failover: the primary SIGSTOPped (it keeps its connections and still
   accepts TCP), a fault raised at once; the time from the SIGSTOP to the fault's PUBACK
   from the secondary, with the default ``telemetry.ack_deadline`` (target: <= 3 s).
2. The two-broker campaign (bench/campaign/brokers.py) with the full 60 s outage: lost ids,
   duplicates and seq gaps per boot, and how long each move took.

    .venv/bin/python bench/failover.py [--trials 5] [--outage 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import SECTIONS  # noqa: E402
from bench.campaign.brokers import Campaign  # noqa: E402
from bench.telemetry import make_link  # noqa: E402
from hw_mocks.servers.broker import Mosquitto  # noqa: E402
from hw_mocks.servers.wait import wait_for  # noqa: E402

ACK_DEADLINE = SECTIONS["telemetry"]["ack_deadline"].default


def silent_failover(directory: str, trials: int) -> list[float]:
    """Seconds from SIGSTOP of the primary to the first PUBACK on the secondary, per trial."""
    times = []
    for _ in range(trials):
        primary, secondary = Mosquitto().start(), Mosquitto().start()
        link, tel = make_link([primary.url, secondary.url], directory, failback_after=0, ack_deadline=ACK_DEADLINE)
        try:
            link.start()
            assert link.wait_connected(5)
            tel.fault({"code": "before"})
            assert link.flush(5)
            acked = link.acked
            primary.pause()
            start = time.perf_counter()
            tel.fault({"code": "after-sigstop"})

            def on_secondary(link=link, port=secondary.port, acked=acked) -> bool:
                return link.acked > acked and link.current is not None and link.current.port == port

            wait_for(on_secondary, 30, 0.002, "the fault acknowledged by the secondary")
            times.append(time.perf_counter() - start)
        finally:
            link.stop(timeout=1)
            primary.close()
            secondary.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds both brokers stay down (campaign)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        times = silent_failover(directory, args.trials)
        print(
            f"silent-site failover, SIGSTOP -> secondary PUBACK : {statistics.median(times):.3f} s median,"
            f" max {max(times):.3f} s over {len(times)} trials (ack_deadline {ACK_DEADLINE:g} s; target <= 3 s)"
        )
        print("  trials: " + ", ".join(f"{t:.3f}" for t in times))
        report = Campaign(Path(directory), outage=args.outage).run()
    print(f"two-broker campaign ({args.outage:g} s outage): {report.lost} lost, {len(report.boots)} boots")
    for line in report.lines():
        print("  " + line)


if __name__ == "__main__":
    main()
