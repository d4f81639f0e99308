"""Benchmarks for the walking skeleton; prints a table of figures.

1. Complete withdrawal sessions per second on the virtual clock, one core
   (target >= 2,000/s): in-memory journal, and an on-disk journal side by side.
2. Start-up of `atm run` until it is ready, speech cache warm (target <= 2 s).
3. A status command's round trip through the real serial drivers to the
   emulators on a pty, fast and with real baud timing (bench/serial_roundtrip.py).
4. Chip card insertion to masked card data through pyscard -> pcscd -> vpcd,
   for a PSE card and a 61xx-chunked card (bench/chip_read.py).
5. Durable telemetry against local mosquitto brokers: throughput against raw
   paho, fault latency under load, backlog drain, failover (bench/telemetry.py).
6. "Customer left" to the first audio sample written to ALSA, cached prompts
   against pyttsx3 on demand (bench/voice_latency.py).
7. The help video on the real window under Xvfb: timeout to first frame, and
   sustained 720p playback, frames dropped and CPU (bench/video_playback.py).
8. The input fuzzers, one second per target: inputs/s and unexpected
   exceptions, which must be 0 (bench/fuzz.py; longer runs: bench/fuzz.py SECONDS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import config as configmod  # noqa: E402
from agent.output import Recorder  # noqa: E402
from agent.runtime import Agent  # noqa: E402
from bench import chip_read, fuzz, serial_roundtrip, telemetry, video_playback, voice_latency  # noqa: E402
from fsm.clock import VirtualClock  # noqa: E402
from hw_mocks.customer import Customer, Visit  # noqa: E402

BIG_CASSETTES = [
    {"id": "A", "denomination": 10_000, "count": 1_000_000, "low": 10},
    {"id": "B", "denomination": 1_000, "count": 1_000_000, "low": 10},
]


def withdrawals_per_second(sessions: int, journal: str) -> float:
    cfg = configmod.from_dict({"cassettes": BIG_CASSETTES})
    cfg.journal_path = journal
    clock = VirtualClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False))
    agent.warm_prompts()
    agent.start()
    left = [sessions]

    def next_customer(_=None):
        if left[0] == 0:
            agent.loop.stop()
            return
        left[0] -= 1
        Customer(agent, Visit("withdrawal", amount=23_000, think=1.0), done=next_customer).arrive(0.5)

    agent.scheduler.call_later(1.0, next_customer)
    start = time.perf_counter()
    agent.loop.run_until_idle()
    elapsed = time.perf_counter() - start
    done = agent.atm.sessions_done
    assert done == sessions, f"only {done} of {sessions} sessions ran"
    agent.close()
    return sessions / elapsed


def startup_seconds(runs: int) -> list[float]:
    atm = str(Path(sys.executable).parent / "atm")
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [atm, "run", "--no-customers", "--duration", "0.2"], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            if line.startswith("ready:"):
                out.append(time.perf_counter() - start)
                break
        proc.communicate(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--serial-fast", type=int, default=serial_roundtrip.FAST_ROUNDS)
    parser.add_argument("--serial-timed", type=int, default=serial_roundtrip.TIMED_ROUNDS)
    parser.add_argument("--chip-rounds", type=int, default=20)
    parser.add_argument("--fuzz-seconds", type=float, default=1.0, help="per fuzz target")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # CPU 0 takes more interrupts
    rate_mem = withdrawals_per_second(args.sessions, ":memory:")
    with tempfile.TemporaryDirectory() as tmp:
        rate_disk = withdrawals_per_second(max(200, args.sessions // 10), os.path.join(tmp, "j.db"))
    starts = startup_seconds(args.startup_runs)
    serial = serial_roundtrip.run(args.serial_fast, args.serial_timed)
    chip = chip_read.run(args.chip_rounds)
    mqtt = telemetry.run()
    voice = voice_latency.run()
    video = video_playback.run()
    fuzzed = fuzz.run(args.fuzz_seconds)
    print(f"withdrawal sessions/s, virtual clock, one core, journal in memory : {rate_mem:8.0f}  (target >= 2000)")
    print(f"withdrawal sessions/s, virtual clock, one core, journal on disk   : {rate_disk:8.0f}  (synchronous=FULL)")
    print(f"ratio disk/memory                                                 : {rate_disk / rate_mem:8.3f}")
    print(
        f"atm run start-up to ready, warm speech cache, median of {len(starts)}       : "
        f"{statistics.median(starts):8.3f} s (target <= 2 s; min {min(starts):.3f}, max {max(starts):.3f})"
    )
    for name, r in serial.items():
        wire = r["wire"]
        for mode, how in (("fast", "no line timing"), ("timed", f"{wire['baud']} baud (timing=1)")):
            f = r[mode]
            label = f"{name} status round trip via pty, {how}"
            print(
                f"{label:<66}: {f['median_ms']:8.3f} ms median (p95 {f['p95_ms']:.3f}; "
                f"{f['per_s']:.0f}/s; {f['rounds']} trips)"
            )
        label = f"{name} theoretical wire time, {wire['bytes']} bytes x {wire['bits_per_byte']} bits"
        print(f"{label:<66}: {wire['ms']:8.3f} ms (timed median/wire {r['timed']['median_ms'] / wire['ms']:.2f})")

    for name, r in chip.items():
        for what, how in (("insert_to_data", "insertion to masked data"), ("read_only", "EMV read, card known")):
            f = r[what]
            label = f"chip via pcscd/vpcd, {name}, {how}"
            print(
                f"{label:<66}: {f['median_ms']:8.1f} ms median (p95 {f['p95_ms']:.1f}; {f['rounds']} rounds)"
                + ("  (target <= 300 ms)" if what == "insert_to_data" and "PSE" in name else "")
            )
    telemetry.report(mqtt)
    voice_latency.report(voice)
    video_playback.report(video)
    fuzz.report(fuzzed)


if __name__ == "__main__":
    main()
