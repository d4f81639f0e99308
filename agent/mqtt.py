"""MQTT publisher for telemetry (paho-mqtt 2.x, MQTT v5).

:class:`MqttPublisher` implements the ``Publisher`` protocol of
``agent.telemetry``. It connects in the background, never raises when the
broker is down (one warning per outage on logger ``agent.mqtt``), keeps QoS>0
messages queued in memory until the broker acknowledges them, and registers
the offline status as the MQTT Will.

Delivery is tracked by ``mid`` in ``on_publish`` (paho's ``is_published()`` is
unreliable across reconnects). Our lock is never held while calling
``client.publish``: paho calls ``on_publish`` with its own mutex held, and
taking both locks in opposite orders deadlocks (paho #226, #346).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.telemetry import Message

LOGGER_NAME = "agent.mqtt"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""
    def bad(why: str) -> ValueError:
        return ValueError(f"bad broker URL {url!r}: {why} "
                          "(expected mqtt://host[:port] or mqtts://host[:port])")

    if not isinstance(url, str):
        raise bad("not a string")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise bad(f"unsupported scheme {parts.scheme!r}" if parts.scheme else "no scheme")
    if parts.username is not None or parts.password is not None:
        raise bad("credentials do not belong in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("unexpected path, query or fragment")
    if not parts.hostname:
        raise bad("no host")
    try:
        port = parts.port
    except ValueError:
        raise bad("invalid port") from None
    if port == 0:
        raise bad("invalid port")
    return BrokerUrl(parts.hostname, port or DEFAULT_PORTS[scheme], scheme == "mqtts")


def _make_log(log) -> Callable[[int, str], None]:
    """Accept a Logger, a one-argument callable, or None (logger agent.mqtt)."""
    if log is None:
        log = logging.getLogger(LOGGER_NAME)
    if isinstance(log, (logging.Logger, logging.LoggerAdapter)):
        return log.log
    return lambda level, msg: log(msg)


class MqttPublisher:
    """Publishes :class:`Message` objects to an MQTT broker."""

    def __init__(self, urls: list[str], client_id: str, will: Message | None = None,
                 keepalive: int = 10, log=None, tls: dict | None = None,
                 reconnect_delay: tuple[int, int] = (1, 30)):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("MqttPublisher needs at least one broker URL")
        self.urls: list[BrokerUrl] = [parse_broker_url(u) for u in urls]
        self.url = self.urls[0]  # failover to the others is not implemented yet
        self.client_id = client_id
        self.will = will
        self.keepalive = keepalive
        self._log = _make_log(log)
        self._cond = threading.Condition()
        self._unacked: set[int] = set()
        # on_publish can run before publish() has recorded the mid: keep such
        # early acks, and QoS 0 mids (whose on_publish means "written"), with
        # a timestamp so stale entries never match a reused mid (ids wrap).
        self._early: dict[int, tuple[bool, float]] = {}
        self._qos0: dict[int, float] = {}
        self.acked = 0
        self.failed = 0
        self.dropped = 0
        self._in_outage = False
        self._started = self._stopped = False
        self._first_try = threading.Event()  # set by the first connect success or failure

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=paho.MQTTv5)
        # No c.enable_logger(): paho 2.2 logs an ERROR on every retry while offline.
        c.reconnect_delay_set(*reconnect_delay)
        if will is not None:
            c.will_set(will.topic, will.encode(), will.qos, will.retain)
        if self.url.tls:
            c.tls_set(**(tls or {}))
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c

    # -- lifecycle -------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def start(self) -> None:
        """Connect in the background; never raises for an unreachable broker."""
        if self._started:
            return
        self._started = True
        self.client.connect_async(self.url.host, self.url.port, self.keepalive)
        self.client.loop_start()

    def stop(self, final: Message | None = None, timeout: float = 2.0) -> bool:
        """Publish ``final``, flush, disconnect (suppresses the Will). Idempotent.

        Returns True if everything was acknowledged before disconnecting.
        """
        if self._stopped:
            return True
        if not self._started:
            self._stopped = True
            return not self._unacked
        if final is not None:
            self.publish(final)
        ok = self.flush(timeout)
        self._stopped = True
        self.client.disconnect()
        self.client.loop_stop()
        if not ok:
            self._log(logging.WARNING, f"MQTT stopped with {len(self.unacked)} "
                      f"unacknowledged message(s) to {self.url}")
        return ok

    # -- publishing ------------------------------------------------------
    def publish(self, message: Message) -> None:
        if self._stopped:
            self._log(logging.WARNING, f"MQTT publisher stopped; dropped {message.topic}")
            return
        info = self.client.publish(message.topic, message.encode(),
                                   message.qos, message.retain)
        rc = info.rc
        queued = rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            rc == MQTTErrorCode.MQTT_ERR_NO_CONN and message.qos > 0)
        if not queued:  # e.g. QoS 0 while offline, or 65535 mids all in use
            with self._cond:
                self.dropped += 1
            level = logging.WARNING if message.qos and self.dropped == 1 else logging.DEBUG
            self._log(level, f"MQTT dropped {message.topic} (qos {message.qos}): "
                      f"{paho.error_string(rc)} ({self.dropped} dropped so far)")
            return
        with self._cond:
            self._prune()
            early = self._early.pop(info.mid, None)
            if message.qos == 0:
                if early is None:
                    self._qos0[info.mid] = time.monotonic()
                return
            self._qos0.pop(info.mid, None)
            if early is None:
                self._unacked.add(info.mid)
            else:
                self._count(early[0])

    def _prune(self, max_age: float = 30.0) -> None:
        if len(self._early) + len(self._qos0) > 256:
            old = time.monotonic() - max_age
            self._early = {m: v for m, v in self._early.items() if v[1] > old}
            self._qos0 = {m: t for m, t in self._qos0.items() if t > old}

    def flush(self, timeout: float) -> bool:
        """Wait until every QoS>0 message so far is acknowledged (or refused:
        a PUBACK with a failure reason code counts in ``failed``, not ``acked``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._unacked:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    @property
    def unacked(self) -> frozenset[int]:
        with self._cond:
            return frozenset(self._unacked)

    # -- paho callbacks (loop thread) ------------------------------------
    def _count(self, ok: bool) -> None:
        if ok:
            self.acked += 1
        else:
            self.failed += 1
        self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        if not ok:
            self._log(logging.WARNING, f"MQTT broker refused message {mid}: {reason_code}")
        with self._cond:
            if mid in self._unacked:
                self._unacked.discard(mid)
                self._count(ok)
            elif self._qos0.pop(mid, None) is None:
                self._early[mid] = (ok, time.monotonic())

    def _outage(self, why: str) -> None:
        if not self._in_outage:
            self._in_outage = True
            self._log(logging.WARNING, f"MQTT broker {self.url} {why}; "
                      "retrying in the background, QoS 1 messages are queued")

    def wait_first_attempt(self, timeout: float) -> bool:
        """Wait until the first connection attempt has succeeded or failed; True if connected.

        A scripted demo on the virtual clock uses this, so that its burst of
        messages does not race the CONNACK (QoS 0 messages are dropped offline).
        """
        self._first_try.wait(timeout)
        return self.connected

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._first_try.set()
        if reason_code.is_failure:
            self._outage(f"refused the connection ({reason_code})")
            return
        if self._in_outage:
            self._in_outage = False
            self._log(logging.INFO, f"MQTT connected to {self.url} again")
        else:
            self._log(logging.INFO, f"MQTT connected to {self.url}")

    def _on_connect_fail(self, client, userdata) -> None:
        self._first_try.set()
        self._outage("is unreachable (TCP or TLS connect failed)")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._stopped:
            self._outage(f"connection lost ({reason_code})")
