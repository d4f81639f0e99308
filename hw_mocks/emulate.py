"""``atm emulate``: serve one device emulator on a new pseudo-terminal.

    atm emulate lcdm2000 [--fault NAME]... [--timing]
    atm emulate ict3q8 [--fault NAME]... [--timing]

The first line printed is the pty path (e.g. ``/dev/pts/7``): point the
software under test at it (``lcdm2000:///dev/pts/7``). ``--timing`` keeps
real line timing (9600 baud for the dispenser, 38400 for the reader).
The emulator serves until SIGINT (Ctrl-C) or SIGTERM and then exits 0. The
end of standard input only ends the console, so
``atm emulate lcdm2000 < /dev/null &`` keeps serving.

Console: one command per line on standard input, each answered with one
line on standard output starting ``ok`` or ``error:`` (blank lines are
ignored)::

    help                     the commands of this device
    status                   the emulator's state as JSON (card numbers masked)
    fault NAME / clear NAME  inject / remove a fault
    power off [AFTER]        power off now, or AFTER units into the next command
    power on
    take                     the customer takes the notes / the card at the gate
    load UPPER LOWER         lcdm2000: set the note counts of the cassettes
    clear-jam                lcdm2000: an engineer clears a jam by hand
    insert CARD              ict3q8: a test card from hw_mocks.cards (e.g. domestic)
    insert-track2 DATA       ict3q8: a magnetic-stripe card with this track 2
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from hw_mocks.cards import CARDS
from hw_mocks.ict3q8_emulator import Ict3q8Emulator
from hw_mocks.lcdm_emulator import Lcdm2000Emulator
from hw_mocks.serial_rigs import DEMO_ATR

EMULATORS = {"lcdm2000": (Lcdm2000Emulator, 9600), "ict3q8": (Ict3q8Emulator, 38400)}
POLL = 0.2  # how often the main thread looks for a stop


class EmulateError(Exception):
    """A bad device or fault name: nothing was served."""


class CommandError(Exception):
    """A console command that cannot be carried out; answered ``error: ...``."""


def serve(device: str, faults, timing: bool, commands, out, stop: threading.Event | None = None) -> int:
    """Serve ``device`` until SIGINT/SIGTERM (or until ``stop`` is set, when not
    run in the main thread); read console commands from ``commands``."""
    emulator = build(device, faults, timing)
    stop = stop or threading.Event()
    restore = _handle_signals(stop)
    try:
        emulator.start()
        _say(out, emulator.port)
        for line in _lines(commands, stop):
            if line.strip():
                _say(out, answer(emulator, line))
        while not stop.is_set():  # never stop.wait(): the signal handler calls stop.set()
            time.sleep(POLL)
    finally:
        restore()
        emulator.stop()
    return 0


def build(device: str, faults, timing: bool):
    """The emulator, not started, with ``faults`` injected."""
    if device not in EMULATORS:
        raise EmulateError(f"no emulator {device!r} (known: {', '.join(EMULATORS)})")
    cls, baud = EMULATORS[device]
    emulator = cls(baud=baud if timing else None)
    try:
        for name in faults:
            emulator.inject(name)
    except ValueError as exc:
        emulator.stop()  # closes the pty
        raise EmulateError(str(exc)) from None
    return emulator


def _say(out, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def _handle_signals(stop: threading.Event):
    """SIGINT/SIGTERM set ``stop``; SIGTTIN is ignored so that a background
    job touching its terminal is not frozen. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handlers: dict[signal.Signals, Callable[[int, FrameType | None], Any] | signal.Handlers] = {
        signal.SIGINT: lambda *_: stop.set(),
        signal.SIGTERM: lambda *_: stop.set(),
        signal.SIGTTIN: signal.SIG_IGN,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}

    def restore():
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    return restore


def _lines(commands, stop: threading.Event):
    """The console's lines until the end of input (or a stop). A real file is
    read on its descriptor with a timeout, so a stop is seen at once."""
    if commands is None:
        return
    try:
        fd = commands.fileno()
    except (AttributeError, OSError, ValueError):
        yield from commands  # an in-memory file: it cannot block
        return
    pending = b""
    while not stop.is_set():
        if not _may_read(fd):
            time.sleep(POLL)
            continue
        if not select.select([fd], [], [], POLL)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:
            if exc.errno != errno.EIO:
                break
            time.sleep(POLL)  # a background job's read of its terminal
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending and not stop.is_set():
        yield pending.decode("utf-8", "replace")


def _may_read(fd: int) -> bool:
    """False while we are a background job of the terminal ``fd`` (reading it would stop us)."""
    try:
        return not os.isatty(fd) or os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # a terminal that is not our controlling one
        return True


# the console ------------------------------------------------------------------------
def answer(emulator, line: str) -> str:
    """Carry out one console line; the one-line answer."""
    if not line.split():
        return "error: empty command (try help)"
    name, *args = line.split()
    command = COMMANDS[emulator.name].get(name) or COMMANDS["common"].get(name)
    if command is None:
        return f"error: unknown command {name[:40]!r} (try help)"
    try:
        return "ok " + command(emulator, args)
    except (CommandError, ValueError) as exc:  # the emulator's ValueErrors name what is known
        return f"error: {exc}"


def _expect(args: list[str], usage: str, low: int, high: int | None = None) -> list[str]:
    if not low <= len(args) <= (low if high is None else high):
        raise CommandError(f"usage: {usage}")
    return args


def _number(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise CommandError(f"{text[:20]!r} is not a whole number")
    return int(text)


def _help(emulator, args) -> str:
    return "commands: " + ", ".join(HELP["common"] + HELP[emulator.name])


def _status(emulator, args) -> str:
    _expect(args, "status", 0)
    snapshot = emulator.snapshot()
    card = snapshot.get("card")
    if card:  # never show a whole card number
        tracks = card.pop("tracks")
        card["tracks"] = sorted(tracks)
        card["pan"] = mask_pan(tracks.get(2, "").split("=")[0])
    return json.dumps(snapshot, default=lambda o: o.hex() if isinstance(o, (bytes, bytearray)) else str(o))


def mask_pan(pan: str) -> str:
    """The first 6 and last 4 characters of a card number, the rest ``*``
    (all ``*`` when it is too short to show any)."""
    if len(pan) <= 10:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _fault(emulator, args) -> str:
    (name,) = _expect(args, "fault NAME", 1)
    emulator.inject(name)
    return f"fault {name} injected"


def _clear(emulator, args) -> str:
    (name,) = _expect(args, "clear NAME", 1)
    emulator.remove(name)
    return f"fault {name} cleared"


def _power(emulator, args) -> str:
    usage = "power off [AFTER] | power on"
    if args == ["on"]:
        if emulator.powered:
            return "power is already on"
        emulator.power_on()
        return "power on"
    if args[:1] != ["off"] or len(args) > 2:
        raise CommandError(f"usage: {usage}")
    after = _number(args[1]) if len(args) == 2 else 0
    emulator.power_loss(after)
    return f"power goes off {after} units into the next command" if after else "power off"


def _take_notes(emulator, args) -> str:
    _expect(args, "take", 0)
    return f"took {emulator.take_notes()} notes"


def _load(emulator, args) -> str:
    upper, lower = (_number(a) for a in _expect(args, "load UPPER LOWER", 2))
    emulator.load(upper, lower)
    return f"loaded upper={upper} lower={lower}"


def _clear_jam(emulator, args) -> str:
    _expect(args, "clear-jam", 0)
    return f"jam cleared, {emulator.clear_jam()} stuck notes taken out by hand"


def _insert(emulator, args) -> str:
    (name,) = _expect(args, "insert CARD", 1)
    card = CARDS.get(name)
    if card is None:  # not echoed: it might be a card number
        raise CommandError(f"unknown card (known: {', '.join(CARDS)})")
    _insert_card(emulator, card.track2.strip(";?"), DEMO_ATR if card.chip else None, card)
    return f"card {name} inside"


def _insert_track2(emulator, args) -> str:
    (data,) = _expect(args, "insert-track2 DATA", 1)
    data = data.removeprefix(";").removesuffix("?")
    if not (data and data.isascii() and data.isprintable()):
        raise CommandError("track 2 must be printable ASCII characters")  # not echoed
    _insert_card(emulator, data, None, None)
    return "card inside"


def _insert_card(emulator, track2: str, atr, tag) -> None:
    if not emulator.insert_card({2: track2}, atr=atr, tag=tag):
        raise CommandError(
            "the reader did not take the card: it takes one only when powered, with entry enabled and no card in"
        )


def _take_card(emulator, args) -> str:
    _expect(args, "take", 0)
    if emulator.take_card() is None:
        raise CommandError("no card at the gate")
    return "took the card"


COMMANDS = {
    "common": {"help": _help, "status": _status, "fault": _fault, "clear": _clear, "power": _power},
    "lcdm2000": {"take": _take_notes, "load": _load, "clear-jam": _clear_jam},
    "ict3q8": {"insert": _insert, "insert-track2": _insert_track2, "take": _take_card},
}
HELP = {
    "common": ["help", "status", "fault NAME", "clear NAME", "power off [AFTER]", "power on"],
    "lcdm2000": ["take", "load UPPER LOWER", "clear-jam"],
    "ict3q8": ["insert CARD", "insert-track2 DATA", "take"],
}
