"""systemd's notify protocol (``sd_notify(3)``, ``sd_watchdog_enabled(3)``), for ``Type=notify``.

Under systemd, ``NOTIFY_SOCKET`` names a Unix datagram socket (a path, or ``@name`` in
the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` the watchdog's
period (``WATCHDOG_PID``, when set, the process it is for). Each message is one datagram
of ``KEY=value`` lines. The documented protocol is a few lines of the standard library,
so no binding is needed (ours).

The agent sends ``READY=1`` once its start-up (self-tests, speech cache) is done,
``STATUS=`` whenever the service changes, ``STOPPING=1`` when it stops, and
``WATCHDOG=1`` every half period *from the state machine's own loop*: a loop that hangs
stops the pings, and systemd restarts the live process (``Restart=on-failure``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("agent.systemd")

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
STATUS_EVERY = 1.0  # seconds between looks at the service for STATUS= without a watchdog


class Notifier:
    """Sends notify messages to ``NOTIFY_SOCKET``; does nothing outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        """``environ``: the process's own by default, and then the variables are taken out
        of it (``sd_notify``'s ``unset_environment``): a child (the local mosquitto, aplay)
        must not speak for the agent, nor be taken for it."""
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_seconds(env)
        if environ is None:
            for name in NOTIFY_VARIABLES:
                os.environ.pop(name, None)
        self._sock: socket.socket | None = None
        self._warned: set[str] = set()
        if self.address is not None:  # never waits: a receiver that stopped reading must not hold the loop
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str) -> bool:
        """One message (``READY="1"``, ``STATUS="..."``); False if it could not be sent (logged once a kind)."""
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(f"{key}={value.replace(chr(10), ' ')}" for key, value in fields.items())
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:  # systemd gone, or its queue full (dropped, not waited for): never the ATM's problem
            kinds = ", ".join(fields)
            if kinds not in self._warned:  # said once a kind, not at every ping
                self._warned.add(kinds)
                log.warning("systemd notify %s: %s (dropped; said once)", kinds, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):  # the abstract namespace: a leading NUL byte
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET %r is neither a path nor @name: not notifying", value)
    return None


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog's period in seconds, if it is on for this process (``sd_watchdog_enabled``)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def status_text(service: str, functions: list[str], hold_reason: str = "") -> str:
    """``STATUS=``: the service as people read it, e.g. ``in service: withdrawal, deposit``."""
    words = service.replace("_", " ")
    if service == "out_of_service" and hold_reason:
        return f"{words}: {hold_reason}"
    return f"{words}: {', '.join(functions)}" if functions else words


class Supervision:
    """The loop's side: a timer on the loop's scheduler pings the watchdog every half period
    and sends ``STATUS=`` when the service has changed. ``status()`` is read on the loop."""

    def __init__(
        self, notifier: Notifier, call_later: Callable[[float, Callable[[], None]], object], status: Callable[[], str]
    ):
        self.notifier = notifier
        self.call_later = call_later
        self.status = status
        self.last_status = ""
        self.interval = notifier.watchdog_s / 2 if notifier.watchdog_s else STATUS_EVERY

    def start(self) -> None:
        """From the loop (or before it runs): the first tick at once."""
        if self.notifier.enabled:
            self.call_later(0, self._tick)

    def _tick(self) -> None:
        self.call_later(self.interval, self._tick)
        fields: dict[str, str] = {}
        if self.notifier.watchdog_s:
            fields["WATCHDOG"] = "1"
        status = self.status()
        if status != self.last_status:
            fields["STATUS"] = self.last_status = status
        if fields:
            self.notifier.send(**fields)
