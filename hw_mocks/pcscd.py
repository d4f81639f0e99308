"""A pcscd with vsmartcard's virtual reader (vpcd), for virtual chip cards.

If a pcscd already answers on ``/run/pcscd/pcscd.comm`` (the Debian service
on a kiosk, or one socket-activated by systemd), it is used as it is, with the
vpcd port from ``$ATM_VPCD_PORT`` (set for child processes of ours that
started it) or else ``/etc/reader.conf.d/vpcd`` (35963 by default). Otherwise we
start ``pcscd --foreground`` as a child process with our own reader
configuration: vpcd on a free port pair. Either way the virtual card connects
to ``127.0.0.1:port`` as vpcd's client (the server mode of Debian's vpcd; it
binds every interface, which vpcd does not let us change, but our traffic
stays on loopback).

pcscd has one socket per machine, so one daemon serves the whole process:
:func:`acquire` / :func:`release` count its users.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
SYSTEM_VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
DEFAULT_PORT = 35963
READER = "Virtual PCD 00 00"
PORT_ENV = "ATM_VPCD_PORT"  # the vpcd port of a pcscd we started, for our child processes


class PcscdError(RuntimeError):
    """pcscd or the vpcd driver is not usable; the message says what to install or start."""


def pcscd_answers() -> list[str] | None:
    """The reader names of a pcscd that answers, or None when none does."""
    from smartcard.Exceptions import SmartcardException
    from smartcard.scard import (
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCardEstablishContext,
        SCardListReaders,
        SCardReleaseContext,
    )

    try:
        hresult, context = SCardEstablishContext(SCARD_SCOPE_USER)
    except SmartcardException:
        return None
    if hresult != SCARD_S_SUCCESS:
        return None
    try:
        hresult, readers = SCardListReaders(context, [])
        return list(readers) if hresult == SCARD_S_SUCCESS else []
    finally:
        SCardReleaseContext(context)


# pcscd asks vpcd for the card every 400 ms (PCSCLITE_STATUS_POLL_RATE). A card
# swapped in before the poll after a removal is taken for the old one, whose
# handles are gone, so the new card never connects: wait out one poll first.
SETTLE = 0.45
_last_removal = 0.0


def card_removed() -> None:
    """Note that a virtual card just left the reader."""
    global _last_removal
    _last_removal = time.monotonic()


def settle() -> None:
    """Before inserting a card: let pcscd notice the last removal."""
    wait = _last_removal + SETTLE - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def system_vpcd_port() -> int:
    """The vpcd port of the system's reader configuration (DEVICENAME /dev/null:0xPORT)."""
    try:
        text = SYSTEM_VPCD_CONF.read_text()
    except OSError:
        return DEFAULT_PORT
    match = re.search(r"^\s*DEVICENAME\s+/dev/null:(0x[0-9A-Fa-f]+|\d+)", text, re.M)
    return int(match.group(1), 0) if match else DEFAULT_PORT


def _free_port_pair() -> int:
    """A port p with p and p + 1 both free (vpcd opens one per slot)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("", port))
                b.bind(("", port + 1))
            return port
        except OSError:
            continue
    raise PcscdError("no free port pair for vpcd")


class PcscDaemon:
    """The pcscd we use: found running, or started by us."""

    def __init__(self) -> None:
        self.port = 0
        self.owned = False
        self.process: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self, timeout: float = 10.0) -> PcscDaemon:
        readers = pcscd_answers()
        if readers is not None:
            if READER not in readers:
                raise PcscdError(
                    f"the running pcscd has no {READER!r} reader (readers: {readers});"
                    " install vsmartcard-vpcd and restart pcscd"
                )
            self.port = int(os.environ.get(PORT_ENV) or system_vpcd_port())
            log.info("using the running pcscd; vpcd on port %d", self.port)
            return self
        if shutil.which("pcscd") is None or not VPCD_DRIVER.exists():
            raise PcscdError("pcscd or the vpcd driver is missing: install pcscd and vsmartcard-vpcd")
        self.port = _free_port_pair()
        self._dir = tempfile.TemporaryDirectory(prefix="atm-pcscd-")
        conf = Path(self._dir.name) / "vpcd"
        conf.write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{self.port:04X}\n'
            f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{self.port:04X}\n"
        )
        self._log = open(Path(self._dir.name) / "pcscd.log", "wb")
        self.process = subprocess.Popen(
            ["pcscd", "--foreground", "-c", self._dir.name], stdout=self._log, stderr=subprocess.STDOUT
        )
        self.owned = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise PcscdError(
                    f"pcscd exited with {self.process.returncode}; it needs to write"
                    " /run/pcscd (run as root, or start the pcscd service)"
                )
            readers = pcscd_answers()
            if readers and READER in readers:
                log.info("started pcscd (pid %d); vpcd on port %d", self.process.pid, self.port)
                os.environ[PORT_ENV] = str(self.port)  # for child processes that use this pcscd
                return self
            time.sleep(0.05)
        self.stop()
        raise PcscdError(f"pcscd did not list {READER!r} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.owned and os.environ.get(PORT_ENV) == str(self.port):
            del os.environ[PORT_ENV]
        if self._dir is not None:
            self._log.close()
            self._dir.cleanup()
            self._dir = None


_lock = threading.Lock()
_shared: PcscDaemon | None = None
_users = 0


def acquire() -> PcscDaemon:
    """The process-wide daemon, started on first use."""
    global _shared, _users
    with _lock:
        if _shared is None:
            _shared = PcscDaemon().start()
        _users += 1
        return _shared


def release() -> None:
    """One user less; the last one stops a daemon we started."""
    global _shared, _users
    with _lock:
        _users -= 1
        if _users <= 0 and _shared is not None:
            _shared.stop()
            _shared, _users = None, 0
