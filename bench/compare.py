"""Benchmarks of this tree and a base commit side by side, with the ratio.

- ``presence``: presence-event delay during a 60-note dispense on the
  emulated LCDM-2000 at 9600 baud with 200 ms/note (bench/presence_delay.py);
- ``sessions``: withdrawal sessions per second on the virtual clock, one core,
  journal in memory (``withdrawals_per_second`` of each tree's bench/run.py);
- ``startup``: ``atm run`` start-up to ready, median (``startup_seconds`` of
  each tree's bench/run.py).

The base (default 5992920, the blocking design) is exported with
``git archive``; each tree is measured in a child process with ``PYTHONPATH``
set to it, base and current interleaved, best of ``--repeats`` for sessions
and start-up (shared cores: load only ever slows a run down). Figures only:
nothing here asserts a speed.

    .venv/bin/python bench/compare.py [--base REV] [--bench presence,sessions,startup]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

if TYPE_CHECKING:  # mypy reads bench/ as a package; run as a script, bench/ is on sys.path
    from bench import presence_delay, trees
else:
    import presence_delay
    import trees

BENCHES = ("presence", "sessions", "startup")


def _tree_run_module():
    """The bench/run.py of the tree under test (it puts that tree first on sys.path)."""
    tree = Path(os.environ.get("BENCH_TREE", trees.ROOT))
    spec = importlib.util.spec_from_file_location("tree_bench_run", tree / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import agent

    trees.check_imported(agent)
    return module


def child(what: str, args) -> dict:
    run = _tree_run_module()
    if what == "sessions":
        if hasattr(os, "sched_setaffinity"):  # one core, as bench/run.py measures it
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
        run.withdrawals_per_second(min(200, args.sessions), ":memory:")  # warm-up
        return {"per_s": run.withdrawals_per_second(args.sessions, ":memory:")}
    starts = run.startup_seconds(args.startup_runs)
    return {"median_s": statistics.median(starts), "min_s": min(starts), "max_s": max(starts)}


def measure(tree: Path, name: str, args) -> dict:
    """One benchmark on one tree: row -> (value, unit, better)."""
    if name == "presence":
        r = presence_delay.measure(tree, args.notes, args.note_ms, args.period_ms)
        rows = {f"presence delay {k[:-3]}": (r.get(k), "ms", "lower") for k in ("p50_ms", "p99_ms", "max_ms")}
        return {**rows, "presence events": (r.get("count"), "", "")}
    if name == "sessions":
        r = trees.run_child(tree, "compare.py", ["--child", "sessions", "--sessions", str(args.sessions)])
        return {"withdrawal sessions/s (virtual clock)": (r["per_s"], "/s", "higher")}
    r = trees.run_child(tree, "compare.py", ["--child", "startup", "--startup-runs", str(args.startup_runs)])
    return {"atm run start-up to ready, median": (r["median_s"], "s", "lower")}


def best(a: dict, b: dict) -> dict:
    """Per row, the better of two repeats (noise on shared cores only makes things slower)."""
    out = {}
    for key, (value, unit, better) in b.items():
        old = a.get(key, (None,))[0]
        if old is not None and better in ("higher", "lower"):
            value = max(old, value) if better == "higher" else min(old, value)
        out[key] = (value, unit, better)
    return out


def compare(base_tree: Path, args) -> tuple[dict, dict]:
    """Base and current, interleaved per benchmark and repeat, so a load change hits both."""
    base, current = {"tree": trees.describe(base_tree)}, {"tree": trees.describe(trees.ROOT)}
    for name in args.bench:
        repeats = 1 if name == "presence" else args.repeats
        for _ in range(repeats):
            base.update(best(base, measure(base_tree, name, args)))
            current.update(best(current, measure(trees.ROOT, name, args)))
    return base, current


def report(base: dict, current: dict, args, out=sys.stdout) -> None:
    print(
        f"\nside by side: base {base['tree']} vs current {current['tree']}"
        f" (presence: {args.notes} notes, {args.note_ms:g} ms/note, 9600 baud, event every {args.period_ms:g} ms)",
        file=out,
    )
    print(f"  {'benchmark':<40}{'base':>14}{'current':>14}{'current/base':>14}  better", file=out)
    for key, entry in base.items():
        if key == "tree":
            continue
        value, unit, better = entry
        now = current.get(key, (None,))[0]
        ratio = f"{now / value:14.3f}" if isinstance(now, (int, float)) and value else f"{'-':>14}"
        print(f"  {key:<40}{_cell(value, unit)}{_cell(now, unit)}{ratio}  {better}", file=out)
    if "presence" in args.bench:
        print("  target after the change: presence delay p99 <= 20 ms", file=out)


def _cell(value, unit: str) -> str:
    if value is None:
        return f"{'n/a':>14}"
    if isinstance(value, int):
        return f"{value:>14d}"
    return f"{value:>11.3f} {unit:<2}" if value < 100 else f"{value:>11.0f} {unit:<2}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=trees.DEFAULT_BASE, help="base commit (default: %(default)s)")
    parser.add_argument("--bench", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="sessions and startup: best of N, interleaved")
    parser.add_argument("--notes", type=int, default=60)
    parser.add_argument("--note-ms", type=float, default=200.0)
    parser.add_argument("--period-ms", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=("sessions", "startup"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    args.bench = [b for b in args.bench.split(",") if b]
    unknown = set(args.bench) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark {sorted(unknown)[0]!r} (known: {', '.join(BENCHES)})")
    with trees.checkout(args.base) as tree:
        base, current = compare(tree, args)
    if args.json:
        print(json.dumps({"base": base, "current": current}))
    else:
        report(base, current, args)


if __name__ == "__main__":
    main()
