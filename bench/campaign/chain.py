"""The hash chain under SIGKILL: a journal writer killed at random points mid-append, and
``atm journal verify`` after every kill (nothing running) and at the end.

``verify_journal`` runs the product's own command, ``atm journal verify --json``, in this
process (its ``main``: a start-up per kill would cost more than the kill); every
``subprocess_every`` kills, and at the end, it runs as a child process too, so its exit code
is the one a shell sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0


@dataclass
class ChainReport:
    kills: int = 0
    during_startup: int = 0
    verified: int = 0  # verify runs that passed
    by_subprocess: int = 0
    failures: list[str] = field(default_factory=list)
    rows: int = 0
    checkpoints: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.kills} kills ({self.during_startup} during start-up), {self.verified} verifies passed"
            f" ({self.by_subprocess} as a child process), {len(self.failures)} failures, {self.rows} rows,"
            f" {self.checkpoints} checkpoints, {self.seconds:.0f} s"
        )


def verify_journal(path: str, subprocess_run: bool = False) -> tuple[int, dict | str]:
    """``atm journal verify --journal PATH --json``: (exit code, its report or its error)."""
    argv = ["journal", "verify", "--journal", path, "--json"]
    if subprocess_run:
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    else:
        from agent.cli import main

        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main(argv)
        out, err = stdout.getvalue(), stderr.getvalue()
    if rc in (0, 1):
        return rc, json.loads(out)
    return rc, err.strip()


def _start(path: str, seed: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.campaign.append_child", path, str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen) -> str | None:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if sel.select(READY_TIMEOUT) and proc.stdout.readline().strip() == "ready":
            return None
    proc.kill()
    _out, err = proc.communicate(timeout=10)
    return f"no ready (exit {proc.returncode}): {err.strip().splitlines()[-1:]}"


def run_chain_campaign(
    journal: str, kills: int, seed: int = 1, startup_share: float = 0.2, subprocess_every: int = 10
) -> ChainReport:
    """``kills`` SIGKILLs of the writer, at random moments after its start-up (or during it),
    each followed by ``atm journal verify``."""
    rng = random.Random(seed)
    report = ChainReport()
    began = time.monotonic()
    for n in range(kills):
        proc = _start(journal, rng.randrange(1 << 30))
        if rng.random() < startup_share:
            time.sleep(rng.uniform(0.0, 0.2))
            report.during_startup += 1
        else:
            reason = _wait_ready(proc)
            if reason:
                report.failures.append(f"start before kill {n}: {reason}")
                continue
            time.sleep(rng.uniform(0.0, 0.1))
        if proc.poll() is not None:
            _out, err = proc.communicate(timeout=10)
            report.failures.append(f"kill {n}: exited by itself ({proc.returncode}): {err.strip()[-300:]}")
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        report.kills += 1
        if not os.path.exists(journal):
            continue  # killed before it made the file
        by_child = subprocess_every > 0 and (n + 1) % subprocess_every == 0
        _check(journal, f"kill {n}", report, by_child)
    _check(journal, "at the end", report, True)
    report.seconds = time.monotonic() - began
    return report


def _check(journal: str, where: str, report: ChainReport, by_child: bool) -> None:
    rc, answer = verify_journal(journal, by_child)
    if rc == 0 and isinstance(answer, dict):
        report.verified += 1
        report.by_subprocess += by_child
        report.rows, report.checkpoints = answer["rows"], answer["checkpoints"]
    else:
        report.failures.append(f"{where}: verify exit {rc}: {answer}")
