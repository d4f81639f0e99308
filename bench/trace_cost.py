"""Benchmark: what the always-on serial trace (devices/serial_trace.py) costs.

1. The trace alone: one dispense exchange's frames (the command, the ACK, the reply
   read as SOH and then the rest, the host's ACK) recorded, decoded and kept, in µs.
2. The dispense path: the unchanged LCDM-2000 driver dispensing one note from the
   emulator on a pty (as fast as the pty goes), with the trace on, with a follower
   attached as the control socket attaches one, and off; in alternating blocks.
3. Memory: what a full ring of 1000 status-poll frames holds (tracemalloc).

Run alone: ``.venv/bin/python bench/trace_cost.py``. Figures only: nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.control.streams import Follower  # noqa: E402
from devices import lcdm_codec as codec  # noqa: E402
from devices.base import DeviceContext  # noqa: E402
from devices.dispenser import Cassette  # noqa: E402
from devices.lcdm import Lcdm2000Dispenser  # noqa: E402
from devices.registry import create_device  # noqa: E402
from devices.serial_trace import FrameTrace  # noqa: E402
from hw_mocks.serial_rigs import EmulatedLcdm2000  # noqa: E402

BLOCK = 100  # dispenses per block
BLOCKS = 6  # blocks per mode, interleaved


def _framing():
    device = create_device("dispenser", "lcdm2000:///dev/null", DeviceContext())
    assert isinstance(device, Lcdm2000Dispenser) and device.link.frames is not None
    return device.link.frames.framing


def trace_alone(rounds: int) -> float:
    """µs to keep one dispense exchange (four frames, the reply read in two pieces)."""
    trace = FrameTrace(_framing())
    command = codec.dispense_command({"upper": 1})
    reply = codec.encode_reply(
        codec.Reply(command[3], codec.GOOD, counts=(codec.CassetteCount("upper", 1, 1, 0, False),))
    )
    start = time.perf_counter()
    for _ in range(rounds):
        trace.sent(command)
        trace.received(b"\x06")
        trace.received(reply[:1])
        trace.received(reply[1:])
        trace.sent(b"\x06")
    return (time.perf_counter() - start) / rounds * 1e6


def dispense_path() -> dict[str, float]:
    """Median ms of one dispense through the driver, per mode."""
    device = create_device("dispenser", "lcdm2000+emu://", DeviceContext())
    assert isinstance(device, EmulatedLcdm2000)
    big = 10 * BLOCK * BLOCKS
    device.load_cassettes([Cassette("A", 10_000, big, low=1), Cassette("B", 1_000, big, low=1)])
    device.open()
    frames = device.link.frames
    assert frames is not None
    follower = Follower("trace", lambda: None)
    times: dict[str, list[float]] = {"trace on": [], "trace on, one follower": [], "trace off": []}
    try:
        for _ in range(BLOCKS):
            for mode in times:
                device.link.frames = None if mode == "trace off" else frames
                unfollow = frames.ring.follow(0, follower)[1] if "follower" in mode else None
                for _ in range(BLOCK):
                    start = time.perf_counter()
                    device.dispense({"A": 1})
                    times[mode].append(time.perf_counter() - start)
                    device.customer_take_cash()
                    follower.take(10_000)
                if unfollow is not None:
                    unfollow()
    finally:
        device.close()
    return {mode: statistics.median(t) * 1e3 for mode, t in times.items()}


def ring_memory() -> float:
    """KiB a ring of 1000 status-poll frames holds."""
    trace = FrameTrace(_framing(), capacity=1000)
    command = codec.encode_command(codec.STATUS)
    reply = codec.encode_reply(codec.Reply(codec.STATUS, codec.GOOD, sensors=frozenset({"upper_present"})))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(250):  # four frames a poll
        trace.sent(command)
        trace.received(b"\x06" + reply)
        trace.sent(b"\x06")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename")) / 1024


def run(rounds: int = 20_000) -> list[tuple[str, str]]:
    rows = [("trace alone, one dispense exchange (4 frames)", f"{trace_alone(rounds):.1f} µs")]
    for mode, ms in dispense_path().items():
        rows.append((f"dispense of one note on the emulator, {mode}", f"{ms:.3f} ms (median)"))
    rows.append(("a full ring (1000 status-poll frames)", f"{ring_memory():.0f} KiB"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="exchanges for the trace-alone figure")
    args = parser.parse_args()
    for name, value in run(args.rounds):
        print(f"{name:<60} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
