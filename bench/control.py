"""Benchmark: the control API against a running `atm run`.

1. `atm status --json` end to end, as an engineer types it (Python start-up included):
   p50 and p99 over ``--runs`` (target p99 <= 150 ms), beside the CLI's start-up alone
   (`python -c "import agent.cli"`), to show its share.
2. The control API's own round trip: one `status` request and its answer on an open
   connection, p50 and p99 over ``--calls`` (target p99 <= 5 ms).

    .venv/bin/python bench/control.py [--runs 50] [--calls 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.control.protocol import request_line  # noqa: E402

ATM = str(Path(sys.executable).with_name("atm"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(ms: list[float]) -> dict:
    return {"p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2), "n": len(ms)}


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def round_trips(path: str, calls: int) -> list[float]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    times, buf = [], b""
    try:
        for n in range(calls):
            start = time.perf_counter()
            sock.sendall(request_line(n, "status", {}))
            while b"\n" not in buf:
                buf += sock.recv(65536)
            _, buf = buf.split(b"\n", 1)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        sock.close()
    return times


def run(runs: int, calls: int) -> dict:
    folder = tempfile.mkdtemp(prefix="bench-control-")
    config = Path(folder) / "atm.toml"
    config.write_text(f'[journal]\npath = "{folder}/j.db"\n')
    agent = subprocess.Popen(
        [ATM, "run", "--config", str(config), "--no-customers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert agent.stdout is not None
        path = ""
        for line in agent.stdout:
            if line.startswith("control: "):
                path = line.split()[1]
            if line.startswith("ready:"):
                break
        assert path, "the agent printed no control socket"
        startup = timed([sys.executable, "-c", "import agent.cli"], runs)
        status = timed([ATM, "status", "--json", "--config", str(config)], runs)
        trips = round_trips(path, calls)
    finally:
        agent.terminate()
        agent.communicate(timeout=20)
    return {
        "status_cli": summary(status),
        "cli_import": summary(startup),
        "startup_share_pct": round(100 * percentile(startup, 50) / percentile(status, 50), 1),
        "round_trip": summary(trips),
        "pid": os.getpid(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.runs, args.calls)
    if args.json:
        print(json.dumps(result))
    else:
        s, i, r = result["status_cli"], result["cli_import"], result["round_trip"]
        print(f"atm status --json, end to end: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms ({s['n']} runs)")
        print(
            f"  of which the CLI's Python start-up and imports: p50 {i['p50_ms']} ms ({result['startup_share_pct']}%)"
        )
        print(f"control API round trip (status): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms ({r['n']} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
