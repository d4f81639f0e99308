"""The input fuzzers as a benchmark: inputs, inputs/s and unexpected exceptions per target.

python bench/fuzz.py [SECONDS] [--seed 1] [--json] [--target NAME]...

Each target (codecs, TLV, EMV card answers, configs, rigs; see bench/fuzzers)
runs for SECONDS (default 5). An unexpected exception is any but the target's
documented error type; there must be none, and the exit status is 1 if there are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fuzzers.targets import TARGETS, Result, run_target  # noqa: E402


def run(seconds: float = 5.0, seed: int = 1, names: list[str] | None = None) -> dict[str, Result]:
    return {name: run_target(TARGETS[name], seed=seed, seconds=seconds) for name in names or list(TARGETS)}


def as_dict(result: Result) -> dict:
    return {
        "inputs": result.inputs,
        "refused": result.refused,
        "per_s": round(result.per_second, 1),
        "unexpected": len(result.escapes),
        "examples": [{"input": e.index, "error": e.error, "value": e.input} for e in result.escapes[:5]],
    }


def report(results: dict[str, Result]) -> None:
    print(f"{'fuzz target':<16}{'inputs':>10}{'inputs/s':>12}{'refused':>10}{'unexpected':>12}")
    for name, r in results.items():
        print(f"{name:<16}{r.inputs:>10}{r.per_second:>12.0f}{r.refused:>10}{len(r.escapes):>12}")
        for e in r.escapes[:3]:
            print(f"  ! input {e.index}: {e.error}\n    {e.input}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=5.0, help="per target (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object, by target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these (repeatable)")
    args = parser.parse_args()
    if not 0 < args.seconds <= 86_400:
        parser.error(f"{args.seconds:g} is not a number of seconds (0 < s <= 86400)")
    results = run(args.seconds, args.seed, args.target)
    if args.json:
        print(json.dumps({name: as_dict(r) for name, r in results.items()}, indent=2))
    else:
        report(results)
    return 1 if any(r.escapes for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
