"""The hash chain's cost: the journal's write time per session with the chain and without it
(the journal of the commit before the chain, loaded from git, measured in the same run),
verify's rows per second on a generated journal, and bytes on disk per session.

python bench/journal_chain.py [--sessions 300] [--rows 1000000] [--base 8d1a8dc]
Targets: write time with the chain <= 1.2 x without; verify >= 200,000 rows/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.journal import Journal  # noqa: E402
from agent.journal_chain import GENESIS, link  # noqa: E402
from agent.journal_signing import Ed25519PrivateKey, Signer  # noqa: E402
from agent.journal_verify import verify  # noqa: E402
from devices.dispenser import Cassette  # noqa: E402
from fsm.clock import VirtualClock  # noqa: E402

BASE = "8d1a8dc"  # the commit this branch starts from: the journal without the chain


def journal_before_chain(base: str):
    """agent/journal.py as it was at ``base``, as a module."""
    source = subprocess.run(
        ["git", "show", f"{base}:agent/journal.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "journal_before_chain.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("journal_before_chain", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.Journal


def one_session(j, n: int, count: int) -> None:
    """The rows of a withdrawal as the agent writes them (12 rows, 3 intents and outcomes)."""
    s = f"atm-0001-{n:06d}"
    j.step(s, "card_inserted", reader="motorised")
    j.step(s, "card_read", masked="411111******1111", token="9f" * 16, scheme="visa")
    j.step(s, "chosen", function="withdrawal", amount=30_000)
    j.step(s, "host_request", kind="withdrawal", amount=30_000)
    i = j.intent(s, "dispense", plan={"A": 3})
    j.outcome(i, s, "dispense", cassettes=[Cassette("A", 10_000, count)], ok=True, picked={"A": 3})
    i = j.intent(s, "eject_card")
    j.outcome(i, s, "eject_card", ok=True)
    j.step(s, "card_taken")
    i = j.intent(s, "present_cash", notes=3)
    j.outcome(i, s, "present_cash", ok=True)
    j.event(s, "session_end", outcome="completed", duration_s=21.5)


def write_cost(make, sessions: int, folder: str, name: str, synchronous: str) -> tuple[float, int]:
    """Seconds per session, bytes on disk per session."""
    path = os.path.join(folder, name)
    j = make(path)
    j.db.execute(f"PRAGMA synchronous={synchronous}")
    began = time.perf_counter()
    for n in range(sessions):
        one_session(j, n, 100_000 - 3 * n)
    elapsed = time.perf_counter() - began
    j.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.close()
    return elapsed / sessions, os.path.getsize(path) // sessions


def generated_journal(path: str, rows: int) -> None:
    """``rows`` chained rows (and a checkpoint every 500) written in bulk, as the agent would chain them."""
    Journal(path, VirtualClock()).close()
    signer = Signer(Ed25519PrivateKey.generate())
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    head, batch, marks = GENESIS, [], []
    for seq in range(1, rows + 1):
        row = (
            "2026-01-01T00:00:00.000+00:00",
            f"atm-0001-{seq // 12:06d}",
            "step",
            "card_read",
            None,
            f'{{"masked":"411111******1111","token":"{seq:032x}","n":{seq}}}',
        )
        head = link(head, seq, *row)
        batch.append((seq, *row, head))
        if seq % 500 == 0:
            cp = signer.checkpoint(seq, head, row[0])
            marks.append((cp.seq, cp.ts, cp.head, cp.key_id, cp.public_key, cp.signature))
        if len(batch) >= 50_000:
            db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
    db.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)", marks)
    db.execute("COMMIT")
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--base", default=BASE, help="the commit whose journal has no chain")
    args = parser.parse_args()
    Before = journal_before_chain(args.base)
    clock = VirtualClock()
    table = []
    ok = True
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").is_dir() else None) as folder:
        for synchronous in ("FULL", "OFF"):
            # alternate, twice, so that the disk's moods fall on both
            runs: dict[str, list[tuple[float, int]]] = {"without": [], "with": []}
            for round_ in range(2):
                for label, make in (("without", lambda p: Before(p, clock)), ("with", lambda p: Journal(p, clock))):
                    name = f"{label}-{synchronous}-{round_}.db"
                    runs[label].append(write_cost(make, args.sessions, folder, name, synchronous))
            without = min(r[0] for r in runs["without"])
            with_ = min(r[0] for r in runs["with"])
            ratio = with_ / without
            ok &= synchronous != "FULL" or ratio <= 1.2
            table.append(
                (
                    f"write per session, synchronous={synchronous}",
                    f"{without * 1e3:.3f} ms",
                    f"{with_ * 1e3:.3f} ms",
                    f"{ratio:.2f} x" + (" (target <= 1.2)" if synchronous == "FULL" else ""),
                )
            )
            table.append(
                (
                    f"bytes on disk per session ({synchronous})",
                    f"{runs['without'][0][1]}",
                    f"{runs['with'][0][1]}",
                    f"+{runs['with'][0][1] - runs['without'][0][1]} B",
                )
            )
        path = os.path.join(folder, "generated.db")
        began = time.perf_counter()
        generated_journal(path, args.rows)
        made = time.perf_counter() - began
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        verdict = verify(db, path)
        db.close()
        rate = verdict.rows / verdict.seconds
        ok &= verdict.ok and rate >= 200_000
        table.append(
            ("verify", f"{args.rows:,} rows", f"{verdict.seconds:.2f} s", f"{rate:,.0f} rows/s (target >= 200,000)")
        )
        table.append(
            ("  generating the journal", "", f"{made:.1f} s", f"ok={verdict.ok}, {verdict.checkpoints} checkpoints")
        )
    widths = [max(len(r[i]) for r in table + [("measure", "without chain", "with chain", "")]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(("measure", "without chain", "with chain", ""), widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
