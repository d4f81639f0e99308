"""``atm run`` in a child process, as an engineer's tests need it: a config file with the
journal and the control socket in a folder of the test's, the ``atm`` command to talk to
it, and the journal's rows."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

ATM = os.path.join(os.path.dirname(sys.executable), "atm")


def atm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([ATM, *args], capture_output=True, text=True, timeout=timeout)


def one_line_refusal(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


class AtmRun:
    """One ``atm run --config FILE`` child; ``config`` holds the journal and the socket."""

    def __init__(self, folder: Path, devices: dict[str, str] | None = None, extra: str = ""):
        self.folder = folder
        self.journal = folder / "journal.db"
        self.config = folder / "atm.toml"
        text = f'[journal]\npath = "{self.journal}"\n[control]\nsocket = "{folder}/control.sock"\n'
        if devices:
            text += "[devices]\n" + "".join(f'{k} = "{v}"\n' for k, v in devices.items())
        self.config.write_text(text + extra)
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    def start(self, *args: str) -> AtmRun:
        self.proc = subprocess.Popen(
            [ATM, "run", "--config", str(self.config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("ready:"):
                return self
        raise AssertionError(f"atm run did not get ready: {''.join(self.lines)} {self.proc.stderr.read()}")

    def ask(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``atm ARGS --config FILE``."""
        return atm(*args, "--config", str(self.config), timeout=timeout)

    def json(self, *args: str) -> dict:
        proc = self.ask(*args, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def stop(self) -> int:
        """Ctrl-C's signal; the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> None:
        """A power cut: SIGKILL, nothing closed."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate(timeout=10)
            self.proc = None

    def rows(self, kind: str | None = None, name: str | None = None) -> list[tuple[int, str, str, dict]]:
        """(seq, kind, name, data) of the journal's rows, read as an auditor would."""
        if not self.journal.exists():
            return []
        db = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT seq, kind, name, data FROM entries ORDER BY seq").fetchall()
        finally:
            db.close()
        return [
            (seq, k, n, json.loads(d))
            for seq, k, n, d in rows
            if (kind is None or k == kind) and (name is None or n == name)
        ]
