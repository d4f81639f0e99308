"""Benchmark: how late presence events reach the state machine during a dispense.

A simulated customer withdraws ``--notes`` notes (60) from an LCDM-2000
driven by the real serial driver over a pty at 9600 baud with a mechanism
time of ``--note-ms`` per note (200). While the dispenser works, a sensor
thread emits a presence reading every ``--period-ms`` (10); the delay of each
is the time from the emit to the state machine taking it (time.monotonic()
on both sides). Reported: count, p50, p99, max (ms).

It runs against this tree and a base commit (``--base``, the blocking design
5992920) in one run, each in its own child process with ``PYTHONPATH`` set
to that tree. With ``--emulator shared`` (the default) this process serves
the one emulator of *this* tree on a pty, and both trees drive it as a plain
``lcdm2000://PTY`` with the same driver options, so both see identical
device timing even if the base emulator lacks ``note_ms``; the emulator tells
the child on its stdin when the dispense starts and ends. With ``--emulator
rig`` each tree uses its own ``lcdm2000+emu://?timing=1&note_ms=N``.

Everything that touches the firmware's internals is in ``bench/probes.py``.

    .venv/bin/python bench/presence_delay.py [--base REV] [--only current|base]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # probes and trees; the firmware comes from PYTHONPATH

if TYPE_CHECKING:  # mypy reads bench/ as a package; run as a script, bench/ is on sys.path
    from bench import trees
else:
    import trees

DRIVER_OPTIONS = "ack_timeout=0.2&timeout=0.5&poll=0.1"  # as the +emu rig sets them


def note_time(note_ms: float) -> str:
    """The driver's reply allowance per note, covering the mechanism (as the +emu rig does)."""
    return f"{0.02 + note_ms / 1000:g}"


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(delays_ms: list[float]) -> dict:
    if not delays_ms:
        return {"count": 0}
    return {
        "count": len(delays_ms),
        "p50_ms": percentile(delays_ms, 50),
        "p99_ms": percentile(delays_ms, 99),
        "max_ms": max(delays_ms),
        "mean_ms": statistics.fmean(delays_ms),
    }


def watch_dispenses(emulator, notify) -> None:
    """``notify('start'|'end', t)`` around each dispense the emulator serves:
    from the command's arrival to just before its response goes out."""
    dispense, send = emulator._dispense, emulator._send
    state = {"open": False}

    def _dispense(*args):
        state["open"] = True
        notify("start", time.monotonic())
        return dispense(*args)

    def _send(reply):
        if state["open"]:
            state["open"] = False
            notify("end", time.monotonic())
        return send(reply)

    emulator._dispense, emulator._send = _dispense, _send


# -- the child: one tree -------------------------------------------------------------
def child(args) -> dict:
    import agent

    if TYPE_CHECKING:
        from bench import probes
    else:
        import probes
    trees.check_imported(agent)
    times: dict[str, float] = {}
    began, ended = threading.Event(), threading.Event()

    def mark(what: str, t: float) -> None:
        times.setdefault(what, t)
        (began if what == "start" else ended).set()

    dispenser = args.dispenser or f"lcdm2000+emu://?timing=1&note_ms={args.note_ms:g}"
    atm = probes.make_agent(dispenser)
    if args.window == "stdin":
        threading.Thread(target=_read_marks, args=(mark,), daemon=True).start()
    else:
        watch_dispenses(probes.emulator_of(atm), mark)
    handled: dict[int, float] = {}
    probes.on_handled(atm, lambda seq, t: handled.__setitem__(seq, t))
    probes.start(atm, args.notes)
    try:
        if not began.wait(30):
            raise SystemExit("the dispense did not start within 30 s")
        posted = _sensor_thread(
            atm, probes, ended, args.period_ms / 1000, limit=args.notes * args.note_ms / 1000 * 3 + 30
        )
        deadline = time.monotonic() + 30
        while len(handled) < len(posted) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        probes.stop(atm)
    delays = [1000 * (handled[s] - t) for s, t in posted.items() if s in handled]
    return {
        "tree": trees.describe(Path(os.environ.get("BENCH_TREE", trees.ROOT))),
        "api": probes.api_shape(),
        "notes": args.notes,
        "note_ms": args.note_ms,
        "period_ms": args.period_ms,
        "dispense_s": times.get("end", 0) - times.get("start", 0),
        "posted": len(posted),
        "lost": len(posted) - len(delays),
        **summary(delays),
    }


def _read_marks(mark) -> None:
    """Lines 'start T' / 'end T' from the parent's emulator."""
    for line in sys.stdin:
        what, _, t = line.partition(" ")
        if what in ("start", "end"):
            mark(what, float(t))


def _sensor_thread(atm, probes, ended: threading.Event, period: float, limit: float) -> dict[int, float]:
    """Emit presence every ``period`` from a sensor thread until the dispense ends."""
    posted: dict[int, float] = {}

    def run():
        start = time.monotonic()
        seq = 0
        while not ended.is_set() and time.monotonic() - start < limit:
            posted[seq] = time.monotonic()
            probes.post_presence(atm, seq)
            seq += 1
            time.sleep(max(0.0, start + seq * period - time.monotonic()))

    thread = threading.Thread(target=run, name="bench-sensor", daemon=True)
    thread.start()
    thread.join()
    return posted


# -- the parent: both trees ----------------------------------------------------------
def measure(tree: Path, notes: int, note_ms: float, period_ms: float, emulator: str = "shared") -> dict:
    """Run the child against ``tree``; its figures."""
    common = ["--child", "--notes", str(notes), "--note-ms", f"{note_ms:g}", "--period-ms", f"{period_ms:g}"]
    if emulator == "rig":
        return trees.run_child(tree, "presence_delay.py", [*common, "--window", "emulator"])
    sys.path.insert(0, str(trees.ROOT))
    from hw_mocks.lcdm_emulator import Lcdm2000Emulator

    emu = Lcdm2000Emulator(upper=notes * 10 + 100, baud=9600, note_ms=note_ms)
    locator = f"lcdm2000://{emu.port}?{DRIVER_OPTIONS}&note_time={note_time(note_ms)}"
    proc = trees.start_child(
        tree, "presence_delay.py", [*common, "--window", "stdin", "--dispenser", locator], stdin=subprocess.PIPE
    )
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None  # both are pipes

    def notify(what: str, t: float) -> None:
        try:
            stdin.write(f"{what} {t!r}\n")
            stdin.flush()
        except (OSError, ValueError):
            pass

    watch_dispenses(emu, notify)
    emu.start()
    try:
        out = stdout.read()
        proc.wait(timeout=60)
    finally:
        emu.stop()
        try:
            stdin.close()
        except OSError:
            pass
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"presence_delay child failed (exit {proc.returncode}): {out[-2000:]}")
    return json.loads(lines[-1])


def report(results: dict[str, dict], out=sys.stdout) -> None:
    """Rows of figures, one column per tree, and current/base."""
    names = list(results)
    any_r = next(iter(results.values()))
    print(
        f"presence event delay during a {any_r['notes']}-note dispense "
        f"(9600 baud, {any_r['note_ms']:g} ms/note, one event per {any_r['period_ms']:g} ms)",
        file=out,
    )
    print(
        f"  {'':<14}"
        + "".join(f"{n + ' ' + results[n]['tree']:>26}" for n in names)
        + ("   current/base" if len(names) == 2 else ""),
        file=out,
    )
    for key, label in (
        ("count", "events"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("max_ms", "max ms"),
        ("dispense_s", "dispense s"),
        ("lost", "lost"),
    ):
        cells = [results[n].get(key) for n in names]
        row = "".join(f"{c:>26.2f}" if isinstance(c, float) else f"{c!s:>26}" for c in cells)
        if len(cells) == 2 and all(isinstance(c, (int, float)) for c in cells) and cells[0]:
            row += f"   {cells[1] / cells[0]:12.3f}"
        print(f"  {label:<14}{row}", file=out)
    print("  target after the change: p99 <= 20 ms", file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=trees.DEFAULT_BASE, help="base commit (default: %(default)s)")
    parser.add_argument("--only", choices=("current", "base"), help="measure one tree only")
    parser.add_argument("--notes", type=int, default=60, help="notes in the dispense, 1..60")
    parser.add_argument("--note-ms", type=float, default=200.0, help="mechanism time per note (ours: 200)")
    parser.add_argument("--period-ms", type=float, default=10.0, help="one presence event every ...")
    parser.add_argument("--emulator", choices=("shared", "rig"), default="shared")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dispenser", help=argparse.SUPPRESS)
    parser.add_argument("--window", choices=("stdin", "emulator"), default="emulator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.notes <= 60:
        parser.error("--notes must be 1..60 (one cassette, one command)")
    if args.child:
        print(json.dumps(child(args)))
        return
    results = run(args.base, args.only, args.notes, args.note_ms, args.period_ms, args.emulator)
    if args.json:
        print(json.dumps(results))
    else:
        report(results)


def run(
    base: str = trees.DEFAULT_BASE,
    only: str | None = None,
    notes: int = 60,
    note_ms: float = 200.0,
    period_ms: float = 10.0,
    emulator: str = "shared",
) -> dict[str, dict]:
    """Figures per tree: {'base': ..., 'current': ...}."""
    results = {}
    if only != "current":
        with trees.checkout(base) as tree:
            results["base"] = measure(tree, notes, note_ms, period_ms, emulator)
    if only != "base":
        results["current"] = measure(trees.ROOT, notes, note_ms, period_ms, emulator)
    return results


if __name__ == "__main__":
    main()
