"""The virtual card's connection to vpcd: inserting it, serving vpcd, removing it.

The card connects as a TCP *client* to the vpcd reader driver inside pcscd
(``127.0.0.1:35963`` is reader "Virtual PCD 00 00", 35964 is "... 00 01").
Messages both ways are a 2-byte big-endian length, then the payload; pcscd
speaks first:

- a 1-byte payload is a control: ``00`` power off, ``01`` power on, ``02``
  reset (no reply to these), ``04`` get ATR (reply: the ATR);
- a longer payload is a command APDU; the reply is the response APDU
  (data + SW1 SW2).

Inserting the card means connecting, removing it means closing the socket.
pcscd polls "get ATR" about every 400 ms to see whether a card is there.

Bad input from vpcd (a zero length, a length over 4096, a message that stops
half way or takes more than ``MESSAGE_TIMEOUT`` seconds to arrive) closes the
connection with a logged warning; a payload of 2..3 bytes is answered
``6700`` and an unknown control byte is ignored with a warning. The log only
ever names INS bytes and status words, never data (which can hold a PAN).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque

from hw_mocks.virtual_card.model import SW_NO_DIAGNOSIS, CardModel
from hw_mocks.virtual_card.profiles import Profile, load_profile

log = logging.getLogger("hw_mocks.virtual_card")  # one logger for the whole card

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

CONNECT_TIMEOUT = 2.0  # seconds for insert() to reach vpcd
MESSAGE_TIMEOUT = 2.0  # seconds for the rest of a message once it began
POLL_INTERVAL = 0.2  # how often the serving thread looks at its stop flag
MAX_MESSAGE = 4096  # longest message accepted from vpcd
LOG_SIZE = 64  # INS bytes kept in VirtualCard.log

# Control bytes from vpcd.
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04

# Why a card's connection ended (VirtualCard.close_reason).
REMOVED = "removed"
PULLED_OUT = "pulled out"
MUTE = "mute"
VPCD_CLOSED = "vpcd closed"
BAD_INPUT = "bad input"
CONNECTION_LOST = "connection lost"


# --------------------------------------------------------------------------
# The connection to vpcd


class _Closed(Exception):
    """The serving loop ends; args[0] is the reason."""


class VirtualCard:
    """A card that can be inserted into (connected to) a vpcd reader.

    ``profile`` is a Profile, or a profile name / path for load_profile.
    The card only ever connects to ``host``:``port``. Thread-safe.
    """

    def __init__(self, profile: Profile | str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        self.host = host
        self.port = port
        self._ops = threading.Lock()  # one insert()/remove() at a time
        self._lock = threading.Lock()  # the fields below
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._apdus = 0
        self._log: deque[int] = deque(maxlen=LOG_SIZE)
        self._close_reason: str | None = None

    def __repr__(self) -> str:
        state = "inserted" if self.inserted else f"out ({self.close_reason})"
        return f"<VirtualCard {self.profile.name} {self.host}:{self.port} {state}>"

    @property
    def inserted(self) -> bool:
        """Whether the card is connected to vpcd."""
        with self._lock:
            return self._sock is not None

    @property
    def apdus(self) -> int:
        """Command APDUs answered since the last insert()."""
        with self._lock:
            return self._apdus

    @property
    def log(self) -> tuple[int, ...]:
        """The INS bytes of the last LOG_SIZE command APDUs since the last insert()."""
        with self._lock:
            return tuple(self._log)

    @property
    def close_reason(self) -> str | None:
        """Why the last connection ended (REMOVED, PULLED_OUT, MUTE, VPCD_CLOSED,
        BAD_INPUT, CONNECTION_LOST); None while inserted or never inserted."""
        with self._lock:
            return self._close_reason

    def insert(self) -> None:
        """Connect to vpcd and serve it in a daemon thread; returns once connected.

        Raises ConnectionError when nothing accepts the connection, and
        RuntimeError when the card is already inserted.
        """
        with self._ops:
            if self.inserted:
                raise RuntimeError(f"virtual card {self.profile.name} is already inserted")
            if self._thread is not None:  # a connection that just ended
                self._thread.join()
            try:
                sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
            except OSError as e:
                raise ConnectionError(
                    f"cannot insert virtual card {self.profile.name}: nothing accepts connections "
                    f"on {self.host}:{self.port} (is pcscd running with the vsmartcard vpcd "
                    f"reader?): {e}"
                ) from e
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stop = threading.Event()
            with self._lock:
                self._sock, self._stop = sock, stop
                self._apdus, self._close_reason = 0, None
                self._log.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(sock, stop), daemon=True, name=f"virtual-card-{self.profile.name}"
            )
            self._thread.start()
            log.info("virtual card %s inserted at %s:%d", self.profile.name, self.host, self.port)

    def remove(self) -> None:
        """Pull the card out: close the connection and wait for the serving thread."""
        with self._ops:
            with self._lock:
                sock, stop, thread = self._sock, self._stop, self._thread
            if thread is None:
                return
            stop.set()
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv()
                except OSError:
                    pass
            thread.join()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection has ended by itself (pulled out, mute,
        vpcd gone, bad input); True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.inserted and (thread is None or not thread.is_alive())

    def __enter__(self) -> VirtualCard:
        self.insert()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # -- serving thread

    def _serve(self, sock: socket.socket, stop: threading.Event) -> None:
        model = CardModel(self.profile)
        name = self.profile.name
        reason = CONNECTION_LOST
        try:
            while True:
                payload = self._receive(sock, stop)
                if len(payload) == 1:
                    self._control(sock, model, payload[0])
                    continue
                with self._lock:
                    self._apdus += 1
                    count = self._apdus
                    if len(payload) >= 2:
                        self._log.append(payload[1])
                try:
                    response = model.process(payload)
                except Exception:
                    log.exception("virtual card %s: the card model failed on INS %02X", name, payload[1])
                    response = SW_NO_DIAGNOSIS
                log.debug("virtual card %s: INS %02X -> SW %s", name, payload[1], response[-2:].hex().upper())
                self._send(sock, response)
                if self.profile.pull_out_after and count >= self.profile.pull_out_after:
                    raise _Closed(PULLED_OUT)
        except _Closed as e:
            reason = e.args[0]
        except OSError as e:
            if not stop.is_set():
                log.warning("virtual card %s: connection to vpcd lost: %s", name, e)
        except Exception:  # never a silent dead thread
            log.exception("virtual card %s: serving thread failed", name)
        finally:
            if stop.is_set():
                reason = REMOVED
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                self._close_reason = reason
            log.info("virtual card %s out of the reader (%s)", name, reason)

    def _control(self, sock: socket.socket, model: CardModel, byte: int) -> None:
        if byte in (CTRL_OFF, CTRL_ON, CTRL_RESET):
            model.reset()
        elif byte == CTRL_ATR:
            if self.profile.mute:
                self._send(sock, b"")  # vpcd drops the connection
                raise _Closed(MUTE)
            self._send(sock, model.atr)
        else:
            log.warning("virtual card %s: unknown vpcd control byte %02X ignored", self.profile.name, byte)

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.settimeout(MESSAGE_TIMEOUT)
        sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _receive(self, sock: socket.socket, stop: threading.Event) -> bytes:
        """One message's payload from vpcd; raises _Closed when the connection ends."""
        first = self._recv_exact(sock, 1, stop, None)
        if not first:
            raise _Closed(VPCD_CLOSED)
        deadline = time.monotonic() + MESSAGE_TIMEOUT
        second = self._recv_exact(sock, 1, stop, deadline)
        if not second:
            return self._bad("the connection ended inside a length")
        length = int.from_bytes(first + second, "big")
        if length == 0 or length > MAX_MESSAGE:
            return self._bad(f"message length {length} (must be 1..{MAX_MESSAGE})")
        payload = self._recv_exact(sock, length, stop, deadline)
        if len(payload) < length:
            return self._bad(f"message truncated: {len(payload)} of {length} bytes")
        return payload

    def _bad(self, problem: str) -> bytes:
        log.warning("virtual card %s: bad input from vpcd, closing the connection: %s", self.profile.name, problem)
        raise _Closed(BAD_INPUT)

    def _recv_exact(self, sock: socket.socket, n: int, stop: threading.Event, deadline: float | None) -> bytes:
        """Up to n bytes; fewer only when the connection ended (or the deadline passed)."""
        buf = bytearray()
        while len(buf) < n:
            if stop.is_set():
                raise _Closed(REMOVED)
            wait = POLL_INTERVAL
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._bad(f"message incomplete after {MESSAGE_TIMEOUT} s")
                wait = min(wait, left)
            sock.settimeout(wait)
            try:
                chunk = sock.recv(n - len(buf))
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
            # vpcd writes a message's length and its payload separately; acknowledge at
            # once, or its Nagle waits for our delayed ACK (~40 ms a message).
            _quick_ack(sock)
        return bytes(buf)


def _quick_ack(sock: socket.socket) -> None:
    if hasattr(socket, "TCP_QUICKACK"):  # Linux only; the kernel clears it after each ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
