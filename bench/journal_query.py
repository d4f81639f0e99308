"""Benchmark: ``atm journal query`` on a big journal (docs/journal-queries.md).

1. Generates a journal of ``--sessions`` sessions (default 1,000,000) with the journal's own
   schema and indexes, not through the state machine: each session is the rows a real
   withdrawal, balance inquiry or deposit journals (as ``atm demo`` writes them), written with
   executemany in big transactions. Sessions start a few minutes apart (more by day than by
   night), each by one of ``--cards`` cards.
2. Times the queries as ``atm journal query`` runs them (agent.journal_query.run on a
   read-only connection; warm page cache, median and slowest of ``--repeat`` different ones):
   one card's sessions in a one-day window (target <= 10 ms) and a one-hour window of all
   sessions (target <= 50 ms); the same on a copy without the query indexes for comparison.
3. Bytes on disk per session, and what the query indexes take of it.

Run alone: ``.venv/bin/python bench/journal_query.py`` (``--sessions 50000`` for a quick
run; ``--journal FILE`` keeps the journal and reuses it when it is there). Figures only:
nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import journal_query  # noqa: E402
from agent.journal import SCHEMA  # noqa: E402
from agent.journal_reader import open_readonly  # noqa: E402
from agent.tables import table  # noqa: E402
from devices.carddata import card_token  # noqa: E402

KEY = b"bench-journal-query-key!"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
QUERY_INDEXES = ("entries_ts", "entries_session", "entries_card_token", "entries_card_last4")
BATCH = 20_000  # sessions a transaction
TARGETS = {"card_day": 10.0, "hour": 50.0}  # ms

# (seconds into the session, kind, name, data, intent: index of its intent row in the session)
# as atm demo journals them; %(token)s, %(last4)s, %(sid)s, %(amount)s, %(notes)s filled in per session.
CARD = [
    (0.0, "step", "card_inserted", '{"camera":[48,64,3]}', None),
    (0.0, "step", "card_read", '{"last4":"%(last4)s","token":"%(token)s","source":"chip"}', None),
    (1.5, "step", "host_request", '{"op":"verify_pin","amount":0,"request":1}', None),
    (1.7, "step", "host_reply", '{"code":"approved","request":1}', None),
]
END = (
    '{"session":"%(sid)s","function":"%(function)s","outcome":"completed","amount":%(amount)s,"language":"ja",'
    '"card_retained":false,"cash_retracted":0,"notes_dispensed":%(notes)s,"amount_dispensed":%(dispensed)s,'
    '"duration_s":%(duration)s}'
)
FUNCTIONS = {
    "withdrawal": CARD
    + [
        (3.2, "step", "chosen", '{"function":"withdrawal"}', None),
        (4.7, "step", "host_request", '{"op":"withdraw","amount":%(amount)s,"request":2}', None),
        (4.9, "step", "host_reply", '{"code":"approved","request":2}', None),
        (4.9, "intent", "dispense", '{"plan":{"A":%(notes)s},"amount":%(amount)s,"counts":{"A":500,"B":1000}}', None),
        (4.9, "outcome", "dispense", '{"ok":true,"picked":{"A":%(notes)s},"rejected":{"A":0},"fault":""}', 7),
        (4.9, "intent", "eject_card", "{}", None),
        (4.9, "outcome", "eject_card", '{"ok":true,"result":null}', 9),
        (6.5, "step", "card_taken", "{}", None),
        (6.5, "intent", "present_cash", '{"notes":%(notes)s}', None),
        (6.5, "outcome", "present_cash", '{"ok":true,"result":%(notes)s}', 12),
        (8.1, "step", "cash_taken", '{"notes":%(notes)s}', None),
        (8.1, "event", "session_end", END, None),
    ],
    "balance": CARD
    + [
        (3.2, "step", "chosen", '{"function":"balance"}', None),
        (3.2, "step", "host_request", '{"op":"balance","amount":0,"request":2}', None),
        (3.4, "step", "host_reply", '{"code":"approved","request":2}', None),
        (3.4, "intent", "eject_card", "{}", None),
        (3.4, "outcome", "eject_card", '{"ok":true,"result":null}', 7),
        (4.9, "step", "card_taken", "{}", None),
        (4.9, "event", "session_end", END, None),
    ],
    "deposit": CARD
    + [
        (3.2, "step", "chosen", '{"function":"deposit"}', None),
        (4.7, "step", "host_request", '{"op":"deposit","amount":%(amount)s,"request":2}', None),
        (4.9, "step", "host_reply", '{"code":"approved","request":2}', None),
        (4.9, "intent", "store_notes", '{"notes":{"10000":%(notes)s}}', None),
        (4.9, "outcome", "store_notes", '{"ok":true,"result":{"10000":%(notes)s}}', 7),
        (4.9, "intent", "eject_card", "{}", None),
        (4.9, "outcome", "eject_card", '{"ok":true,"result":null}', 9),
        (6.5, "step", "card_taken", "{}", None),
        (6.5, "event", "session_end", END, None),
    ],
}
MIX = ["withdrawal"] * 6 + ["balance"] * 3 + ["deposit"]
# mean minutes between sessions by hour of day: busy by day, quiet at night (~290 a day)
GAP_MINUTES = [30, 40, 60, 60, 40, 20, 8, 4, 3, 3, 3, 2.5, 2, 2.5, 3, 3, 3, 2.5, 2.5, 3, 4, 6, 10, 20]


def pans(count: int) -> list[str]:
    """``count`` Luhn-valid 16-digit test numbers (only their tokens reach the journal)."""
    from devices.carddata import luhn_ok

    found = []
    for i in range(count):
        body = f"400000{i:09d}"
        found.append(next(body + d for d in "0123456789" if luhn_ok(body + d)))
    return found


def sessions(count: int, cards: list[tuple[str, str]], rng: random.Random) -> Iterator[tuple[float, list[tuple]]]:
    """(start in seconds since EPOCH, its rows without seq) for each session, oldest first."""
    t = 0.0
    for n in range(1, count + 1):
        hour = int(t // 3600) % 24
        t += rng.expovariate(1 / (GAP_MINUTES[hour] * 60)) + 10
        function = rng.choice(MIX)
        token, last4 = rng.choice(cards)
        notes = rng.randint(1, 10)
        sid = f"atm-0001-{n:07d}"
        values = {
            "token": token,
            "last4": last4,
            "sid": sid,
            "function": function,
            "amount": "0" if function == "balance" else str(notes * 10_000),
            "notes": str(notes),
            "dispensed": str(notes * 10_000) if function == "withdrawal" else "0",
            "duration": "8.1",
        }
        rows = [(offset, kind, name, data % values, intent) for offset, kind, name, data, intent in FUNCTIONS[function]]
        yield t, [(sid, *row) for row in rows]


def generate(path: str, count: int, card_count: int, seed: int) -> tuple[float, float]:
    """Write the journal; (seconds it took, its last session's start in seconds since EPOCH)."""
    rng = random.Random(seed)
    cards = [(card_token(pan, KEY), pan[-4:]) for pan in pans(card_count)]
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # generation only: the agent writes with FULL
    db.execute("PRAGMA cache_size=-262144")  # 256 MiB: the indexes' pages stay in memory
    db.executescript(SCHEMA)
    insert = "INSERT INTO entries (seq, ts, session, kind, name, intent, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
    seq, batch, last = 0, [], 0.0
    db.execute("BEGIN")
    for n, (start, rows) in enumerate(sessions(count, cards, rng), 1):
        first = seq + 1
        times: dict[float, str] = {}
        for sid, offset, kind, name, data, intent in rows:
            seq += 1
            ts = times.get(offset)
            if ts is None:  # a session's rows share a few instants
                ts = times[offset] = (EPOCH + timedelta(seconds=start + offset)).isoformat(timespec="milliseconds")
            batch.append((seq, ts, sid, kind, name, None if intent is None else first + intent, data))
        last = start
        if n % BATCH == 0:
            db.executemany(insert, batch)
            db.execute("COMMIT")
            db.execute("BEGIN")
            batch.clear()
    db.executemany(insert, batch)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started, last


def measure(path: str, cases: dict[str, list[journal_query.Query]], most: int) -> dict[str, tuple[list[float], int]]:
    """{case: (ms of each query, rows found in all)} on a read-only connection, ``most`` queries a case."""
    db = open_readonly(path)
    try:
        results = {}
        for name, queries in cases.items():
            journal_query.run(db, path, queries[0])  # the page cache warm, as for an investigator's second query
            times, found = [], 0
            for q in queries[:most]:
                start = time.perf_counter()
                found += journal_query.run(db, path, q)["rows"]
                times.append((time.perf_counter() - start) * 1000)
            results[name] = (times, found)
        return results
    finally:
        db.close()


def query_cases(path: str, last: float, repeat: int, seed: int) -> dict:
    """One card's sessions in the day of one of its sessions, and one-hour windows, chosen at random."""
    rng = random.Random(seed + 1)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    card_day, hour = [], []
    for _ in range(repeat):
        sid, ts, data = db.execute(
            "SELECT session, ts, data FROM entries WHERE seq = (SELECT MIN(seq) FROM entries WHERE seq >= ?"
            " AND name = 'card_read')",
            (rng.randint(1, db.execute("SELECT MAX(seq) FROM entries").fetchone()[0] - 100),),
        ).fetchone()
        day = datetime.fromisoformat(ts).replace(hour=0, minute=0, second=0, microsecond=0)
        token = data.split('"token":"')[1][:64]
        card_day.append(journal_query.Query(day, day + timedelta(days=1), token=token))
        start = EPOCH + timedelta(hours=rng.randint(0, int(last // 3600) - 1))
        hour.append(journal_query.Query(start, start + timedelta(hours=1)))
    db.close()
    return {"card_day": card_day, "hour": hour}


def without_indexes(path: str) -> str:
    """A copy of the journal without the query indexes (as a journal from before them)."""
    copy = path + ".noindex"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(copy + suffix):
            os.remove(copy + suffix)
    src = sqlite3.connect(path)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    for name in QUERY_INDEXES:
        dst.execute(f"DROP INDEX {name}")
    dst.execute("VACUUM")
    dst.close()
    return copy


def index_bytes(path: str) -> dict[str, int] | None:
    """Bytes each table and index takes (SQLite's dbstat), None where it is not built in."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=50_000, help="card population (default 50,000)")
    parser.add_argument("--repeat", type=int, default=50, help="queries of each case (default 50)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--journal", metavar="FILE", help="keep the journal there (reused when it is there)")
    parser.add_argument("--no-compare", action="store_true", help="skip the copy without the query indexes")
    args = parser.parse_args()

    folder = None
    if args.journal:
        path = args.journal
    else:
        folder = tempfile.TemporaryDirectory(prefix="journal-query-")
        path = os.path.join(folder.name, "journal.db")
    if os.path.exists(path):
        print(f"reusing {path}")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        (last_ts,) = db.execute("SELECT ts FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        count = db.execute("SELECT COUNT(*) FROM entries WHERE name = 'session_end'").fetchone()[0]
        db.close()
        last = (datetime.fromisoformat(last_ts) - EPOCH).total_seconds()
    else:
        seconds, last = generate(path, args.sessions, args.cards, args.seed)
        count = args.sessions
        print(f"generated {count:,} sessions in {seconds:.0f} s")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (rows,) = db.execute("SELECT MAX(seq) FROM entries").fetchone()
    first_ts, last_ts = db.execute("SELECT MIN(ts), MAX(ts) FROM entries").fetchone()
    db.close()
    size = os.path.getsize(path)
    print(f"{path}: {count:,} sessions, {rows:,} rows, {first_ts[:10]} to {last_ts[:10]}, {size / 1e6:,.0f} MB")

    cases = query_cases(path, last, args.repeat, args.seed)
    journals = {"indexed": path}
    if not args.no_compare:
        journals["no query indexes"] = without_indexes(path)
    lines = []
    for label, journal in journals.items():
        most = args.repeat if journal == path else min(args.repeat, 5)  # without indexes: seconds each
        for case, (times, found) in measure(journal, cases, most).items():
            target = TARGETS[case]
            lines.append(
                (
                    case,
                    label,
                    f"{statistics.median(times):.2f}",
                    f"{max(times):.2f}",
                    f"{target:.0f}",
                    f"{found / len(times):.0f}",
                )
            )
    print()
    print(table(("query", "journal", "median ms", "slowest ms", "target ms", "rows found"), lines))

    sizes = index_bytes(path)
    print()
    print(f"bytes on disk per session: {size / count:,.0f} (file {size:,} B / {count:,} sessions)")
    if sizes:
        query = sum(sizes.get(name, 0) for name in QUERY_INDEXES)
        print(f"  of which the query indexes: {query / count:,.0f}")
        print(table(("table or index", "bytes per session"), [(n, round(b / count)) for n, b in sorted(sizes.items())]))
    if folder is not None:
        folder.cleanup()
    elif not args.no_compare:
        os.remove(journals["no query indexes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
