"""Remote commands: requests on ``cmd/<name>``, replies on the request's ResponseTopic (MQTT 5)."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("agent.mqtt")

MAX_NAME = 64  # characters of a command name echoed in a reply or the journal (ours)
MAX_RESPONSE_TOPIC = 256  # bytes of a ResponseTopic (ours)
MAX_CORRELATION = 256  # bytes of CorrelationData (ours; a UUID is 16)


@dataclass(frozen=True)
class Request:
    """One request as it came off the wire.

    ``refusal`` is ``(error, reason)`` when its envelope alone refuses it (no usable
    ResponseTopic, an oversized CorrelationData, a retained message); ``reply``
    answers on the ResponseTopic and does nothing when there is none to answer on.
    """

    name: str
    payload: bytes
    reply: Callable[[dict], None]
    refusal: tuple[str, str] | None = None
    transport: str = "mqtt"  # or "control": the local socket
    engineer: str = ""  # who asked, on the control socket (from the peer's credentials)
    # the transport's way to open and answer a stream (``stream(name, args)``): the socket's
    stream: Callable[[str, dict], None] | None = None


def response_topic_problem(prefix: str, topic: object) -> str:
    """Why ``topic`` cannot carry a reply ('' when it can): it must be a topic name (no
    wildcard, no NUL) under ``<prefix>reply/``, at most MAX_RESPONSE_TOPIC bytes."""
    if topic is None:
        return "the request has no ResponseTopic"
    if not isinstance(topic, str):
        return "the ResponseTopic is not a string"
    size = len(topic.encode("utf-8", "surrogatepass"))
    if size > MAX_RESPONSE_TOPIC:
        return f"the ResponseTopic is {size} bytes (at most {MAX_RESPONSE_TOPIC})"
    shown = repr(topic[:80])
    if any(c in topic for c in "+#\0"):
        return f"the ResponseTopic {shown} has a wildcard or a NUL"
    if not topic.startswith(prefix + "reply/") or topic == prefix + "reply/":
        return f"the ResponseTopic {shown} is not under {prefix}reply/"
    return ""


def envelope_refusal(prefix: str, response_topic: object, correlation: object, retain: bool) -> tuple[str, str] | None:
    """``(error, reason)`` when the request's MQTT envelope refuses it, else None."""
    why = response_topic_problem(prefix, response_topic)
    if why:
        return ("no_response_topic" if response_topic is None else "bad_response_topic", why)
    if correlation is not None and (not isinstance(correlation, bytes) or len(correlation) > MAX_CORRELATION):
        size = len(correlation) if isinstance(correlation, bytes | str) else "?"
        return ("malformed", f"the CorrelationData is {size} bytes (at most {MAX_CORRELATION})")
    if retain:
        return ("retained", "a retained request is refused: it would run again at every subscription")
    return None


class CommandChannel:
    """The command topics of one ATM.

    Each request on ``<prefix>cmd/<name>`` becomes a :class:`Request` for
    ``on_command(request)`` (on the network thread). Nothing a request carries can
    raise out of here: an exception is logged and counted in ``failures``. A reply
    may be queued from any thread and is sent by the network thread on the
    request's ResponseTopic with its CorrelationData. Replies are not stored: a
    request is answered on its own connection.
    """

    def __init__(self, prefix: str, on_command: Callable[[Request], None] | None, wake: Callable[[], None]):
        self.prefix = prefix
        self.topic = prefix + "cmd/+"
        self.on_command = on_command
        self.failures = 0
        self._wake = wake
        self._replies: collections.deque = collections.deque()

    def reply(self, response_topic: str, correlation: bytes | None, body: dict) -> None:
        """Queue an answer for the network thread (any thread)."""
        self._replies.append((response_topic, correlation, body))
        self._wake()

    def drop_replies(self) -> None:
        """The connection is gone: a reply is answered on its request's own connection only,
        so the queued ones are dropped (the requester times out and asks again)."""
        if self._replies:
            log.warning("%d replies dropped with their connection", len(self._replies))
            self._replies.clear()

    def send_replies(self, publish: Callable) -> None:
        """Hand every queued answer to ``publish(topic, payload, retain, properties)``."""
        while self._replies:
            topic, correlation, body = self._replies.popleft()
            if response_topic_problem(self.prefix, topic):  # only a checked topic is answered on
                log.error("a reply to %r was dropped: %s", topic[:80], response_topic_problem(self.prefix, topic))
                continue
            props = Properties(PacketTypes.PUBLISH)
            if correlation is not None:
                props.CorrelationData = correlation
            # ASCII escapes: a reply must never fail to encode, whatever text it carries
            publish(topic, json.dumps(body, default=str).encode(), False, props)

    def on_message(self, client, userdata, message) -> None:
        """paho's message callback: one :class:`Request` to ``on_command``; never raises."""
        try:
            self._handle(message)
        except Exception as exc:  # a request must never take the network thread down
            self.failures += 1
            log.error("a request on %r could not be handled: %r", str(message.topic)[:120], exc)

    def _handle(self, message) -> None:
        name = message.topic[len(self.prefix) + len("cmd/") :]
        props = message.properties
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        refusal = envelope_refusal(self.prefix, response, correlation, bool(message.retain))
        reply_to = None if response_topic_problem(self.prefix, response) else str(response)
        if refusal and refusal[0] == "malformed":
            correlation = None  # not echoed back

        def reply(body: dict) -> None:
            if reply_to is not None:
                self.reply(reply_to, correlation, body)

        if self.on_command is None:
            return reply(
                {"ok": False, "command": name[:MAX_NAME], "error": "unavailable", "reason": "no command handler"}
            )
        self.on_command(Request(name, bytes(message.payload), reply, refusal))
