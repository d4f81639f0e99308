"""Telemetry over MQTT 5 that never loses a message (paho-mqtt 2.x).

:class:`MqttLink` implements the ``Publisher`` protocol of ``agent.telemetry``:

- **Store first.** ``publish`` writes the message to the SQLite
  :class:`~agent.outbox.Outbox` and returns; one network thread sends it. A
  message leaves the outbox only on a PUBACK with a success reason code
  (tracked by ``mid`` in ``on_publish``; paho's ``is_published`` is not to be
  trusted across reconnects). Delivery is at least once: consumers drop
  duplicates by the message ``id``.
- **Order.** Per topic, messages go out in the order they were stored. After
  a reconnect the backlog drains in order, flagged ``"historical": true``,
  while live messages on topics without a backlog go out at once.
- **Sessions (Sparkplug's ideas, in JSON).** Every CONNECT gets a new
  ``bdSeq`` (kept in the outbox database). The Will is the retained offline
  status carrying that ``bdSeq``, so a late Will of an older session is never
  taken for the current one. Every connect publishes a birth message with the
  full metadata; an intentional stop publishes the offline status itself,
  because DISCONNECT suppresses the Will.
- **Two sites.** Brokers are tried in order, primary first. When the broker
  in use is lost or refuses us, the next one is tried at once; once the
  primary has answered again for ``failback_after`` seconds, the link returns
  to it. It is never connected to two brokers at once. Changes are reported
  as ``broker_failover`` events.
- **Commands.** The link subscribes to ``atm/v1/<atm_id>/cmd/+`` and hands each
  request to ``on_command(name, payload, reply)``; ``reply(dict)`` answers on the
  request's ResponseTopic with its CorrelationData, from any thread.

paho runs with its external-loop API (``loop_read``/``loop_write``/``loop_misc``)
on our own thread, so all of paho's callbacks run there and we choose the host
of every connection ourselves.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.outbox import CRITICAL, Outbox
from agent.telemetry import Message, Publisher

log = logging.getLogger("agent.mqtt")
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
WINDOW = 200          # messages in flight at once (the broker's Receive Maximum may lower it)
PAGE = 500            # backlog rows read from the outbox at a time


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


@dataclass(frozen=True)
class TlsFiles:
    """Server verification (``ca``) and the ATM's own certificate (mutual TLS)."""

    ca: str
    cert: str = ""
    key: str = ""

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key or None)
        return ctx


def _splice(payload: bytes, extra: dict) -> bytes:
    """Add fields to a JSON object's bytes without decoding it."""
    if not extra:
        return payload
    more = json.dumps(extra, separators=(",", ":"))[1:-1]
    return payload[:-1] + (b"," if payload != b"{}" else b"") + more.encode() + b"}"


class MqttLink(Publisher):
    """Durable, failing-over MQTT publisher and command channel of one ATM."""

    def __init__(self, urls: list[str], atm_id: str, outbox: Outbox, *, keepalive: int = 10,
                 tls: TlsFiles | None = None, failback_after: float = 30.0, connect_timeout: float = 3.0,
                 birth: dict | None = None, on_command=None, clock=time.time,
                 make_message: Callable[..., Message] | None = None):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("MqttLink needs at least one broker URL")
        self.urls = [parse_broker_url(u) for u in urls]
        if any(u.tls for u in self.urls) and tls is None:
            raise ValueError("an mqtts:// broker needs telemetry.tls_ca (and tls_cert/tls_key for mutual TLS)")
        self.atm_id = atm_id
        self.prefix = f"atm/v1/{atm_id}/"
        self._status_topic = self.prefix + "status"
        self.outbox = outbox
        self.keepalive = keepalive
        self.tls = tls
        self.failback_after = failback_after
        self.connect_timeout = connect_timeout
        self._birth: dict = dict(birth or {})   # the latest snapshot the loop handed over
        self.on_command = on_command
        self.clock = clock
        # Builds enveloped messages (boot, seq, id, ts): the agent's Telemetry.message.
        self.make_message = make_message or self._bare_message
        self.current: BrokerUrl | None = None
        self.bdseq = 0
        self.acked = self.refused = self.failovers = 0
        self._live: collections.deque = collections.deque()
        self._replies: collections.deque = collections.deque()
        self._inflight: dict[int, int] = {}      # mid -> outbox id
        self._held: dict[str, collections.deque] = {}
        self._backlog: dict[str, int] = {}       # topic -> unsent backlog rows
        self._page: collections.deque = collections.deque()
        self._boundary = self._cursor = 0
        self._index = 0
        self._primary_ok_since: float | None = None
        self._connack = threading.Event()
        self._connack_ok = False
        self._wake_r, self._wake_w = os.pipe()
        self._woken = False
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._rebirth = False
        self._final_sent = False
        self._first_attempt = threading.Event()
        self._last_upkeep = 0.0

    # -- the Publisher protocol (any thread) -----------------------------------------
    def publish(self, message: Message) -> None:
        """Store the message (committed on return), then let the network thread send it."""
        payload = message.encode()
        cls = getattr(message, "durability", CRITICAL)
        message_id = self.outbox.put(message.topic, payload, 1, message.retain, cls)
        self._live.append((message_id, message.topic, payload, message.retain))
        self._wake()

    def reply(self, response_topic: str, correlation: bytes | None, body: dict) -> None:
        """Answer a command (not stored: a request is answered on its own connection)."""
        self._replies.append((response_topic, correlation, body))
        self._wake()

    def rebirth(self) -> None:
        self._rebirth = True
        self._wake()

    def set_birth(self, facts: dict) -> None:
        """A new snapshot for the next birth (any thread; the network thread only reads it)."""
        self._birth = dict(facts)

    def _wake(self) -> None:
        if self._woken:
            return  # a wake-up is already pending
        self._woken = True
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the thread is awake anyway

    # -- lifecycle ------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected() and self._connack_ok

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
            self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.connected

    def wait_first_attempt(self, timeout: float) -> bool:
        """Wait until the first connection attempt succeeded or failed; True if connected."""
        self._first_attempt.wait(timeout)
        return self.connected

    def flush(self, timeout: float) -> bool:
        """Wait until everything stored so far is acknowledged."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.outbox.count() > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def stop(self, final: Message | None = None, timeout: float = 3.0) -> bool:
        """Send ``final`` (the offline status), drain, disconnect. Without ``final`` the
        link publishes a plain offline status itself (DISCONNECT suppresses the Will)."""
        if final is not None:
            self._final_sent = True
            self.publish(final)
        ok = self.flush(timeout) if self._thread is not None else False
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout + 2)
        self.outbox.flush_acks()
        return ok

    # -- the network thread --------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if not self.connected:
                if self._connect_next():
                    backoff = 0.0
                else:
                    backoff = min(max(backoff * 2, 0.2), 5.0) if self._index == 0 else 0.0
                    self._stop.wait(backoff)
                continue
            try:
                self._service()
            except OSError as exc:
                self._lost(f"socket error: {exc}")
        self._goodbye()

    def _new_client(self) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"atm-{self.atm_id}",
                             protocol=paho.MQTTv5)
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(0)
        if self.tls is not None:
            client.tls_set_context(self.tls.context())
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _bare_message(self, kind: str, body: dict, retain: bool = False, durability: str = CRITICAL) -> Message:
        body = {"atm_id": self.atm_id, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())), **body}
        return Message(self.prefix + kind, body, 1, retain, durability)

    def _will(self) -> bytes:
        return self.make_message("status", {"state": "offline", "service": "unknown", "reason": "connection_lost",
                                            "bdSeq": self.bdseq}, retain=True).encode()

    def _connect_next(self) -> bool:
        """Try the broker at ``_index``; on failure move on to the next one."""
        url = self.urls[self._index]
        self.bdseq = self.outbox.next_counter("bdseq")
        client = self._new_client()
        client.will_set(self.prefix + "status", self._will(), qos=1, retain=True)
        self._connack.clear()
        self._connack_ok = False
        try:
            client.connect_timeout = self.connect_timeout
            client.connect(url.host, url.port, self.keepalive, clean_start=True)
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
        except (OSError, ssl.SSLError, paho.WebsocketConnectionError) as exc:
            return self._failed(url, f"cannot connect: {exc}")
        if not self._connack_ok:
            client.disconnect()
            return self._failed(url, "no CONNACK" if not self._connack.is_set() else "refused the connection")
        previous, self.current, self._client = self.current, url, client
        log.info("MQTT connected to %s (bdSeq %d)", url, self.bdseq)
        self._on_session()
        if previous is not None and previous != url:  # after the backlog's boundary: a live event
            self.failovers += 1
            self._report_failover(previous, url)
        self._first_attempt.set()
        return True

    def _failed(self, url: BrokerUrl, why: str) -> bool:
        self._first_attempt.set()
        log.warning("MQTT broker %s unreachable: %s; messages stay in the outbox", url, why)
        self._index = (self._index + 1) % len(self.urls)
        return False

    def _report_failover(self, old: BrokerUrl, new: BrokerUrl) -> None:
        self._store_event({"event": "broker_failover", "from": str(old), "to": str(new)})

    def _store_event(self, body: dict) -> None:
        """An event of the link itself, stored and sent like any other."""
        message = self.make_message("event", body)
        payload = message.encode()
        message_id = self.outbox.put(message.topic, payload, 1, False, CRITICAL)
        self._live.append((message_id, message.topic, payload, False))

    def _on_session(self) -> None:
        """A new connection: birth, online status, command subscription, then the backlog."""
        client = self._client
        client.subscribe(self.prefix + "cmd/+", qos=1)  # before the birth, as Sparkplug does
        self._send_birth()
        self._inflight.clear()
        self._boundary = self.outbox.max_id()
        self._cursor = 0
        self._page.clear()
        self._backlog = self.outbox.topic_counts(self._boundary)
        self._held = {}

    def _send_birth(self) -> None:
        facts = self._birth
        birth = self.make_message("birth", {"bdSeq": self.bdseq, "broker": str(self.current), **facts},
                                  retain=True)
        self._client.publish(birth.topic, birth.encode(), 1, True)
        online = self.make_message("status", {"state": "online", "service": facts.get("service", "unknown"),
                                              "bdSeq": self.bdseq}, retain=True)
        self._client.publish(online.topic, online.encode(), 1, True)

    def _service(self) -> None:
        client = self._client
        if self._rebirth:
            self._rebirth = False
            self._send_birth()
        while self._replies:
            topic, correlation, body = self._replies.popleft()
            props = Properties(PacketTypes.PUBLISH)
            if correlation is not None:
                props.CorrelationData = correlation
            client.publish(topic, json.dumps(body, ensure_ascii=False).encode(), 1, False, props)
        self._fill()
        sock = client.socket()
        if sock is None:
            return self._lost("socket closed")
        wlist = [sock] if client.want_write() else []
        readable, writable, _ = select.select([sock, self._wake_r], wlist, [], 0.5)
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
            # After reading: whatever was queued before this is taken by the next _fill,
            # and a publish from now on writes to the pipe again.
            self._woken = False
        if sock in readable and client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return self._lost("read failed")
        if writable and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return self._lost("write failed")
        if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return self._lost("keepalive failed")
        self._check_failback()
        self._upkeep()

    def _upkeep(self) -> None:
        """Once a second: expire old coalescing messages, report what the bounds cost."""
        now = time.monotonic()
        if now - self._last_upkeep < 1.0:
            return
        self._last_upkeep = now
        self.outbox.expire()
        report = self.outbox.take_report()
        if report:
            self._store_event({"event": "outbox_trimmed", **report})

    def _fill(self) -> None:
        """Hand messages to paho up to the window: live ones first, unless their topic
        still has a backlog; then the backlog in order, flagged historical."""
        while len(self._inflight) < WINDOW:
            item = self._next_live()
            historical = False
            if item is None:
                item = self._next_backlog()
                historical = True
                if item is None:
                    with self._idle:
                        self._idle.notify_all()
                    return
            message_id, topic, payload, retain = item
            extra = {"historical": True} if historical else {}
            if historical:
                retain = False  # an old state must never overwrite the retained current one
            if topic == self._status_topic:
                extra["bdSeq"] = self.bdseq
            info = self._client.publish(topic, _splice(payload, extra), 1, retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # not connected any more: everything is still in the outbox
            self._inflight[info.mid] = message_id

    def _next_live(self):
        while self._live:
            item = self._live.popleft()
            if item[0] <= self._boundary:
                continue  # already part of the backlog
            if self._backlog.get(item[1]):
                self._held.setdefault(item[1], collections.deque()).append(item)
                continue
            return item
        return None

    def _next_backlog(self):
        if not self._page:
            if self._cursor >= self._boundary:
                return None  # the backlog is fixed at connect time: nothing more will come
            rows = self.outbox.pending(after=self._cursor, limit=PAGE, upto=self._boundary)
            if not rows:
                self._cursor = self._boundary
                return None
            self._page.extend(rows)
        row = self._page.popleft()
        self._cursor = row.id
        left = self._backlog.get(row.topic, 1) - 1
        if left > 0:
            self._backlog[row.topic] = left
        else:
            self._backlog.pop(row.topic, None)
            held = self._held.pop(row.topic, None)
            if held:
                self._live.extendleft(reversed(held))
        return row.id, row.topic, row.payload, row.retain

    def _check_failback(self) -> None:
        if self._index == 0 or self.failback_after <= 0:
            return
        primary = self.urls[0]
        now = time.monotonic()
        if getattr(self, "_last_probe", 0) + 1.0 > now:
            return
        self._last_probe = now
        try:
            socket.create_connection((primary.host, primary.port), timeout=0.5).close()
        except OSError:
            self._primary_ok_since = None
            return
        if self._primary_ok_since is None:
            self._primary_ok_since = now
        elif now - self._primary_ok_since >= self.failback_after:
            log.info("MQTT primary %s healthy for %.0f s: going back to it", primary, self.failback_after)
            self._leave("failback")
            self._index = 0
            self._primary_ok_since = None

    def _leave(self, reason: str) -> None:
        """Close this session on purpose: our own offline status, then DISCONNECT."""
        client = self._client
        offline = self.make_message("status", {"state": "offline", "service": "unknown", "reason": reason,
                                               "bdSeq": self.bdseq}, retain=True)
        info = client.publish(offline.topic, offline.encode(), 1, True)
        deadline = time.monotonic() + 1.0
        while not info.is_published() and time.monotonic() < deadline and client.socket() is not None:
            readable, _, _ = select.select([client.socket()], [client.socket()] if client.want_write() else [],
                                           [], 0.05)
            if readable:
                client.loop_read()
            if client.want_write():
                client.loop_write()
        client.disconnect()
        self._connack_ok = False
        self._client = None

    def _lost(self, why: str) -> None:
        log.warning("MQTT lost %s: %s", self.current, why)
        if self._client is not None:
            try:
                self._client.socket() and self._client.socket().close()
            except OSError:
                pass
        self._client = None
        self._connack_ok = False
        self._inflight.clear()
        self._index = (self._index + 1) % len(self.urls)  # the next site first

    def _goodbye(self) -> None:
        if self.connected:
            if self._final_sent and self.outbox.count() == 0:
                self._client.disconnect()  # the final status went out already
                self._client = None
            else:
                self._leave("stopped")

    # -- paho callbacks (all on this thread) ------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_ok = not reason_code.is_failure
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_ok = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        message_id = self._inflight.pop(mid, None)
        if message_id is None:
            return  # birth, status or a reply
        if reason_code.is_failure:
            self.refused += 1
            log.warning("MQTT broker refused a message (%s); it stays in the outbox", reason_code)
            return
        self.acked += 1
        self.outbox.ack(message_id)

    def _on_message(self, client, userdata, message) -> None:
        name = message.topic[len(self.prefix) + len("cmd/"):]
        props = message.properties
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)

        def reply(body: dict) -> None:
            if response:
                self.reply(response, correlation, body)

        if self.on_command is None:
            return reply({"ok": False, "command": name, "error": "unavailable", "reason": "no command handler"})
        self.on_command(name, message.payload, reply)
