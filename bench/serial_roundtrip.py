"""Benchmark: one status command's round trip through the real serial drivers.

The unchanged drivers (``devices/lcdm.py``, ``devices/ict3q8.py``) talk to the
byte-exact emulators over a pseudo-terminal (backends ``lcdm2000+emu://`` and
``ict3q8+emu://``). One round trip is the whole handshake: command frame, the
device's ACK, the reply frame, the host's ACK. Each device is measured as fast
as the pty goes and with real baud-rate timing (``timing=1``: 9600 8N1 for
the LCDM-2000, 38400 8E1 for the ICT3Q8); for the timed mode the theoretical
wire time of one exchange is printed beside it.

Run alone: ``.venv/bin/python bench/serial_roundtrip.py``; ``bench/run.py``
calls :func:`run`. Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices import ict3q8_codec, lcdm_codec  # noqa: E402
from devices.base import DeviceContext  # noqa: E402
from devices.ict3q8 import Ict3q8CardReader  # noqa: E402
from devices.lcdm import Lcdm2000Dispenser  # noqa: E402
from devices.registry import create_device  # noqa: E402

FAST_ROUNDS = 2000  # as fast as the pty goes: well under 1 ms each
TIMED_ROUNDS = 150  # real baud timing: ~20 ms each for the LCDM-2000, ~6 ms for the ICT3Q8
WARM_UP = 5  # round trips before timing starts (first reads, caches)


def _lcdm_status(device) -> None:
    device._transact(lcdm_codec.encode_command(lcdm_codec.STATUS), lcdm_codec.STATUS)


def _ict3q8_status(device) -> None:
    device.command(ict3q8_codec.STATUS, 0x30)


# name -> (device kind, locator, one status round trip, wire bytes (command, reply))
DEVICES = {
    "LCDM-2000": (
        "dispenser",
        "lcdm2000+emu://",
        _lcdm_status,
        (len(lcdm_codec.encode_command(lcdm_codec.STATUS)), lcdm_codec.reply_length(lcdm_codec.STATUS)),
    ),
    "ICT3Q8": (
        "card_reader",
        "ict3q8+emu://",
        _ict3q8_status,
        (
            len(ict3q8_codec.encode_command(ict3q8_codec.STATUS, 0x30)),
            len(ict3q8_codec.encode_reply(ict3q8_codec.Reply(ict3q8_codec.STATUS, 0x30, True, "none"))),
        ),
    ),
}


def wire_time(settings, command_bytes: int, reply_bytes: int) -> dict:
    """Theoretical line time of one exchange: command + ACK + reply + host ACK."""
    bits = 1 + 8 + (settings.parity != "N") + 1  # start, data, parity, one stop bit
    nbytes = command_bytes + 1 + reply_bytes + 1
    return {"bytes": nbytes, "bits_per_byte": bits, "baud": settings.baud, "ms": 1000 * nbytes * bits / settings.baud}


def measure(kind: str, locator: str, round_trip, rounds: int) -> tuple[dict, object]:
    """Open the device, time ``rounds`` status round trips, close it.
    Returns the figures and the driver's line settings."""
    device = create_device(kind, locator, DeviceContext())
    assert isinstance(device, (Lcdm2000Dispenser, Ict3q8CardReader))  # the +emu drivers
    device.open()
    try:
        if not device.opened or device.faults:
            raise RuntimeError(f"{locator} did not open cleanly: {sorted(device.faults)}")
        for _ in range(WARM_UP):
            round_trip(device)
        samples = []
        start = time.perf_counter()
        for _ in range(rounds):
            t0 = time.perf_counter()
            round_trip(device)
            samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        settings = device.link.settings
    finally:
        device.close()
    samples_ms = [1000 * s for s in samples]
    return {
        "rounds": rounds,
        "median_ms": statistics.median(samples_ms),
        "p95_ms": statistics.quantiles(samples_ms, n=20)[-1],
        "per_s": rounds / elapsed,
    }, settings


def run(fast: int = FAST_ROUNDS, timed: int = TIMED_ROUNDS) -> dict:
    """{device: {"fast": figures, "timed": figures, "wire": theoretical line time}}."""
    results = {}
    for name, (kind, scheme, round_trip, (command_bytes, reply_bytes)) in DEVICES.items():
        quick, _ = measure(kind, scheme, round_trip, fast)
        slow, settings = measure(kind, scheme + "?timing=1", round_trip, timed)
        results[name] = {"fast": quick, "timed": slow, "wire": wire_time(settings, command_bytes, reply_bytes)}
    return results


def table(results: dict) -> list[str]:
    lines = [
        f"{'status round trip':<22}{'rounds':>7}{'median ms':>11}{'p95 ms':>9}{'trips/s':>9}"
        f"{'wire ms':>9}{'median/wire':>13}"
    ]
    for name, r in results.items():
        w = r["wire"]
        for mode in ("fast", "timed"):
            f = r[mode]
            row = f"{name + ' ' + mode:<22}{f['rounds']:>7}{f['median_ms']:>11.3f}{f['p95_ms']:>9.3f}{f['per_s']:>9.0f}"
            if mode == "timed":
                row += f"{w['ms']:>9.3f}{f['median_ms'] / w['ms']:>13.2f}"
            lines.append(row)
    lines.append(
        "wire = (command + ACK + reply + host ACK) bytes x bits per byte / baud: "
        + "; ".join(
            f"{n} {r['wire']['bytes']} B x {r['wire']['bits_per_byte']} / {r['wire']['baud']}"
            for n, r in results.items()
        )
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", type=int, default=FAST_ROUNDS, help="round trips without line timing")
    parser.add_argument("--timed", type=int, default=TIMED_ROUNDS, help="round trips with timing=1")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # CPU 0 takes more interrupts
    for line in table(run(args.fast, args.timed)):
        print(line)


if __name__ == "__main__":
    main()
