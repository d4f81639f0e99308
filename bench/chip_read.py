"""Card insertion to masked card data, through pyscard → pcscd → vpcd → a virtual card.

For a PSE card (domestic_debit) and a card that answers in 16-byte 61xx
chunks (chunked_61xx): the time from the virtual card's insertion (connected
to vpcd) to ``read_card`` returning the masked card data (target for the PSE
card: <= 300 ms), with each insertion at a random moment, and, separately, the EMV read alone on a card that pcscd
already knows is there. The difference is pcscd noticing the card: it asks
vpcd every 400 ms.

    .venv/bin/python bench/chip_read.py [--rounds N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.base import DeviceContext  # noqa: E402
from devices.chip import ChipReader  # noqa: E402
from devices.registry import create_device  # noqa: E402
from hw_mocks import pcscd  # noqa: E402
from hw_mocks.cards import CARDS  # noqa: E402
from hw_mocks.pcsc_rig import profile_for  # noqa: E402
from hw_mocks.virtual_card import VirtualCard  # noqa: E402

KEY = b"bench-key-0123456789"
POLL = 0.4  # pcscd's presence poll for a reader without its own events (PCSCLITE_STATUS_POLL_RATE)
CASES = {"PSE card (domestic_debit)": "domestic", "61xx-chunked card (chunked_61xx)": "chunked"}


def _ms(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
        "rounds": len(ordered),
    }


def measure(rounds: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    daemon = pcscd.acquire()
    chip = create_device("chip", f"pcsc://{pcscd.READER}?timeout=3", DeviceContext())
    assert isinstance(chip, ChipReader)
    chip.open()
    results = {}
    try:
        for label, card_name in CASES.items():
            profile = profile_for(CARDS[card_name])
            insert_to_data, read_only = [], []
            for _ in range(rounds):
                pcscd.settle()
                # A customer's card arrives at any moment of pcscd's 400 ms presence poll;
                # without this the rounds would all land at the same phase of it.
                time.sleep(rng.uniform(0, POLL))
                card = VirtualCard(profile, port=daemon.port)
                card.insert()
                start = time.perf_counter()
                data = chip.read_card(KEY)
                insert_to_data.append(time.perf_counter() - start)
                start = time.perf_counter()
                again = chip.read_card(KEY)  # the card is known to pcscd now
                read_only.append(time.perf_counter() - start)
                assert data.masked == again.masked == CARDS[card_name].pan[:6] + "******" + CARDS[card_name].pan[-4:]
                card.remove()
                pcscd.card_removed()
            results[label] = {"insert_to_data": _ms(insert_to_data), "read_only": _ms(read_only)}
    finally:
        chip.close()
        pcscd.release()
    return results


def run(rounds: int = 15) -> dict:
    return measure(rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for label, r in run(args.rounds).items():
        for what, f in r.items():
            print(
                f"{label:<34} {what:<15} median {f['median_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms"
                f"  (min {f['min_ms']:.1f}, max {f['max_ms']:.1f}, {f['rounds']} rounds)"
            )


if __name__ == "__main__":
    main()
