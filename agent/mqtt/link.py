"""The MQTT link: the network thread and its broker connection, composing the other parts."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from agent.mqtt.brokers import BrokerUrl, TlsFiles, parse_broker_url
from agent.mqtt.commands import CommandChannel
from agent.mqtt.connection import BrokerConnection, WakeUp, probe_connect
from agent.mqtt.drain import OutboxDrain
from agent.mqtt.failover import BrokerChoice
from agent.mqtt.session import SessionMessages
from agent.outbox import Outbox, OutboxError
from agent.telemetry import Message, Publisher

log = logging.getLogger("agent.mqtt")

RESTART_LIMIT = 10  # unexpected failures of the link within RESTART_WINDOW before it gives up (ours)
RESTART_WINDOW = 60.0


class MqttLink(Publisher):
    """Durable, failing-over MQTT publisher and command channel of one ATM.

    It owns the network thread and the :class:`BrokerConnection` of the moment; the
    :class:`BrokerChoice` picks the broker, the :class:`OutboxDrain` what to send,
    the :class:`CommandChannel` handles requests and replies, and
    :class:`SessionMessages` builds the births and statuses.
    """

    def __init__(
        self,
        urls: list[str],
        atm_id: str,
        outbox: Outbox,
        *,
        keepalive: int = 10,
        tls: TlsFiles | None = None,
        failback_after: float = 30.0,
        ack_deadline: float = 2.0,
        connect_timeout: float = 3.0,
        birth: dict | None = None,
        on_command=None,
        clock=time.time,
        make_message: Callable[..., Message] | None = None,
    ):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("MqttLink needs at least one broker URL")
        self.urls = [parse_broker_url(u) for u in urls]
        if any(u.tls for u in self.urls) and tls is None:
            raise ValueError("an mqtts:// broker needs telemetry.tls_ca (and tls_cert/tls_key for mutual TLS)")
        self.atm_id = atm_id
        self.outbox = outbox
        self.keepalive = keepalive
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.ack_deadline = ack_deadline  # a silent broker is left after this (see BrokerConnection)
        # Builds enveloped messages (boot, seq, id, ts): the agent's Telemetry.message.
        self.messages = SessionMessages(atm_id, make_message, clock)
        self.prefix = self.messages.prefix
        self.brokers = BrokerChoice(self.urls, failback_after, probe=self._probe)
        self.drain = OutboxDrain(outbox, self.messages.status_topic)
        self._wakeup = WakeUp()
        self.commands = CommandChannel(self.prefix, on_command, self._wakeup.set)
        self._birth: dict = dict(birth or {})  # the latest snapshot the loop handed over
        self.current: BrokerUrl | None = None
        self.bdseq = 0
        self._unsaved_bdseq = 0  # a bdSeq used while the outbox could not write it
        self.failovers = 0
        self._connection: BrokerConnection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rebirth = False
        self._final_sent = False
        self._first_attempt = threading.Event()
        self.restarts = 0  # turns that failed with an unexpected exception
        self._recent_restarts: collections.deque[float] = collections.deque()
        self.failure: str | None = None  # set when the link gave up (the agent then exits 1)

    # -- the Publisher protocol (any thread) -----------------------------------------
    def publish(self, message: Message) -> None:
        """Store the message (committed on return), then let the network thread send it."""
        self.drain.store(message)
        self._wakeup.set()

    def reply(self, response_topic: str, correlation: bytes | None, body: dict) -> None:
        """Answer a command (not stored: a request is answered on its own connection)."""
        self.commands.reply(response_topic, correlation, body)

    def rebirth(self) -> None:
        self._rebirth = True
        self._wakeup.set()

    def set_birth(self, facts: dict) -> None:
        """A new snapshot for the next birth (any thread; the network thread only reads it)."""
        self._birth = dict(facts)

    @property
    def on_command(self) -> Callable | None:
        """``on_command(request)``, called on the network thread for each :class:`Request`."""
        return self.commands.on_command

    @on_command.setter
    def on_command(self, handler: Callable | None) -> None:
        self.commands.on_command = handler

    @property
    def acked(self) -> int:
        return self.drain.acked

    @property
    def refused(self) -> int:
        return self.drain.refused

    def link_status(self) -> dict:
        """Any thread: the connected broker, the outbox's backlog, the last acknowledgement."""
        try:
            backlog: int | None = self.outbox.count()
        except OutboxError as exc:
            log.warning("link status: %s", exc)
            backlog = None
        last = self.drain.last_ack
        connected = self.connected
        return {
            "transport": "mqtt",
            "connected": connected,
            "broker": str(self.current) if connected and self.current else None,
            "brokers": [str(u) for u in self.urls],
            "backlog": backlog,
            "acked": self.drain.acked,
            "refused": self.drain.refused,
            "last_ack": _iso(last) if last is not None else None,
            "failovers": self.failovers,
            "restarts": self.restarts,
        }

    # -- lifecycle ------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

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
        return self.drain.wait_empty(timeout)

    def stop(self, final: Message | None = None, timeout: float = 3.0) -> bool:
        """Send ``final`` (the offline status), drain, disconnect. Without ``final`` the
        link publishes a plain offline status itself (DISCONNECT suppresses the Will)."""
        if final is not None:
            self._final_sent = True
            self.publish(final)
        ok = self.flush(timeout) if self._thread is not None else False
        self._stop.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout + 2)
        self.outbox.flush_acks()
        return ok

    # -- the network thread --------------------------------------------------------------
    def _run(self) -> None:
        """The network thread: turns until stopped; an exception in a turn restarts the link."""
        backoff = 0.0
        while not self._stop.is_set():
            try:
                backoff = self._turn(backoff)
            except Exception as exc:  # nothing may end the thread: every message depends on it
                if not self._restart(exc):
                    break
        try:
            self._goodbye()
        except Exception as exc:
            log.error("MQTT link could not say goodbye: %r", exc)

    def _turn(self, backoff: float) -> float:
        """Connect, or serve the connection, once; the backoff for the next connect."""
        if not self.connected:
            if self._connect_next():
                return 0.0
            backoff = min(max(backoff * 2, 0.2), 5.0) if self.brokers.on_primary else 0.0
            self._stop.wait(backoff)
            return backoff
        try:
            self._service()
        except OSError as exc:
            self._lost(f"socket error: {exc}")
        return backoff

    def _restart(self, exc: Exception) -> bool:
        """Drop the connection after an unexpected error and report it; False once the link
        has failed RESTART_LIMIT times within RESTART_WINDOW seconds (``failure`` says why)."""
        now = time.monotonic()
        self.restarts += 1
        self._recent_restarts.append(now)
        while self._recent_restarts and self._recent_restarts[0] < now - RESTART_WINDOW:
            self._recent_restarts.popleft()
        error = repr(exc)[:200]
        log.error("MQTT link failed (%s); restarting it (restart %d)", error, self.restarts)
        try:
            self._lost(f"link error: {error}")
        except Exception as again:
            log.error("MQTT link could not drop its connection: %r", again)
            self._connection = None
        if len(self._recent_restarts) >= RESTART_LIMIT:
            self.failure = f"{len(self._recent_restarts)} failures within {RESTART_WINDOW:g} s, the last: {error}"
            log.critical("MQTT link gave up: %s", self.failure)
            return False
        try:
            self._store_event({"event": "link_restarted", "error": error, "restarts": self.restarts})
        except Exception as again:  # the outbox is failing too: the log has it
            log.error("link_restarted could not be stored: %r", again)
        self._stop.wait(min(0.2 * 2 ** (len(self._recent_restarts) - 1), 5.0))
        return True

    def _connect_next(self) -> bool:
        """Try the chosen broker; on success open the session (command subscription, birth,
        then the backlog), on failure move on to the next broker."""
        url = self.brokers.target
        self.bdseq = self._next_bdseq()
        connection = BrokerConnection(
            url,
            f"atm-{self.atm_id}",
            keepalive=self.keepalive,
            tls=self.tls,
            connect_timeout=self.connect_timeout,
            on_publish=self.drain.on_publish,
            on_message=self.commands.on_message,
            ack_deadline=self.ack_deadline,
        )
        why = connection.open(self.messages.status_topic, self.messages.will(self.bdseq))
        if why:
            self._first_attempt.set()
            log.warning("MQTT broker %s unreachable: %s; messages stay in the outbox", url, why)
            self.brokers.move_on()
            return False
        previous, self.current, self._connection = self.current, url, connection
        log.info("MQTT connected to %s (bdSeq %d)", url, self.bdseq)
        connection.subscribe(self.commands.topic)  # before the birth, as Sparkplug does
        self._send_birth(connection)
        self.drain.new_session()
        if previous is not None and previous != url:  # after the backlog's boundary: a live event
            self.failovers += 1
            self._store_event({"event": "broker_failover", "from": str(previous), "to": str(url)})
        self._first_attempt.set()
        return True

    def _next_bdseq(self) -> int:
        """A new bdSeq, saved in the outbox; while it cannot be written, the next one in memory."""
        try:
            return self.outbox.next_counter("bdseq")
        except OutboxError as exc:
            self._unsaved_bdseq = max(self.bdseq, self._unsaved_bdseq) + 1
            log.error("%s; bdSeq %d is used unsaved (saved once the outbox can write)", exc, self._unsaved_bdseq)
            return self._unsaved_bdseq

    def _save_bdseq(self) -> None:
        try:
            self.outbox.raise_counter("bdseq", self._unsaved_bdseq)
            self._unsaved_bdseq = 0
        except OutboxError as exc:
            log.debug("%s; bdSeq saved later", exc)  # still full: tried again at the next turn

    def _probe(self, url: BrokerUrl) -> str:
        """A failback probe: a CONNACK from ``url`` for a client id of its own ('' if it came)."""
        return probe_connect(url, f"atm-{self.atm_id}-probe", self.tls, self.connect_timeout)

    def _store_event(self, body: dict) -> None:
        """An event of the link itself, stored and sent like any other."""
        self.drain.store(self.messages.event(body))

    def _send_birth(self, connection: BrokerConnection) -> None:
        facts = self._birth
        for message in (
            self.messages.birth(self.bdseq, str(self.current), facts),
            self.messages.online(self.bdseq, facts),
        ):
            connection.publish(message.topic, message.encode(), True)

    def _service(self) -> None:
        """One turn while connected: rebirth, replies, the outbox, the socket, failback, upkeep."""
        connection = self._connection
        assert connection is not None  # called only while connected
        if self._rebirth:
            self._rebirth = False
            self._send_birth(connection)
        self.commands.send_replies(connection.publish)
        self.drain.fill(connection.publish, self.bdseq)
        why = connection.step(self._wakeup)
        if why:
            return self._lost(why)
        if self.brokers.failback_due():
            self._leave(connection, "failback")
        report = self.drain.upkeep()
        if self._unsaved_bdseq:
            self._save_bdseq()
        if report:
            self._store_event({"event": "outbox_trimmed", **report})

    def _leave(self, connection: BrokerConnection, reason: str) -> None:
        """Close this session on purpose: our own offline status, then DISCONNECT."""
        offline = self.messages.offline(self.bdseq, reason)
        self.commands.send_replies(connection.publish)  # the last answers on their own connection
        connection.leave(offline.topic, offline.encode())
        self._connection = None
        self.commands.drop_replies()

    def _lost(self, why: str) -> None:
        log.warning("MQTT lost %s: %s", self.current, why)
        if self._connection is not None:
            self._connection.drop()
        self._connection = None
        self.commands.drop_replies()
        self.drain.connection_lost()
        self.brokers.move_on()  # the next site first

    def _goodbye(self) -> None:
        connection = self._connection
        if connection is not None and connection.connected:
            if self._final_sent and self.outbox.count() == 0:
                connection.disconnect()  # the final status went out already
                self._connection = None
            else:
                self._leave(connection, "stopped")


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
