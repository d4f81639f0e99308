"""The ``atm`` command: run, demo, status, and the field engineer's commands.

Each module of this package registers its subcommands (``register(sub)``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from typing import NoReturn

from agent.cli import cash, engineer, exercise, journal, run, streams, tools
from agent.cli.common import UsageError, withhold_card_numbers
from agent.config import ConfigError
from agent.errors import JournalError, PromptError, SigningKeyError
from agent.outbox import OutboxError
from agent.rig import RigError
from devices.registry import LocatorError

COMMANDS = (run, engineer, exercise, cash, journal, streams, tools)  # in the order `atm --help` lists them


class Parser(argparse.ArgumentParser):
    """argparse echoes what was typed wrong, which may be a card number: never in its errors."""

    def error(self, message: str) -> NoReturn:
        super().error(withhold_card_numbers(message))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="atm", description="ATM firmware simulator and edge agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except (
        ConfigError,
        JournalError,
        LocatorError,
        OutboxError,
        PromptError,
        RigError,
        SigningKeyError,
        UsageError,
    ) as exc:
        print(f"atm: error: {withhold_card_numbers(str(exc))}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"atm: error: journal: {withhold_card_numbers(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `atm demo | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"atm: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
