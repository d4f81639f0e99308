"""What every ``atm`` command shares: printing, errors, the config, the running agent's socket."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import threading
from pathlib import Path

from agent import config as configmod
from agent.config import ConfigError
from agent.output import human_line, rounded, to_json

RIG_HELP = (
    "a shipped rig (sim, pcsc, pi-kiosk) or a rig file naming each device's backend (default: the config's, else sim)"
)
JSON_TYPES = ("state", "device", "card", "prompt", "video", "telemetry")


_print_lock = threading.Lock()


def say(text: str, stream=None) -> None:
    """Print one whole line; the loop thread and the main thread both print."""
    stream = stream or sys.stdout
    with _print_lock:
        stream.write(text + "\n")
        stream.flush()


CARD_NUMBER_LIKE = re.compile(r"\d{12,}")


def withhold_card_numbers(text: str) -> str:
    """``text`` with every run of 12 or more digits replaced: an error message may echo what
    was typed, and it may be a card number (say, ``--from`` given one by mistake)."""
    return CARD_NUMBER_LIKE.sub("[digits withheld]", text)


class UsageError(Exception):
    """A bad command line; printed as one line."""


class AgentRefused(UsageError):
    """The running agent refused the command; ``error`` is its error code."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


def load_config(path: str | None, overrides: dict | None = None, rig: str | None = None) -> configmod.Config:
    """The config file (or the defaults) with a scenario's overrides on top.

    ``rig`` replaces the config's rig; with neither a config nor a rig the
    shipped rig ``sim`` (serial drivers on emulators) is used.
    """
    from agent.rig import DEFAULT_RIG, read_toml

    raw: dict = {}
    base_dir = None
    if path is not None:
        base = configmod.load(path, rig)  # validates and names the file in errors
        raw = read_toml(Path(path), ConfigError, "config file")
        source, base_dir = base.source, Path(path).parent
    else:
        source, rig = "<defaults>", rig or str(DEFAULT_RIG)
    raw.update(overrides or {})
    return configmod.from_dict(raw, source, base_dir, rig)


def make_agent(cfg, clock, recorder, brokers: list[str] | None):
    from agent.runtime import Agent

    try:
        return Agent(cfg, clock, recorder, brokers=brokers)
    except ValueError as exc:  # a malformed broker URL
        if isinstance(exc, ConfigError):
            raise
        raise UsageError(str(exc)) from None


def printer(as_json: bool, wall: bool = False):
    """A recorder sink printing each record; a closed pipe stops the printing, not the ATM."""
    closed = False

    def sink(record: dict) -> None:
        nonlocal closed
        if closed or (as_json and record["type"] not in JSON_TYPES):
            return
        try:
            say(to_json(rounded(record)) if as_json else human_line(record, wall))
        except BrokenPipeError:
            closed = True
        except OSError as exc:  # e.g. a full disk behind a redirect
            closed = True
            say(f"atm: output stopped: {exc.strerror or exc}", sys.stderr)

    return sink


def journal_of(cfg: configmod.Config, given: str | None) -> str:
    """The journal ``atm run`` of this config uses: ``--journal FILE``, else the config's
    ``journal.path``, else the default file (named, never made here)."""
    return given or cfg.journal_path or str(configmod.default_journal_path(cfg.atm_id))


def control_path(cfg: configmod.Config, journal: str | None = None) -> str:
    """The socket a running ``atm run`` of this config (and ``--journal``) serves."""
    from agent.control import control_socket_path

    return control_socket_path(cfg.control["socket"], journal_of(cfg, journal))


LOOKS = frozenset({"status", "cash", "trace", "logs"})  # commands that change nothing


def ask_agent(
    cfg: configmod.Config, method: str, params: dict | None = None, journal: str | None = None, timeout: float = 5.0
) -> dict | None:
    """The running agent's answer, or None when no agent runs for this config (no socket,
    or a stale one). A refusal, or an agent that is there and does not answer, is a usage
    error (one line, exit 2): never a reason to open its devices behind its back."""
    from agent.control.client import ControlRefused, ControlSilent, ControlUnavailable, call

    path = control_path(cfg, journal)
    if not path:
        return None
    try:
        return call(path, method, params, timeout=timeout)
    except ControlUnavailable:
        return None
    except ControlSilent as exc:
        if method in LOOKS:
            raise UsageError(str(exc)) from None
        # it may have taken the command and not finished it yet
        raise UsageError(f"{method}: {exc}; it may still be carrying it out (atm status, atm logs)") from None
    except ControlRefused as exc:
        raise AgentRefused(f"{method}: {exc} ({exc.error})", exc.error) from None


def journal_to_read(args) -> str:
    """``--journal FILE``, else the config's ``journal.path``, else the file ``atm run``
    keeps by default (never made here: a journal that is not there is refused)."""
    if args.journal:
        return args.journal  # no config needed (nor read)
    return journal_of(load_config(args.config), None)


def print_report(report: dict, as_json: bool, text) -> None:
    print(json.dumps(report, ensure_ascii=False, indent=2) if as_json else text(report))


def engineer_name(name: str | None) -> str:
    """The engineer named, else the Unix user."""
    if name is None:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no user name in the environment nor the password file
            name = f"uid {os.getuid()}"
    if not 1 <= len(name) <= 64 or not name.isprintable() or name != name.strip():
        raise UsageError(f"--engineer: {name!r} is not a name (1 to 64 printable characters)")
    return name


def duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 366 * 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 < s <= 1 year)")
    return value
