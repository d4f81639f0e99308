"""What the link sends next from the outbox, and what is in flight until its PUBACK."""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable

from paho.mqtt.enums import MQTTErrorCode

from agent.outbox import CRITICAL, Outbox, OutboxError
from agent.telemetry import Message

log = logging.getLogger("agent.mqtt")
WINDOW = 200  # messages in flight at once (the broker's Receive Maximum may lower it)
PAGE = 500  # backlog rows read from the outbox at a time
MAX_UNSTORED = 10_000  # messages kept in memory while the outbox cannot store (a full disk)
RETRY_EVERY = 1.0  # seconds between attempts to store them

Item = tuple[int, str, bytes, bool]  # outbox id, topic, payload, retain


def splice(payload: bytes, extra: dict) -> bytes:
    """Add fields to a JSON object's bytes without decoding it."""
    if not extra:
        return payload
    more = json.dumps(extra, separators=(",", ":"))[1:-1]
    return payload[:-1] + (b"," if payload != b"{}" else b"") + more.encode() + b"}"


class OutboxDrain:
    """Stored messages on their way to the broker, in order per topic.

    ``store`` (any thread) commits a message to the outbox and queues it as live.
    Everything else runs on the network thread: at each new session the rows stored
    so far become the backlog (read in pages, sent flagged ``historical``); a live
    message whose topic still has a backlog is held until that topic's backlog is
    sent; a message leaves the outbox only on a successful PUBACK of its ``mid``.

    While the outbox cannot store (a full disk), messages are kept in memory, in order,
    up to ``MAX_UNSTORED`` (beyond that they are counted in ``lost``, and their ``seq``
    is missing downstream); they are sent from memory after everything stored, and
    stored once the outbox can write again. Memory does not survive a crash.
    """

    def __init__(self, outbox: Outbox, status_topic: str):
        self.outbox = outbox
        self.status_topic = status_topic
        self.acked = self.refused = 0
        self.last_ack: float | None = None  # wall time of the last acknowledged message
        self._live: collections.deque[Item] = collections.deque()
        self._inflight: dict[int, int] = {}  # mid -> outbox id
        self._held: dict[str, collections.deque[Item]] = {}
        self._backlog: dict[str, int] = {}  # topic -> unsent backlog rows
        self._page: collections.deque = collections.deque()
        self._boundary = self._cursor = 0
        self._idle = threading.Condition()
        self._last_upkeep = 0.0
        # while the outbox cannot store: key -> (topic, payload, retain, durability), in order
        self._unstored: collections.OrderedDict[int, tuple[str, bytes, bool, str]] = collections.OrderedDict()
        self._keys = itertools.count(1)
        self._memory = threading.Lock()
        self.store_error = ""  # why the outbox cannot store now, or ''
        self.lost = 0  # messages neither stored nor kept (memory full too)

    # -- any thread ---------------------------------------------------------------------
    def store(self, message: Message) -> None:
        """Commit the message to the outbox (done on return) and queue it for sending."""
        payload = message.encode()
        cls = getattr(message, "durability", CRITICAL)
        with self._memory:
            if not self._unstored:
                try:
                    message_id = self.outbox.put(message.topic, payload, 1, message.retain, cls)
                except OutboxError as exc:
                    self._cannot_store(exc)
                else:
                    self._live.append((message_id, message.topic, payload, message.retain))
                    if self.store_error:
                        log.warning("outbox %s stores again", self.outbox.path)
                        self.store_error = ""
                    return
            if len(self._unstored) >= MAX_UNSTORED:
                self.lost += 1
                log.error(
                    "%s: %d messages in memory already; message lost: %s", self.store_error, MAX_UNSTORED, payload[:120]
                )
                return
            self._unstored[next(self._keys)] = (message.topic, payload, message.retain, cls)

    def _cannot_store(self, exc: OutboxError) -> None:
        if not self.store_error:
            log.error(
                "%s; messages are kept in memory (at most %d) and sent from there until it stores again",
                exc,
                MAX_UNSTORED,
            )
        self.store_error = str(exc)

    def retry_store(self) -> None:
        """Store the messages kept in memory, in order, as far as the outbox takes them."""
        with self._memory:
            while self._unstored:
                key, (topic, payload, retain, cls) = next(iter(self._unstored.items()))
                try:
                    message_id = self.outbox.put(topic, payload, 1, retain, cls)
                except OutboxError as exc:
                    self.store_error = str(exc)
                    return
                del self._unstored[key]  # one in flight from memory is sent again: a duplicate
                self._live.append((message_id, topic, payload, retain))
            if self.store_error:
                log.warning("outbox %s stores again", self.outbox.path)
                self.store_error = ""

    def wait_empty(self, timeout: float) -> bool:
        """Wait until everything stored so far is acknowledged."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.outbox.count() > 0 or self._unstored:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    # -- the network thread -------------------------------------------------------------
    def new_session(self) -> None:
        """A new connection: everything stored so far is the backlog, nothing is in flight."""
        self._inflight.clear()
        self._boundary = self.outbox.max_id()
        self._cursor = 0
        self._page.clear()
        self._backlog = self.outbox.topic_counts(self._boundary)
        self._held = {}

    def connection_lost(self) -> None:
        """The PUBACKs of what was in flight will never come: it stays in the outbox."""
        self._inflight.clear()

    def fill(self, publish: Callable, bdseq: int) -> None:
        """Hand messages to ``publish(topic, payload, retain)`` up to the window: live ones
        first, unless their topic still has a backlog; then the backlog in order, flagged
        historical. A status message carries the session's ``bdseq``."""
        while len(self._inflight) < WINDOW:
            item = self._next_live()
            historical = False
            if item is None:
                item = self._next_backlog()
                historical = True
                if item is None:
                    self._send_unstored(publish, bdseq)
                    with self._idle:
                        self._idle.notify_all()
                    return
            message_id, topic, payload, retain = item
            extra: dict = {"historical": True} if historical else {}
            if historical:
                retain = False  # an old state must never overwrite the retained current one
            if topic == self.status_topic:
                extra["bdSeq"] = bdseq
            info = publish(topic, splice(payload, extra), retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # not connected any more: everything is still in the outbox
            self._inflight[info.mid] = message_id

    def _send_unstored(self, publish: Callable, bdseq: int) -> None:
        """Send what is kept in memory, after everything stored (it is newer), once each
        per connection until its PUBACK."""
        if not self._unstored or self._held or self._backlog:
            return
        sent = {-message_id for message_id in self._inflight.values() if message_id < 0}
        with self._memory:
            todo = [(key, item) for key, item in self._unstored.items() if key not in sent]
        for key, (topic, payload, retain, _cls) in todo:
            if len(self._inflight) >= WINDOW:
                return
            info = publish(topic, splice(payload, {"bdSeq": bdseq} if topic == self.status_topic else {}), retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            self._inflight[info.mid] = -key  # negative: a key of the memory, not an outbox id

    def _next_live(self) -> Item | None:
        while self._live:
            item = self._live.popleft()
            if item[0] <= self._boundary:
                continue  # already part of the backlog
            if self._backlog.get(item[1]):
                self._held.setdefault(item[1], collections.deque()).append(item)
                continue
            return item
        return None

    def _next_backlog(self) -> Item | None:
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

    def on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        """paho's PUBACK callback: a success deletes the message from the outbox."""
        message_id = self._inflight.pop(mid, None)
        if message_id is None:
            return  # birth, status or a reply
        if reason_code.is_failure:
            self.refused += 1
            log.warning("MQTT broker refused a message (%s); it stays in the outbox", reason_code)
            return
        self.acked += 1
        self.last_ack = time.time()
        if message_id < 0:
            with self._memory:
                self._unstored.pop(-message_id, None)
        else:
            self.outbox.ack(message_id)

    def upkeep(self) -> dict | None:
        """Once a second: expire old coalescing messages; what the outbox's bounds cost, if anything."""
        now = time.monotonic()
        if now - self._last_upkeep < 1.0:
            return None
        self._last_upkeep = now
        if self._unstored:
            self.retry_store()
        self.outbox.expire()
        return self.outbox.take_report()
