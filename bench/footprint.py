"""Benchmark: the agent's footprint on a kiosk (the deploy issue's figures).

`atm run --local-broker` on the sim rig under a NOTIFY_SOCKET held here, as systemd would
start it (the telemetry's outbox writes count with the journal's):

1. the time from the start to READY=1;
2. idle for ``--idle`` seconds: resident memory, CPU, bytes written to storage
   (/proc/PID/io ``write_bytes``), scaled to an hour;
3. with simulated customers for ``--busy`` seconds: the same per session, and so the
   figures at 30 sessions an hour (idle + 30 x per session). Target: idle writes < 1 MB/h.

    .venv/bin/python bench/footprint.py [--idle 60] [--busy 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ATM = str(Path(sys.executable).with_name("atm"))
TICKS = os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> dict[str, float]:
    """RSS (MiB), CPU seconds (user + system) and bytes written to storage so far."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {"rss_mib": rss_kib / 1024, "cpu_s": cpu, "written": float(io["write_bytes"])}


def _drain(notify: socket.socket) -> None:
    try:
        while notify.recv(4096):
            pass
    except OSError:
        return


def sessions(journal: Path) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM entries WHERE name = 'session_end'").fetchone()[0])
    finally:
        db.close()


def run_once(folder: Path, customers: bool, seconds: float) -> dict[str, float]:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(folder / "notify"))
    notify.settimeout(60)
    journal = folder / "journal.db"
    config = folder / "atm.toml"
    config.write_text(f'[journal]\npath = "{journal}"\n[control]\nsocket = "{folder}/control.sock"\n')
    env = {**os.environ, "NOTIFY_SOCKET": str(folder / "notify"), "WATCHDOG_USEC": "10000000"}
    who = ["--customers", "--seed", "3"] if customers else ["--no-customers"]
    began = time.monotonic()
    proc = subprocess.Popen(  # with a broker: the outbox's writes count too
        [ATM, "run", "--config", str(config), "--local-broker", *who], env=env, stdout=subprocess.DEVNULL
    )
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        ready_s = time.monotonic() - began
        threading.Thread(target=_drain, args=(notify,), daemon=True).start()  # as systemd reads them
        start, sessions_before = proc_figures(proc.pid), sessions(journal)
        time.sleep(seconds)
        end, sessions_after = proc_figures(proc.pid), sessions(journal)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        notify.close()
    return {
        "ready_s": ready_s,
        "rss_mib": end["rss_mib"],
        "cpu_s": end["cpu_s"] - start["cpu_s"],
        "written": end["written"] - start["written"],
        "sessions": sessions_after - sessions_before,
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle")
    parser.add_argument("--busy", type=float, default=60.0, help="seconds with simulated customers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        idle = run_once(Path(a), False, args.idle)
        busy = run_once(Path(b), True, args.busy)
    per_hour = 3600 / idle["seconds"]
    per_session = {k: busy[k] / max(busy["sessions"], 1) for k in ("cpu_s", "written")}
    figures: dict[str, Any] = {
        "ready_s": round(idle["ready_s"], 2),
        "idle": {
            "rss_mib": round(idle["rss_mib"], 1),
            "cpu_percent": round(100 * idle["cpu_s"] / idle["seconds"], 2),
            "writes_mb_per_hour": round(idle["written"] * per_hour / 1e6, 3),
        },
        "busy": {
            "rss_mib": round(busy["rss_mib"], 1),
            "sessions": busy["sessions"],
            "cpu_s_per_session": round(per_session["cpu_s"], 3),
            "kb_written_per_session": round(per_session["written"] / 1e3, 1),
        },
        "at_30_sessions_an_hour": {
            "cpu_percent": round(100 * (idle["cpu_s"] * per_hour + 30 * per_session["cpu_s"]) / 3600, 2),
            "writes_mb_per_hour": round((idle["written"] * per_hour + 30 * per_session["written"]) / 1e6, 3),
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"start to READY=1: {figures['ready_s']} s")
    i, b30 = figures["idle"], figures["at_30_sessions_an_hour"]
    print(f"idle: RSS {i['rss_mib']} MiB, CPU {i['cpu_percent']} %, writes {i['writes_mb_per_hour']} MB/h (target < 1)")
    bz = figures["busy"]
    print(
        f"busy: {bz['sessions']} sessions, RSS {bz['rss_mib']} MiB, {bz['cpu_s_per_session']} CPU s and"
        f" {bz['kb_written_per_session']} kB written per session"
    )
    print(f"at 30 sessions an hour: CPU {b30['cpu_percent']} %, writes {b30['writes_mb_per_hour']} MB/h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
