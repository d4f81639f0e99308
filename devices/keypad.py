"""Keypad (PIN pad and function keys).

Like an encrypting PIN pad, the keypad itself collects the PIN and reports
only key activity until Enter. Events emitted: ``key`` (activity only),
``pin`` (pin: Pin), ``choice`` (value), ``amount`` (value), ``cancel``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

from devices.base import Device, DeviceContext, DeviceStatus, Severity
from devices.locator import Locator

log = logging.getLogger(__name__)

MODES = ("off", "pin", "choice", "amount", "confirm")


class Pin:
    """A PIN that never prints itself."""

    __slots__ = ("_digits",)

    def __init__(self, digits: str):
        self._digits = digits

    def matches(self, digits: str) -> bool:
        return self._digits == digits

    def __repr__(self) -> str:
        return "Pin(****)"

    __str__ = __repr__


class Keypad(Device):
    kind = "keypad"

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.mode = "off"
        self.options: tuple[str, ...] = ()

    def set_mode(self, mode: str, options: Iterable[str] = ()) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown keypad mode {mode!r}")
        self.mode, self.options = mode, tuple(options)

    def submit_line(self, line: str) -> None:
        """Interpret one completed entry (digits+Enter or a function key name)."""
        line = line.strip()
        digits = line.isascii() and line.isdigit()  # not "²" or other Unicode digits
        self.emit("key")
        if line.lower() in ("c", "cancel"):
            self.emit("cancel")
        elif self.mode == "pin" and digits and 4 <= len(line) <= 12:
            self.emit("pin", pin=Pin(line))
        elif self.mode == "amount" and digits and len(line) <= 9:
            self.emit("amount", value=int(line))
        elif self.mode in ("choice", "confirm") and line in self.options:
            self.emit("choice", value=line)
        elif self.mode != "off":
            self.emit("invalid_key", mode=self.mode)


class TerminalKeypad(Keypad):
    """Reads entries from the terminal, one per line (``terminal://``)."""

    def open(self) -> None:
        super().open()
        threading.Thread(target=self._read, name="keypad-terminal", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            self.submit_line(line)


_EVDEV_KEYS = {**{f"KEY_KP{d}": str(d) for d in range(10)}, **{f"KEY_{d}": str(d) for d in range(10)}}


class EvdevKeypad(Keypad):
    """A USB keypad through Linux evdev (``evdev:///dev/input/event3``)."""

    def open(self) -> None:
        """Open the input device; one that does not open stays offline with an ``offline``
        fault, and the self-test tries again."""
        try:
            import evdev  # optional: only kiosks with a USB keypad need it (the kiosk extra)
        except ImportError:
            self.raise_fault("offline", "keypad did not open: python-evdev is not installed (the kiosk extra)")
            return
        try:
            self._dev = evdev.InputDevice(self.loc.path)
        except OSError as exc:
            self.raise_fault("offline", f"keypad did not open: {exc}", Severity.ERROR)
            return
        self.clear_fault("offline")
        super().open()
        threading.Thread(target=self._read, name="keypad-evdev", daemon=True).start()

    def self_test(self) -> DeviceStatus:
        if not self.opened:
            self.open()
        return self.status

    def _read(self) -> None:
        import evdev

        buffer = ""
        for event in self._dev.read_loop():
            if event.type != evdev.ecodes.EV_KEY or event.value != 1:
                continue
            name = evdev.ecodes.KEY.get(event.code)
            if isinstance(name, list):
                name = name[0]
            if name in _EVDEV_KEYS:
                buffer += _EVDEV_KEYS[name]
                self.emit("key")
            elif name == "KEY_BACKSPACE":
                buffer = buffer[:-1]
                self.emit("key")
            elif name in ("KEY_KPENTER", "KEY_ENTER"):
                self.submit_line(buffer)
                buffer = ""
            elif name == "KEY_ESC":
                buffer = ""
                self.submit_line("cancel")
