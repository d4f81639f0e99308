"""Benchmark: what idle polling costs, as a share of one CPU core.

The agent runs idle on the shipped simulated rig (``rigs/sim.toml``: the real ICT3Q8 and
LCDM-2000 drivers on their emulators over ptys, the other devices simulated), on the real
clock, with no customers, for ``--seconds`` (60). It runs twice, side by side in one run,
each in a child process: with ``timeouts.status_poll`` at its default (5 s) and at 3600 s
(no poll within the run). Each child reports its own CPU time (every thread: the loop,
the device queues, the emulators) over the wall time. The difference is polling's cost.

    .venv/bin/python bench/polling_cpu.py [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_POLL = 5.0
NO_POLL = 3600.0


def child(poll: float, seconds: float) -> dict:
    """Run the agent idle in this process; CPU seconds per wall second, and the polls made."""
    from agent import config as configmod
    from agent.output import Recorder
    from agent.runtime import Agent
    from fsm.clock import RealClock

    cfg = configmod.from_dict({"rig": {"file": "sim"}, "timeouts": {"status_poll": poll}})
    clock = RealClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False))
    agent.warm_prompts()
    agent.start()
    agent.start_thread()
    time.sleep(2.0)  # start-up and its self-tests are not what is measured
    start_wall, start_cpu = time.monotonic(), _cpu()
    time.sleep(seconds)
    wall, cpu = time.monotonic() - start_wall, _cpu() - start_cpu
    state = str(agent.atm.state)
    agent.stop()
    return {"status_poll_s": poll, "wall_s": round(wall, 2), "cpu_s": round(cpu, 3), "state": state}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(poll: float, seconds: float) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(poll), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + 120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child (status_poll {poll}) failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["core_share_pct"] = round(100 * result["cpu_s"] / result["wall_s"], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.seconds)))
        return 0
    polled, quiet = run(DEFAULT_POLL, args.seconds), run(NO_POLL, args.seconds)
    report = {
        "polled": polled,
        "not_polled": quiet,
        "added_core_share_pct": round(polled["core_share_pct"] - quiet["core_share_pct"], 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for name in ("polled", "not_polled"):
            r = report[name]
            print(
                f"{name:>11}: status_poll {r['status_poll_s']:g} s, {r['cpu_s']} s CPU in {r['wall_s']} s"
                f" = {r['core_share_pct']}% of a core ({r['state']})"
            )
        print(f"idle polling adds {report['added_core_share_pct']}% of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
