"""``atm journal query``: the journal's rows and sessions in a time window, by card,
session or row type (docs/journal-queries.md).

A card number given with ``--card`` becomes its token here, in memory, with the config's
card key; it is never stored, logged, printed, nor put in an error message.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import UTC, datetime
from typing import Any

from agent.cli.common import UsageError, journal_to_read, load_config, print_report

TOKEN = re.compile(r"[0-9a-f]{64}")
CSV_FIELDS = ("seq", "ts", "session", "kind", "name", "intent", "last4", "token", "data")
DATA_WIDTH = 100  # characters of a row's data the table shows (--json and --csv show it all)


def parse_time(option: str, text: str, now: datetime) -> datetime:
    from agent.fault_history import parse_since

    try:
        return parse_since(text, now)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def card_token_of(text: str, config: str | None) -> str:
    """The token of the card number ``text`` (``-``: read from stdin) under the config's key.
    The number is only ever in this function's locals; no message names it."""
    from devices.carddata import card_token, luhn_ok

    if config is None:
        raise UsageError("--card needs --config FILE: its security.card_key makes the card's token")
    if text == "-":
        text = sys.stdin.readline()
    digits = re.sub(r"[ -]", "", text.strip())
    if not (12 <= len(digits) <= 19 and digits.isdigit() and luhn_ok(digits)):
        raise UsageError("--card: not a card number (12 to 19 digits passing the Luhn check); it is not shown here")
    return card_token(digits, load_config(config).card_key)


def query_of(args) -> Any:
    """The :class:`agent.journal_query.Query` the options ask for; bad options are refused."""
    from agent.journal_query import Query

    if args.start is None:
        raise UsageError("--from TIME is required (an ISO time, or a time ago: 45s, 30m, 2h, 1d)")
    cards = [o for o, v in (("--card", args.card), ("--token", args.token), ("--last4", args.last4)) if v is not None]
    if len(cards) > 1:
        raise UsageError(f"{' and '.join(cards)}: give one of --card, --token and --last4")
    if args.json and args.csv:
        raise UsageError("--json and --csv: give one of them")
    now = datetime.now(UTC)
    start = parse_time("--from", args.start, now)
    end = parse_time("--to", args.end, now) if args.end is not None else now
    token = args.token
    if token is not None:
        token = token.strip().lower()
        if not TOKEN.fullmatch(token):
            raise UsageError("--token: not a card token (64 hex digits, as --json and --csv print them)")
    if args.last4 is not None and not (len(args.last4) == 4 and args.last4.isdigit()):
        raise UsageError(f"--last4: {args.last4!r} is not 4 digits")
    if args.card is not None:
        token = card_token_of(args.card, args.config)
    return Query(start, end, token=token, last4=args.last4, session=args.session, type=args.type)


def query_text(report: dict[str, Any]) -> str:
    """Each session's card and summary, then its rows; the rows of no session last."""
    sessions, other = report["sessions"], report["other_rows"]
    head = (
        f"journal {report['journal']}: {_count(len(sessions), 'session')}, {_count(report['rows'], 'row')},"
        f" {report['from']} (incl.) to {report['to']} (excl.)"
    )
    lines = [head]
    for s in sessions:
        card = f"card ...{s['last4']} token {s['token']}" if s["token"] else "no card read"
        did = " ".join(str(v) for v in (s["function"], s["outcome"], s["amount"]) if v not in (None, ""))
        until = s["ended"] or "(no session_end)"
        lines += ["", f"session {s['session']}  {card}  {did or '-'}  {s['started']} to {until}"]
        lines.append(_rows_table(s["rows"]))
    if other:
        lines += ["", "rows of no session (device faults, service changes, maintenance)", _rows_table(other)]
    if not sessions and not other:
        lines += ["", "no rows match"]
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rows_table(rows: list[dict[str, Any]]) -> str:
    from agent.tables import table

    def data(row: dict[str, Any]) -> str:
        text = json.dumps(row["data"], ensure_ascii=False, separators=(",", ":"))
        return text if len(text) <= DATA_WIDTH else text[: DATA_WIDTH - 3] + "..."

    cells = [(r["seq"], r["ts"], r["kind"], r["name"], r["intent"], data(r)) for r in rows]
    return "\n".join("  " + line for line in table(("seq", "ts", "kind", "name", "intent", "data"), cells).split("\n"))


def write_csv(report: dict[str, Any], out) -> None:
    """One line a row, oldest first, each with its session's last4 and token."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    card = {s["session"]: (s["last4"], s["token"]) for s in report["sessions"]}
    rows = [r for s in report["sessions"] for r in s["rows"]] + report["other_rows"]
    for r in sorted(rows, key=lambda r: r["seq"]):
        last4, token = card.get(r["session"], (None, None))
        data = json.dumps(r["data"], ensure_ascii=False, separators=(",", ":"))
        writer.writerow((r["seq"], r["ts"], r["session"], r["kind"], r["name"], r["intent"], last4, token, data))


def cmd_query(args) -> int:
    from agent import journal_query
    from agent.journal_reader import open_readonly

    query = query_of(args)
    path = journal_to_read(args)
    db = open_readonly(path)
    try:
        report = journal_query.run(db, path, query)
    finally:
        db.close()
    if args.csv:
        write_csv(report, sys.stdout)
    else:
        print_report(report, args.json, query_text)
    return 0


def register(journal_sub) -> None:
    query = journal_sub.add_parser(
        "query",
        help="rows and sessions in a time window, by card (PAN, token or last 4), session or row type",
        description="The rows with FROM <= time < TO, grouped by session. With --card, --token, --last4"
        " or --session: whole sessions (every row of each), and the rows of no session while they ran.",
    )
    add_selection(query)
    query.add_argument("--type", metavar="TYPE", help="rows of this kind (step, intent, outcome, ...) or name")
    query.add_argument("--json", action="store_true", help="one JSON object")
    query.add_argument("--csv", action="store_true", help="one CSV line a row, with a header")
    query.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    query.add_argument("--config", help="TOML config file (security.card_key for --card, journal.path)")
    query.set_defaults(func=cmd_query)


def add_selection(parser) -> None:
    """The options that select rows: a time window, a card (PAN, token or last 4), a session."""
    parser.add_argument("--from", dest="start", metavar="TIME", help="from (inclusive): ISO time or a time ago (2h)")
    parser.add_argument("--to", dest="end", metavar="TIME", help="to (exclusive); default: now")
    parser.add_argument("--card", metavar="PAN", help="a card number ('-': read it from stdin); needs --config")
    parser.add_argument("--token", metavar="TOKEN", help="a card token (64 hex digits)")
    parser.add_argument("--last4", metavar="NNNN", help="a card's last 4 digits")
    parser.add_argument("--session", metavar="ID", help="one session, e.g. atm-0001-000042")
