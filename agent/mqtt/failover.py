"""Which broker the link connects to: primary first, the next on failure, back to the primary."""

from __future__ import annotations

import logging
import socket
import time

from agent.mqtt.brokers import BrokerUrl

log = logging.getLogger("agent.mqtt")
PROBE_EVERY = 1.0  # seconds between TCP probes of the primary while on another broker


class BrokerChoice:
    """The broker to try next, in the configured order (primary first).

    A failed or lost broker moves the choice on to the next one at once. While the
    link is on another broker, the primary is probed (a TCP connect) at most once a
    second; once it has answered for ``failback_after`` seconds (0: never) the
    choice is the primary again.
    """

    def __init__(self, urls: list[BrokerUrl], failback_after: float):
        self.urls = urls
        self.failback_after = failback_after
        self.index = 0
        self._primary_ok_since: float | None = None
        self._last_probe = 0.0

    @property
    def target(self) -> BrokerUrl:
        """The broker to connect to now."""
        return self.urls[self.index]

    @property
    def on_primary(self) -> bool:
        return self.index == 0

    def move_on(self) -> None:
        """The current broker failed or was lost: the next site first."""
        self.index = (self.index + 1) % len(self.urls)

    def failback_due(self) -> bool:
        """Probe the primary; True (and the primary chosen) once it has been healthy long enough."""
        if self.index == 0 or self.failback_after <= 0:
            return False
        primary = self.urls[0]
        now = time.monotonic()
        if self._last_probe + PROBE_EVERY > now:
            return False
        self._last_probe = now
        try:
            socket.create_connection((primary.host, primary.port), timeout=0.5).close()
        except OSError:
            self._primary_ok_since = None
            return False
        if self._primary_ok_since is None:
            self._primary_ok_since = now
            return False
        if now - self._primary_ok_since < self.failback_after:
            return False
        log.info("MQTT primary %s healthy for %.0f s: going back to it", primary, self.failback_after)
        self.index = 0
        self._primary_ok_since = None
        return True
