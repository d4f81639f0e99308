"""One paho connection to one broker, driven by the network thread (paho's external loop)."""

from __future__ import annotations

import os
import select
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.mqtt.brokers import BrokerUrl, TlsFiles
from agent.mqtt.drain import WINDOW


class WakeUp:
    """A self-pipe that wakes the network thread's ``select``; at most one wake-up pending."""

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._pending = False

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        """Wake the thread (any thread)."""
        if self._pending:
            return  # a wake-up is already pending
        self._pending = True
        try:
            os.write(self._write, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the thread is awake anyway

    def clear(self) -> None:
        """Take the pending wake-ups: whatever was queued before is taken by the thread's next
        turn, and a wake-up from now on writes to the pipe again."""
        try:
            os.read(self._read, 4096)
        except BlockingIOError:
            pass
        self._pending = False


class BrokerConnection:
    """A paho MQTT 5 client for one connection to ``url``; every call on the network thread.

    A broker that stops answering but keeps the connection open (a hung or SIGSTOPped
    process, a silent site) is noticed at ``ack_deadline``: once a PUBLISH or PINGREQ has
    waited that long for its answer and nothing at all came from the broker meanwhile,
    the connection counts as lost (``step`` says why). 0 leaves it to the keepalive.
    """

    def __init__(
        self,
        url: BrokerUrl,
        client_id: str,
        *,
        keepalive: int,
        tls: TlsFiles | None,
        connect_timeout: float,
        on_publish: Callable,
        on_message: Callable,
        ack_deadline: float = 0.0,
    ):
        self.url = url
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.ack_deadline = ack_deadline
        self._on_acked = on_publish
        self._unacked: dict[int, float] = {}  # mid -> when it was handed to paho, oldest first
        self._heard = time.monotonic()  # the last time bytes came from the broker
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(0)
        self._tls = tls  # its context is made at each open: files rotated or broken show there
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._connack = threading.Event()
        self._accepted = False

    @property
    def connected(self) -> bool:
        return self._client.is_connected() and self._accepted

    def open(self, will_topic: str = "", will: bytes = b"") -> str:
        """Connect (with a retained Will when given) and wait for the CONNACK: '' when
        accepted, else why not."""
        client = self._client
        if will_topic:
            client.will_set(will_topic, will, qos=1, retain=True)
        try:
            if self._tls is not None:
                client.tls_set_context(self._tls.context())
            client.connect_timeout = self.connect_timeout
            client.connect(self.url.host, self.url.port, self.keepalive, clean_start=True)
            deadline = time.monotonic() + self.connect_timeout
            while not self._connack.is_set() and time.monotonic() < deadline:
                sock = client.socket()
                if sock is None:
                    break
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    client.loop_read()
                if client.want_write():
                    client.loop_write()
        except (OSError, ssl.SSLError, paho.WebsocketConnectionError, UnicodeError, ValueError) as exc:
            return f"cannot connect: {exc}"  # UnicodeError: a name the resolver cannot take
        if not self._accepted:
            client.disconnect()
            self.drop()
            return "no CONNACK" if not self._connack.is_set() else "refused the connection"
        self._heard = time.monotonic()
        return ""

    def publish(self, topic: str, payload: bytes, retain: bool, properties=None) -> paho.MQTTMessageInfo:
        """QoS 1; paho's message info (its ``mid`` comes back in ``on_publish``)."""
        info = self._client.publish(topic, payload, 1, retain, properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._unacked[info.mid] = time.monotonic()
        return info

    def subscribe(self, topic: str) -> None:
        """QoS 1; retained messages are not sent at subscription (a retained request must not
        run again at every connection) and keep their retain flag when published live."""
        options = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        self._client.subscribe(topic, options=options)

    def step(self, wake: WakeUp) -> str:
        """One turn of the loop: wait (0.5 s at most) for the socket or ``wake``, then read,
        write and keep alive. '' or why the connection is lost; OSError passes through."""
        client = self._client
        sock = client.socket()
        if sock is None:
            return "socket closed"
        wlist = [sock] if client.want_write() else []
        rlist: list = [sock, wake.fileno()]
        waiting = self._waiting_since()
        readable, writable, _ = select.select(rlist, wlist, [], 0.1 if waiting else 0.5)
        if wake.fileno() in readable:
            wake.clear()
        if sock in readable:
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return "read failed"
            self._heard = time.monotonic()
        if writable and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return "write failed"
        if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return "keepalive failed"
        return self._silence()

    def _waiting_since(self) -> float:
        """When the oldest unanswered PUBLISH or PINGREQ went out (monotonic), or 0."""
        oldest = next(iter(self._unacked.values()), 0.0)
        # paho has no hook for PINGRESP: its private _ping_t is the PINGREQ's time
        # (time.monotonic), 0 once the PINGRESP came
        ping = float(getattr(self._client, "_ping_t", 0.0) or 0.0)
        return min(t for t in (oldest, ping) if t) if oldest or ping else 0.0

    def _silence(self) -> str:
        """Why the broker counts as gone (silent past ``ack_deadline``), or ''."""
        waiting = self._waiting_since()
        if not self.ack_deadline or not waiting:
            return ""
        silent = time.monotonic() - max(waiting, self._heard)
        if silent < self.ack_deadline:
            return ""
        return f"no answer for {silent:.1f} s (telemetry.ack_deadline {self.ack_deadline:g} s)"

    def leave(self, topic: str, offline: bytes) -> None:
        """Close on purpose: publish our retained offline status (1 s for its PUBACK), then DISCONNECT."""
        client = self._client
        info = client.publish(topic, offline, 1, True)
        deadline = time.monotonic() + 1.0
        while not info.is_published() and time.monotonic() < deadline:
            sock = client.socket()
            if sock is None:
                break
            readable, _, _ = select.select([sock], [sock] if client.want_write() else [], [], 0.05)
            if readable:
                client.loop_read()
            if client.want_write():
                client.loop_write()
        self.disconnect()

    def disconnect(self) -> None:
        self._client.disconnect()
        self._accepted = False

    def drop(self) -> None:
        """The connection is lost: close its socket, if any."""
        try:
            sock = self._client.socket()
            if sock is not None:
                sock.close()
        except OSError:
            pass
        self._accepted = False

    # -- paho callbacks ---------------------------------------------------------------------
    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._unacked.pop(mid, None)
        self._on_acked(client, userdata, mid, reason_code, properties)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._accepted = not reason_code.is_failure
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._accepted = False


def _ignore(*_args) -> None:
    """A callback for a connection that publishes and subscribes nothing."""


def probe_connect(url: BrokerUrl, client_id: str, tls: TlsFiles | None, timeout: float) -> str:
    """One MQTT CONNECT (clean start, no Will) and a DISCONNECT: '' when the broker sent a
    CONNACK accepting it within ``timeout``, else why not. A TCP accept alone proves nothing:
    a hung broker's kernel still completes the handshake."""
    connection = BrokerConnection(
        url,
        client_id,
        keepalive=max(5, int(timeout) + 1),
        tls=tls,
        connect_timeout=timeout,
        on_publish=_ignore,
        on_message=_ignore,
    )
    try:
        why = connection.open()
    except Exception as exc:  # a probe must never take the network thread down
        why = f"probe failed: {exc!r}"
    if not why:
        connection.disconnect()
    connection.drop()
    return why
