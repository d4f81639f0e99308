"""Telemetry messages for the monitoring centre.

:class:`Telemetry` builds the envelope (``atm_id``, ``ts``, ``seq``, ``id``)
and hands each :class:`Message` to a publisher. A publisher is anything with
``publish(message)``; the MQTT one lives in ``agent.mqtt``. A durable outbox
slots in as a publisher that stores first and forwards later.
"""
from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Callable, Protocol

TOPIC_ROOT = "atm/v1"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: dict
    qos: int = 0
    retain: bool = False

    def encode(self) -> bytes:
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":")).encode()


class Publisher(Protocol):
    def publish(self, message: Message) -> None: ...


class MemoryPublisher:
    """Keeps every message in a list (tests, demos without a broker)."""

    def __init__(self):
        self.messages: list[Message] = []

    def publish(self, message: Message) -> None:
        self.messages.append(message)

    def topics(self, suffix: str) -> list[dict]:
        return [m.payload for m in self.messages if m.topic.endswith("/" + suffix)]


class Telemetry:
    """Builds and publishes the four message kinds of the ATM."""

    def __init__(self, atm_id: str, clock, publishers: list[Publisher] | None = None,
                 on_message: Callable[[Message], None] | None = None):
        self.atm_id = atm_id
        self.clock = clock
        self.publishers: list[Publisher] = list(publishers or [])
        self.on_message = on_message
        self._seq = itertools.count(1)
        self.prefix = f"{TOPIC_ROOT}/{atm_id}/"
        self._boot = uuid.uuid4().hex[:16]  # with seq, makes every message id unique

    def envelope(self, body: dict) -> dict:
        seq = next(self._seq)
        return {"atm_id": self.atm_id,
                "ts": self.clock.utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "seq": seq, "id": f"{self._boot}-{seq}", **body}

    def message(self, kind: str, body: dict, qos: int, retain: bool = False) -> Message:
        return Message(self.prefix + kind, self.envelope(body), qos, retain)

    def send(self, message: Message) -> None:
        for publisher in self.publishers:
            publisher.publish(message)
        if self.on_message is not None:
            self.on_message(message)

    def status_message(self, online: bool, service: str) -> Message:
        return self.message("status", {"state": "online" if online else "offline",
                                       "service": service}, qos=1, retain=True)

    def status(self, online: bool, service: str) -> None:
        self.send(self.status_message(online, service))

    def fault(self, fault: dict) -> None:
        self.send(self.message("fault", fault, qos=1))

    def cash(self, cassettes: list[dict]) -> None:
        self.send(self.message("cash", {"cassettes": cassettes}, qos=1))

    def event(self, summary: dict) -> None:
        self.send(self.message("event", summary, qos=0))
