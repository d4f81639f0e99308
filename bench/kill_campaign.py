"""The SIGKILL campaign as a benchmark: kills, mismatches, restart failures, and where the kills landed.

python bench/kill_campaign.py [--kills 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.campaign.kill import run_campaign  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run_campaign(str(Path(tmp) / "journal.db"), args.kills, seed=args.seed)
    print(report.summary())
    print(f"kills per second: {report.kills / report.seconds:.1f}")
    print("last journal row before each kill:")
    for (kind, name), n in report.windows.most_common():
        print(f"  {n:5d}  {kind or '(no journal yet)'} {name}")
    for line in (report.mismatches + report.restart_failures + report.chain_failures)[:20]:
        print("  !", line)
    return 1 if report.mismatches or report.restart_failures or report.chain_failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
