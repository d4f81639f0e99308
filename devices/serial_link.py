"""Opening a serial device from a locator, with an optional byte trace.

``lcdm2000:///dev/ttyUSB0?baud=9600&trace=1``: everything after the scheme is
a pyserial port name or URL (``/dev/ttyUSB0``, ``/dev/pts/3``, ``loop://``,
``socket://host:port``, ``rfc2217://host:port``), opened through
:func:`serial.serial_for_url`. The query holds our options (:data:`LINK_OPTIONS`);
on a pyserial URL, the options its handler takes (:data:`PYSERIAL_URL_OPTIONS`,
e.g. ``socket://host:port?logging=debug``) are handed on to it. Any other
option is an error.
"""

from __future__ import annotations

import logging
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

import serial

from devices.base import Action, Device, DeviceError, Severity
from devices.locator import Locator
from devices.serial_trace import FrameTrace, Framing

log = logging.getLogger("atm.serial")

T = TypeVar("T")
READ_SLICE = 0.01  # seconds a single read may wait; reads loop to their own deadline
PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
LINK_OPTIONS = ("baud", "parity", "rtscts", "ack_timeout", "timeout", "retries", "trace")
# What pyserial's URL handlers take in their query (``timeout`` is ours, the reply time-out).
PYSERIAL_URL_OPTIONS = {
    "socket": ("logging",),
    "loop": ("logging",),
    "rfc2217": ("logging", "ign_set_control", "poll_modem"),
    "spy": ("file", "color", "raw", "all"),
}


class ProtocolError(ValueError):
    """Bytes that are not a valid frame of the protocol, or values no frame can carry."""


def frame_bytes(data: object, what: str = "frame") -> bytes:
    """``data`` as bytes (bytes, bytearray or memoryview); ProtocolError for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def byte_value(value: object, what: str) -> int:
    """``value`` if it is an int 0..255 (not a bool); ProtocolError otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise ProtocolError(f"{what} {value!r:.20} is not a byte (0..255)")
    return value


@dataclass(frozen=True)
class LineSettings:
    """A device's serial line and link timing; locator options override them."""

    baud: int
    parity: str = "N"
    rtscts: bool = False
    ack_timeout: float = 0.5  # seconds to wait for ACK/NAK after a command
    reply_timeout: float = 5.0  # seconds to wait for the reply after the ACK
    retries: int = 3  # resends after a NAK or a missing ACK


def read_line_settings(loc: Locator, defaults: LineSettings) -> LineSettings:
    """The line settings with the locator's options over ``defaults``."""
    return LineSettings(
        baud=loc.number("baud", int, 300, 921_600, defaults.baud),
        parity=loc.choice("parity", tuple(PARITIES), defaults.parity),
        rtscts=loc.flag("rtscts", defaults.rtscts),
        ack_timeout=loc.number("ack_timeout", float, 0.01, 60.0, defaults.ack_timeout),
        reply_timeout=loc.number("timeout", float, 0.01, 120.0, defaults.reply_timeout),
        retries=loc.number("retries", int, 0, 10, defaults.retries),
    )


def pyserial_url(loc: Locator) -> str:
    """The port to open: the path, plus the options a pyserial URL handler takes."""
    handler = loc.path.partition("://")[0].lower() if "://" in loc.path else ""
    passed = {k: loc.text(k) for k in PYSERIAL_URL_OPTIONS.get(handler, ()) if loc.has(k)}
    return loc.path + ("?" + urlencode(passed) if passed else "")


class PortBusy(OSError):
    """Another process holds the port (its exclusive lock): this one must not share it."""


class SerialLink:
    """One serial port: exact reads with deadlines, writes, and the trace."""

    def __init__(
        self,
        device: str,
        loc: Locator,
        defaults: LineSettings,
        redact: Callable[[bytes], str] | None = None,
        framing: Framing | None = None,
    ):
        """``redact``: the ``trace=1`` log's hex of a chunk; ``framing``: how the model's
        frames are cut and shown in ``frames``, the always-on trace (none without one)."""
        if not loc.path:
            raise loc.error("no serial port named after the scheme (e.g. lcdm2000:///dev/ttyUSB0)")
        self.settings = read_line_settings(loc, defaults)
        self.trace = loc.flag("trace")
        self.url = pyserial_url(loc)
        self.device = device
        self.redact = redact
        self.frames = FrameTrace(framing) if framing is not None else None
        self.port: serial.SerialBase | None = None

    def _open_port(self) -> serial.SerialBase:
        if self.port is None:
            raise OSError(f"port {self.url} is not open")
        return self.port

    def open(self) -> None:
        s = self.settings
        try:
            port = serial.serial_for_url(self.url, do_not_open=True)
            port.baudrate, port.parity, port.rtscts = s.baud, PARITIES[s.parity], s.rtscts
            # The timeout is set once: changing it re-applies the line settings
            # (and a pty refuses parity then). Reads loop in slices to their deadline.
            port.bytesize, port.stopbits, port.timeout = serial.EIGHTBITS, serial.STOPBITS_ONE, READ_SLICE
            if isinstance(port, serial.Serial):
                port.exclusive = True  # one process per port: a second one would steal its bytes
            port.open()
            port.reset_input_buffer()
        except termios.error as exc:  # the port refused the line settings
            line = f"{s.baud} 8{s.parity}1{' RTS/CTS' if s.rtscts else ''}"
            raise OSError(f"cannot set {self.url} to {line}: {exc.args[-1]} (errno {exc.args[0]})") from None
        except (serial.SerialException, ValueError, OSError) as exc:
            if "exclusively lock" in str(exc):
                raise PortBusy(f"cannot open {self.url}: in use by another process") from None
            raise OSError(f"cannot open {self.url}: {exc}") from None
        self.port = port

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    @property
    def is_open(self) -> bool:
        return self.port is not None and self.port.is_open

    def write(self, data: bytes) -> None:
        self._trace(">", data)
        port = self._open_port()
        port.write(data)
        port.flush()
        if self.frames is not None:
            self.frames.sent(data)

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes; fewer only when ``timeout`` seconds pass first."""
        out = bytearray()
        deadline = time.monotonic() + timeout
        port = self._open_port()
        while len(out) < n:
            out += port.read(n - len(out))
            if time.monotonic() >= deadline:
                break
        self._trace("<", bytes(out))
        if self.frames is not None and out:
            self.frames.received(bytes(out))
        return bytes(out)

    def discard_input(self) -> None:
        """Drop stale bytes (a late reply to a command we gave up on)."""
        self._open_port().reset_input_buffer()

    def _trace(self, direction: str, data: bytes) -> None:
        if self.trace and data:
            text = self.redact(data) if self.redact else data.hex(" ")
            log.info("%s %s %s", self.device, direction, text)


ACK, NAK = b"\x06", b"\x15"


class LinkFailure(Exception):
    """A command got no valid answer. ``refused``: every attempt was NAKed, so the
    device never acted on it."""

    def __init__(self, message: str, refused: bool, code: str = "no_response"):
        super().__init__(message)
        self.refused = refused
        self.code = code  # the fault code: "no_response" (silence) or "bad_reply"


def exchange(
    link: SerialLink,
    frame: bytes,
    read_frame: Callable[[float], bytes],
    decode: Callable[[bytes], T],
    reply_time: float | None = None,
    repeatable: bool = True,
) -> T:
    """The ACK/NAK handshake both our devices use.

    Send ``frame`` and wait for ACK, resending after a NAK, or after silence
    when the command is ``repeatable`` (a dispense is not: the device may have
    acted on a command whose ACK was lost, and must not act twice); then
    read the reply with ``read_frame(timeout)`` (b"" means nothing came),
    decode it, NAK a bad one so the device resends it, and ACK a good one.
    Raises :class:`LinkFailure`.
    """
    s = link.settings
    if not link.is_open:
        raise LinkFailure(f"port {link.url} is not open", True, "port_unavailable")
    refused, noise = True, b""
    link.discard_input()
    for _ in range(s.retries + 1):
        link.write(frame)
        answer = link.read(1, s.ack_timeout)
        if answer == ACK:
            break
        refused = refused and answer == NAK
        if answer not in (NAK, b""):
            noise += answer
            link.discard_input()
        if answer != NAK and not repeatable:
            raise LinkFailure(
                "no ACK to the command; not resent, it may have been carried out",
                False,
                "bad_reply" if noise else "no_response",
            )
    else:
        if refused:
            raise LinkFailure(f"every attempt was NAKed ({s.retries + 1} tries)", True, "bad_reply")
        if noise:
            raise LinkFailure(f"answered {noise.hex(' ')} instead of ACK (06) or NAK (15)", False, "bad_reply")
        raise LinkFailure("no ACK to the command", False)
    problem, timeout = "no reply after the ACK", s.reply_timeout if reply_time is None else reply_time
    for _ in range(s.retries + 1):
        raw = read_frame(timeout)
        if not raw:
            break  # silence: asking again will not help
        try:
            reply = decode(raw)
        except ProtocolError as exc:
            problem, timeout = f"bad reply: {exc}", s.reply_timeout
            link.discard_input()
            link.write(NAK)
            continue
        link.write(ACK)
        return reply
    raise LinkFailure(problem, False, "bad_reply" if problem.startswith("bad") else "no_response")


def link_error(device: Device, failure: Exception, what: str) -> DeviceError:
    """The fault for a link that does not work (no answer, garbage, NAKs, a dead port)."""
    code = getattr(failure, "code", "no_response")
    return DeviceError(device.raise_fault(code, f"{what}: {failure}", Severity.ERROR, Action.RESET))
