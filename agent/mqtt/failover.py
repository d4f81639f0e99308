"""Which broker the link connects to: primary first, the next on failure, back to the primary."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.mqtt.brokers import BrokerUrl

log = logging.getLogger("agent.mqtt")
PROBE_EVERY = 1.0  # seconds between probes of the primary while on another broker

Probe = Callable[[BrokerUrl], str]  # one MQTT CONNECT: '' when a CONNACK came, else why not


class PrimaryProbe:
    """One probe of the primary on its own short-lived thread, so a hung primary never
    stalls the network thread; ``result`` is None until it has answered or timed out."""

    def __init__(self, probe: Probe, url: BrokerUrl):
        self.started = time.monotonic()
        self.result: str | None = None
        self._thread = threading.Thread(target=self._run, args=(probe, url), name="mqtt-probe", daemon=True)
        self._thread.start()

    def _run(self, probe: Probe, url: BrokerUrl) -> None:
        self.result = probe(url)


class BrokerChoice:
    """The broker to try next, in the configured order (primary first).

    A failed or lost broker moves the choice on to the next one at once. While the
    link is on another broker, the primary is probed with a real MQTT CONNECT (a
    separate client id, clean start, no Will) at most once a second; once every probe
    for ``failback_after`` seconds (0: never) got a CONNACK, the choice is the primary
    again.
    """

    def __init__(self, urls: list[BrokerUrl], failback_after: float, probe: Probe | None = None):
        self.urls = urls
        self.failback_after = failback_after
        self.probe = probe
        self.index = 0
        self._primary_ok_since: float | None = None
        self._probing: PrimaryProbe | None = None

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
        if self.index == 0 or self.failback_after <= 0 or self.probe is None:
            return False
        now = time.monotonic()
        probing = self._probing
        if probing is None or (probing.result is not None and now - probing.started >= PROBE_EVERY):
            self._probing = PrimaryProbe(self.probe, self.urls[0])
        if probing is None or probing.result is None:
            return False  # the first probe, or one still waiting for its CONNACK
        if probing.result:
            if self._primary_ok_since is not None:
                log.info("MQTT primary %s does not answer: %s", self.urls[0], probing.result)
            self._primary_ok_since = None
            return False
        if self._primary_ok_since is None:
            self._primary_ok_since = probing.started
        if now - self._primary_ok_since < self.failback_after:
            return False
        log.info("MQTT primary %s answered for %.0f s: going back to it", self.urls[0], self.failback_after)
        self.index = 0
        self._primary_ok_since = None
        self._probing = None
        return True
