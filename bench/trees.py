"""Source trees to benchmark side by side: this one and a base commit.

:func:`checkout` exports a commit with ``git archive`` into a temporary
directory (nothing is registered in the repository, nothing to prune after
a crash). :func:`run_child` runs one of this tree's bench scripts with the
same Python, but with ``PYTHONPATH`` set to the tree under test, so the
firmware it imports is that tree's; the script prints one JSON line last.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
DEFAULT_BASE = "5992920"  # the blocking design: device commands on the loop thread


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def describe(tree: Path) -> str:
    """A short label: the commit, plus '+changes' for a work tree that differs from it."""
    marker = tree / ".bench-commit"
    if marker.exists():
        return marker.read_text().strip()
    try:
        head = git("rev-parse", "--short", "HEAD", cwd=tree)
        dirty = git("status", "--porcelain", "--untracked-files=no", cwd=tree)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return str(tree)
    return head + ("+changes" if dirty else "")


@contextlib.contextmanager
def checkout(rev: str):
    """The files of commit ``rev`` in a temporary directory (removed afterwards)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {commit} failed")
        (tree / ".bench-commit").write_text(commit[:7] + "\n")
        yield tree


def child_env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # ahead of the editable install of this tree
    env["BENCH_TREE"] = str(tree)  # the child checks that it imported this tree
    return env


def start_child(tree: Path, script: str, args: list[str], stdin=None) -> subprocess.Popen[str]:
    """Start ``bench/<script>`` of this tree against the firmware of ``tree``."""
    return subprocess.Popen(
        [sys.executable, str(BENCH / script), *args],
        cwd=tree,
        env=child_env(tree),
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_child(tree: Path, script: str, args: list[str], timeout: float = 600) -> dict:
    """Run ``bench/<script>`` against ``tree``; its last JSON line."""
    return finish_child(start_child(tree, script, args), timeout)


def finish_child(proc: subprocess.Popen[str], timeout: float = 600) -> dict:
    """Wait for a child; its last stdout line that is a JSON object."""
    out, _ = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        cmd = proc.args  # start_child's [python, script, *args]
        script = os.fsdecode(cmd[1]) if isinstance(cmd, list) else str(cmd)
        raise RuntimeError(f"{script} failed (exit {proc.returncode}): {out[-2000:]}")
    return json.loads(lines[-1])


def check_imported(module) -> None:
    """In a child: refuse to measure a tree other than the one asked for."""
    want = os.environ.get("BENCH_TREE")
    if want and not Path(module.__file__).resolve().is_relative_to(Path(want).resolve()):
        raise SystemExit(f"imported {module.__file__}, not from {want}: PYTHONPATH was not honoured")
