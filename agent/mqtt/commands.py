"""Remote commands: requests on ``cmd/<name>``, replies on the request's ResponseTopic (MQTT 5)."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class CommandChannel:
    """The command topics of one ATM.

    Each request on ``<prefix>cmd/<name>`` goes to ``on_command(name, payload, reply)``
    (on the network thread); ``reply(dict)`` may be called from any thread and is
    sent by the network thread on the request's ResponseTopic with its
    CorrelationData. Replies are not stored: a request is answered on its own
    connection.
    """

    def __init__(self, prefix: str, on_command: Callable | None, wake: Callable[[], None]):
        self.prefix = prefix
        self.topic = prefix + "cmd/+"
        self.on_command = on_command
        self._wake = wake
        self._replies: collections.deque = collections.deque()

    def reply(self, response_topic: str, correlation: bytes | None, body: dict) -> None:
        """Queue an answer for the network thread (any thread)."""
        self._replies.append((response_topic, correlation, body))
        self._wake()

    def send_replies(self, publish: Callable) -> None:
        """Hand every queued answer to ``publish(topic, payload, retain, properties)``."""
        while self._replies:
            topic, correlation, body = self._replies.popleft()
            props = Properties(PacketTypes.PUBLISH)
            if correlation is not None:
                props.CorrelationData = correlation
            publish(topic, json.dumps(body, ensure_ascii=False).encode(), False, props)

    def on_message(self, client, userdata, message) -> None:
        """paho's message callback: parse the request and hand it to ``on_command``."""
        name = message.topic[len(self.prefix) + len("cmd/") :]
        props = message.properties
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)

        def reply(body: dict) -> None:
            if response:
                self.reply(response, correlation, body)

        if self.on_command is None:
            return reply({"ok": False, "command": name, "error": "unavailable", "reason": "no command handler"})
        self.on_command(name, message.payload, reply)
