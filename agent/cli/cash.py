"""``atm cash``: the cassette levels; ``replenish`` one cassette; ``reconcile`` after a count.

Through the running agent when there is one; otherwise this process opens the devices
and the journal itself (:mod:`agent.direct`), out of service.
"""

from __future__ import annotations

import re

from agent.cli.common import (
    RIG_HELP,
    UsageError,
    ask_agent,
    engineer_name,
    journal_of,
    load_config,
    print_report,
)

ANSWER_WITHIN = 60.0  # seconds: the change, then the dispenser's self-test (behind any command of its own)
COUNTED = re.compile(r"([A-Za-z0-9]{1,8})=(\d{1,5})")


def parse_counted(text: str) -> dict[str, int]:
    """``A=480,B=1000`` as {cassette: notes}; UsageError naming the bad part."""
    counted: dict[str, int] = {}
    for part in text.split(","):
        match = COUNTED.fullmatch(part.strip())
        if match is None:
            raise UsageError(f"--counted: {part.strip()[:20]!r} is not CASSETTE=NOTES (e.g. A=480,B=1000)")
        cid, notes = match.group(1), int(match.group(2))
        if cid in counted:
            raise UsageError(f"--counted: cassette {cid} is named twice")
        counted[cid] = notes
    return counted


def cmd_cash(args) -> int:
    cfg = load_config(args.config, rig=args.rig)
    if args.action is None:
        if any(v is not None for v in (args.cassette, args.count, args.denomination, args.counted)):
            raise UsageError("atm cash replenish CASSETTE --count N, or atm cash reconcile --counted A=N,B=M")
        return _levels(args, cfg)
    extra = [
        flag for flag, value in (("--count", args.count), ("--denomination", args.denomination)) if value is not None
    ]
    if args.action == "reconcile" and (extra or args.cassette is not None):
        raise UsageError(f"{extra[0] if extra else 'a CASSETTE'} goes with `atm cash replenish`")
    if args.action == "replenish" and args.counted is not None:
        raise UsageError("--counted goes with `atm cash reconcile`")
    if args.action == "replenish":
        if args.cassette is None or args.count is None:
            raise UsageError("atm cash replenish CASSETTE --count N [--denomination D]")
        params: dict = {"cassette": args.cassette, "count": args.count}
        if args.denomination is not None:
            params["denomination"] = args.denomination
    else:
        if args.counted is None:
            raise UsageError("atm cash reconcile --counted A=N,B=M (every cassette)")
        params = {"counted": parse_counted(args.counted)}
    engineer = engineer_name(args.engineer)
    # the agent answers once the dispenser's self-test after the change has run
    answer = ask_agent(cfg, args.action, {**params, "engineer": engineer}, journal=args.journal, timeout=ANSWER_WITHIN)
    if answer is None:
        answer = _direct(cfg, args, params, engineer)
    print_report(answer, args.json, replenish_text if args.action == "replenish" else reconcile_text)
    return 0


def _levels(args, cfg) -> int:
    answer = ask_agent(cfg, "cash", journal=args.journal)
    if answer is None:
        raise UsageError(f"no agent is running for ATM {cfg.atm_id}; atm status opens the devices and shows the levels")
    print_report(answer, args.json, lambda a: _cassettes(a["cassettes"]))
    return 0


def _direct(cfg, args, params: dict, engineer: str) -> dict:
    from agent.direct import DirectRefused, cash_direct

    try:
        return cash_direct(cfg, journal_of(cfg, args.journal), args.action, params, engineer)
    except DirectRefused as exc:
        raise UsageError(f"{args.action}: {exc} ({exc.error})") from None


def _cassettes(cassettes: list[dict]) -> str:
    from agent.tables import table

    keys = ("id", "denomination", "count", "status", "accuracy")
    return table(("cassette", "denomination", "count", "status", "accuracy"), [[c[k] for k in keys] for c in cassettes])


def replenish_text(answer: dict) -> str:
    c, before = answer["cassette"], answer["before"]
    return (
        f"cassette {c['id']}: {before['count']} -> {c['count']} x {c['denomination']} ({c['status']});"
        " journalled as a replenishment"
    )


def reconcile_text(answer: dict) -> str:
    from agent.tables import table

    rows = [[d["id"], d["journal"], d["counted"], d["difference"]] for d in answer["differences"]]
    head = "reconciled: " + (
        "the counts were unknown (an interrupted dispense); they are the counted ones now"
        if answer["count_was_unknown"]
        else "the counted notes replace the journal's figures"
    )
    return head + "\n" + table(("cassette", "journal", "counted", "difference"), rows)


def register(sub) -> None:
    cash = sub.add_parser("cash", help="cassette levels; `replenish` a cassette; `reconcile` after counting")
    cash.add_argument("action", nargs="?", choices=("replenish", "reconcile"), help="(default: show the levels)")
    cash.add_argument("cassette", nargs="?", help="replenish: the cassette's id, e.g. A")
    cash.add_argument("--count", type=int, metavar="N", help="replenish: the notes the cassette now holds")
    cash.add_argument("--denomination", type=int, metavar="D", help="replenish: the note value, if it changes")
    cash.add_argument("--counted", metavar="A=N,B=M", help="reconcile: the notes counted in every cassette")
    cash.add_argument("--engineer", metavar="NAME", help="your name, for the journal (default: your Unix user)")
    cash.add_argument("--config", help="TOML config file")
    cash.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    cash.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    cash.add_argument("--json", action="store_true")
    cash.set_defaults(func=cmd_cash)
