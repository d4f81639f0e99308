"""Serve a serial device's byte protocol on a pseudo-terminal.

An emulator owns the master side of a pty; the driver under test opens the
slave path (``emulator.port``) exactly as it would open ``/dev/ttyUSB0``.
Subclasses implement :meth:`SerialEmulator.serve_once` with their own framing
(they must not import anything from ``devices/``: an emulator that reuses the
driver's codec proves nothing).

Faults every emulator understands (``inject(name)`` / ``remove(name)``):

- ``nak_storm``: every command frame is answered with NAK;
- ``garbled``: the bytes of every reply are corrupted on the wire;
- ``silent``: the device reads but never answers (a timeout).

Power loss is not a fault flag but an act: :meth:`SerialEmulator.power_loss`
cuts the power now or part-way into the next command, :meth:`power_on`
brings it back.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import termios
import threading
import time

log = logging.getLogger(__name__)

COMMON_FAULTS = ("nak_storm", "garbled", "silent")


class PowerLost(Exception):
    """Raised inside an emulator command when the simulated power goes."""


class SerialEmulator:
    """A device on a pty, served by one thread; control calls may come from any thread."""

    name = "device"
    FAULTS: tuple[str, ...] = ()  # device-specific fault names
    bits_per_byte = 10  # 8N1: start + 8 data + stop

    def __init__(self, baud: int | None = None):
        self.baud = baud  # None: as fast as the pty goes; else real line timing
        self.lock = threading.RLock()
        self.faults: set[str] = set()
        self.powered = True
        self._power_loss_after: int | None = None
        self.received = 0  # command frames received (subclasses count them)
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        os.close(slave)  # not held open: a driver's close shows here as EIO (see _read_master)
        self._driver_attached = False
        self._reset_line()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = bytearray()

    # lifecycle ------------------------------------------------------------------
    def start(self) -> SerialEmulator:
        self._thread = threading.Thread(target=self._serve, name=f"emulator-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            if self._thread.is_alive():  # blocked on a full pty: never close an fd it may still use
                log.warning("%s emulator thread did not stop; its pty stays open", self.name)
                return
        try:
            os.close(self.master)
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self.serve_once()
            except OSError as exc:  # the pty went away
                if not self._stop.is_set():
                    log.warning("%s emulator stopped: %s", self.name, exc)
                return
            except Exception:  # a bug in the emulator must not look like a silent device
                log.exception("%s emulator failed", self.name)
                return

    def serve_once(self) -> None:
        """Read one command (or time out briefly) and answer it."""
        raise NotImplementedError

    # faults ---------------------------------------------------------------------
    def inject(self, name: str) -> None:
        self._check(name)
        with self.lock:
            self.faults.add(name)

    def remove(self, name: str) -> None:
        self._check(name)
        with self.lock:
            self.faults.discard(name)

    def _check(self, name: str) -> None:
        known = COMMON_FAULTS + self.FAULTS
        if name not in known:
            raise ValueError(f"{self.name} emulator has no fault {name!r} (known: {', '.join(known)})")

    def power_loss(self, after: int = 0) -> None:
        """Cut the power ``after`` units of work from now (notes for a dispenser, card
        moves for a reader), in whichever commands do them: status polls in between do
        none, so a test can arm it before a dispense that comes after a few polls. The
        device then stays silent until :meth:`power_on`. ``after=0`` cuts it at once."""
        with self.lock:
            if after <= 0:
                self._power_off()
            else:
                self._power_loss_after = after

    def power_on(self) -> None:
        """Power returns: the device restarts from its persistent state."""
        with self.lock:
            self.powered = True
            self.on_power_on()

    def on_power_on(self) -> None:
        """Subclasses reset their volatile state here."""

    def _power_off(self) -> None:
        self.powered = False
        self._power_loss_after = None

    def work_unit(self) -> None:
        """Call once per unit of work inside a command, holding ``self.lock``;
        raises PowerLost when armed."""
        if self._power_loss_after is not None:
            self._power_loss_after -= 1
            if self._power_loss_after <= 0:
                self._power_off()
                raise PowerLost()

    # the wire -------------------------------------------------------------------
    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes from the driver; fewer when ``timeout`` passes."""
        out = bytearray(self._pending[:n])
        del self._pending[:n]
        fresh = len(out)
        deadline = time.monotonic() + timeout
        while len(out) < n and not self._stop.is_set():
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.master], [], [], min(left, 0.05))
            if ready:
                chunk = self._read_master(n - len(out))
                if chunk is not None:
                    out += chunk
                    continue
                time.sleep(min(left, 0.05))  # no driver has the port open
            if left <= 0:
                break
        self._line_delay(len(out) - fresh)  # put-back bytes were timed when first read
        return bytes(out)

    def _read_master(self, n: int) -> bytes | None:
        """Bytes from the driver; None while no driver has the port open (EIO)."""
        try:
            data = os.read(self.master, n)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            if self._driver_attached:  # the driver closed the port
                self._driver_attached = False
                self._reset_line()
            return None
        self._driver_attached = True
        return data

    def _reset_line(self) -> None:
        """Put the port back to raw 38400 8N1, as a port nobody has configured.

        A pty ignores parity, and the kernel then refuses a driver's request for
        parity that changes nothing else (termios.error 22): a pty left at the
        previous driver's 9600 8E1 could not be opened at 9600 8E1 again. A real
        port has no such memory problem, so the emulator forgets the settings.
        """
        attrs = termios.tcgetattr(self.master)
        attrs[0] = attrs[1] = attrs[3] = 0  # no input, output or local processing
        attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL | termios.B38400
        attrs[4] = attrs[5] = termios.B38400
        termios.tcsetattr(self.master, termios.TCSANOW, attrs)

    def unread(self, data: bytes) -> None:
        """Put bytes back to be read again (after a resync)."""
        self._pending[:0] = data

    def write(self, data: bytes) -> None:
        """Send bytes to the driver, unless the device is silent or unpowered."""
        with self.lock:
            if not self.powered or "silent" in self.faults:
                return
            if "garbled" in self.faults:
                data = bytes(b ^ 0x5A for b in data)
        self._line_delay(len(data))
        os.write(self.master, data)

    def drain_input(self) -> None:
        """Forget whatever the driver sent that was not read yet."""
        self._pending.clear()
        while select.select([self.master], [], [], 0)[0]:
            if not self._read_master(4096):
                break

    def _line_delay(self, nbytes: int) -> None:
        if self.baud and nbytes:
            time.sleep(nbytes * self.bits_per_byte / self.baud)
