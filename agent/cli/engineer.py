"""The field engineer's ``atm status``, ``atm service``, ``atm faults`` and ``atm counters``."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from agent import config as configmod
from agent.cli.common import (
    RIG_HELP,
    AgentRefused,
    UsageError,
    ask_agent,
    control_path,
    engineer_name,
    journal_of,
    journal_to_read,
    load_config,
    print_report,
)
from agent.errors import JournalBusy
from fsm.clock import VirtualClock


# -- atm status ----------------------------------------------------------------
def status_report(cfg: configmod.Config, journal: str) -> dict:
    """Open each device, self-test it and report, without starting sessions. The journal is
    only read (its cassette counts), never opened: an ``atm run`` starting meanwhile must
    get it, and a look changes nothing."""
    from agent.runtime import Agent, versions

    kept = _kept_cassettes(journal)
    cfg.journal_path = ""  # in memory
    agent = Agent(cfg, VirtualClock())
    agent.open(persist=False)
    try:
        dispenser = agent.devices.dispenser
        if kept:
            dispenser.load_cassettes([replace(c, **kept[c.id]) if c.id in kept else c for c in dispenser.cassettes])
        for device in agent.devices.values():
            device.self_test()
        agent.atm.service.refresh(announce=False)
        cassettes = agent.devices.dispenser.cassettes
        return {
            "atm_id": cfg.atm_id,
            "rig": cfg.rig or "(config devices)",
            "service": agent.atm.service.service,
            "functions": agent.atm.service.functions,
            "devices": {k: d.describe() for k, d in agent.devices.items()},
            "cassettes": [
                {**level, "low": c.low, "empty": c.empty} for level, c in zip(agent.atm.cash_levels(), cassettes)
            ],
            "versions": versions(agent.devices),
            "journal": journal,
            "counts_from": "journal" if kept else "config",
        }
    finally:
        agent.close()


def _kept_cassettes(journal: str) -> dict[str, dict]:
    """{cassette: its count and denomination} as the journal keeps them; {} without one."""
    from agent.journal_reader import open_readonly, read_cassettes

    if not Path(journal).is_file():
        return {}
    db = open_readonly(journal)
    try:
        return {c["id"]: {"count": c["count"], "denomination": c["denomination"]} for c in read_cassettes(db)}
    finally:
        db.close()


def cmd_status(args) -> int:
    from agent.status_view import status_text

    cfg = load_config(args.config, rig=args.rig)
    live = ask_agent(cfg, "status", journal=args.journal)
    if live is not None:
        report = {"agent": "running", **live}
    else:
        report = {"agent": "not running", **status_report(cfg, journal_of(cfg, args.journal))}
    print_report(report, args.json, status_text)
    return 0


def cmd_service(args) -> int:
    """``atm service out|in``: through the running agent; at once when idle, else after the session."""
    cfg = load_config(args.config, rig=args.rig)
    params: dict = {"engineer": engineer_name(args.engineer)} if args.engineer is not None else {}
    if args.direction == "out":
        method, params = "out_of_service", {**params, "reason": args.reason or ""}
    else:
        method = "in_service"
    answer = ask_agent(cfg, method, params, journal=args.journal)
    if answer is None:
        raise UsageError(f"no agent is running for ATM {cfg.atm_id} (control socket {control_path(cfg, args.journal)})")
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
    else:
        when = "now" if answer.get("effective") == "now" else "when the customer's session ends"
        print(f"ATM {cfg.atm_id}: {'out of' if args.direction == 'out' else 'back in'} service {when}")
    return 0


# -- atm faults, atm counters --------------------------------------------------
def cmd_faults(args) -> int:
    from agent.fault_history import parse_since
    from agent.service import faults_report, faults_text

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    print_report(faults_report(journal_to_read(args), args.active, since), args.json, faults_text)
    return 0


RESET_TRIES = 3  # reads of the journal a reset may take while the agent writes to it


def cmd_counters(args) -> int:
    from agent.service import counters_report, counters_text, reset_counters, reset_request, reset_text

    if args.action is None:
        if args.engineer is not None:
            raise UsageError("--engineer goes with `atm counters reset`")
        print_report(counters_report(journal_to_read(args)), args.json, counters_text)
        return 0
    engineer = engineer_name(args.engineer)
    path = journal_to_read(args)
    cfg = load_config(args.config)
    for _ in range(RESET_TRIES):
        request = reset_request(path)  # read here: the agent's loop never reads a whole journal
        try:
            answer = ask_agent(cfg, "counters_reset", {**request, "engineer": engineer}, journal=args.journal)
        except AgentRefused as exc:
            if exc.error == "journal_moved":
                continue  # the agent wrote a row meanwhile: read again
            raise
        if answer is None:
            try:
                reset = reset_counters(path, engineer, cfg.signing_key)
            except JournalBusy as exc:  # an agent that serves no control socket
                raise UsageError(f"counters reset: {exc}, and it answers no control socket") from None
        else:
            reset = {"journal": path, **request, **answer}
        print_report(reset, args.json, reset_text)
        return 0
    raise UsageError(f"counters reset: the agent kept writing to {path}; try again")


def register(sub) -> None:
    status = sub.add_parser("status", help="devices, service state and cassette levels")
    status.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    status.add_argument("--config", help="TOML config file")
    status.add_argument("--json", action="store_true")
    status.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")
    status.set_defaults(func=cmd_status)

    service = sub.add_parser("service", help="take the running ATM out of service, or back in")
    service.add_argument("direction", choices=("out", "in"))
    service.add_argument("--reason", help="why (journalled, and shown by atm status)")
    service.add_argument("--engineer", help="your name, for the journal (default: your Unix user)")
    service.add_argument("--config", help="TOML config file")
    service.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    service.add_argument("--json", action="store_true", help="the agent's answer as JSON")
    service.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")
    service.set_defaults(func=cmd_service)

    faults = sub.add_parser("faults", help="the faults raised and cleared, from the journal")
    faults.add_argument("--active", action="store_true", help="only the faults raised and not cleared since")
    faults.add_argument("--since", metavar="TIME", help="from an ISO time, or a time ago: 45s, 30m, 2h, 1d")
    faults.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    faults.add_argument("--config", help="TOML config file (journal.path, atm.id)")
    faults.add_argument("--json", action="store_true")
    faults.set_defaults(func=cmd_faults)

    counters = sub.add_parser("counters", help="the service counters from the journal; `atm counters reset`")
    counters.add_argument("action", nargs="?", choices=("reset",), help="reset: start the counters again")
    counters.add_argument("--engineer", metavar="NAME", help="who resets them (default: the Unix user)")
    counters.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    counters.add_argument("--config", help="TOML config file (journal.path, atm.id)")
    counters.add_argument("--json", action="store_true")
    counters.set_defaults(func=cmd_counters)
