"""``python -m hw_mocks.virtual_card``: insert one virtual card by hand."""

from __future__ import annotations

import argparse
import logging

from hw_mocks.virtual_card.connection import DEFAULT_HOST, DEFAULT_PORT, VirtualCard
from hw_mocks.virtual_card.profiles import profile_names


def main(argv: list[str] | None = None) -> int:
    """``python -m hw_mocks.virtual_card PROFILE``: insert a card until vpcd
    drops it or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m hw_mocks.virtual_card", description="Insert a virtual EMV chip card into vpcd."
    )
    parser.add_argument("profile", help=f"profile name ({', '.join(profile_names())}) or TOML path")
    parser.add_argument("--host", default=DEFAULT_HOST, help="vpcd host (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="vpcd port (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        card = VirtualCard(args.profile, args.host, args.port)
        card.insert()
    except (ValueError, OSError) as e:
        print(f"error: {e}")
        return 1
    try:
        while not card.wait_closed(0.5):
            pass
    except KeyboardInterrupt:
        card.remove()
    print(f"card out: {card.close_reason}")
    return 0
