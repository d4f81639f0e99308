"""Telemetry messages for the monitoring centre.

:class:`Telemetry` builds the envelope (``atm_id``, ``ts``, ``seq``, ``id``)
and hands each :class:`Message` to a publisher. A publisher is anything with
``publish(message)``; the MQTT one lives in ``agent.mqtt``. A durable outbox
slots in as a publisher that stores first and forwards later.
"""

from __future__ import annotations

import abc
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

TOPIC_ROOT = "atm/v1"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: dict
    qos: int = 1
    retain: bool = False
    durability: str = "critical"  # "critical": never dropped; "coalesce": the latest per topic is enough

    def encode(self) -> bytes:
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":")).encode()


class Publisher(abc.ABC):
    """Where telemetry goes: started and stopped with the agent, told each new birth."""

    @abc.abstractmethod
    def publish(self, message: Message) -> None: ...

    def start(self) -> None:  # noqa: B027 - an optional hook: by default nothing to start
        """Begin delivering (a network thread, say)."""

    def stop(self, final: Message | None = None, timeout: float = 3.0) -> bool:
        """Deliver ``final`` (the offline status) within ``timeout`` and stop; True when
        everything was delivered."""
        if final is not None:
            self.publish(final)
        return True

    def rebirth(self) -> None:  # noqa: B027 - an optional hook: by default no birth to resend
        """Send the birth again (the devices are up, or a centre asked)."""

    def wait_first_attempt(self, timeout: float) -> bool:
        """Wait for the first delivery attempt (a connection); True when it succeeded."""
        return True

    def set_birth(self, facts: dict) -> None:  # noqa: B027 - an optional hook: by default not kept
        """The loop's latest snapshot for the birth message."""

    def link_status(self) -> dict:
        """The link as ``atm status`` shows it: the broker it is connected to, what waits
        to be delivered and when a broker last acknowledged a message."""
        return {"transport": "none", "connected": False, "broker": None, "backlog": None, "last_ack": None}

    failure: str | None = None  # why delivery has stopped for good (the agent then exits 1)


class MemoryPublisher(Publisher):
    """Keeps every message in a list (tests, demos without a broker)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.birth: dict = {}

    def publish(self, message: Message) -> None:
        self.messages.append(message)

    def set_birth(self, facts: dict) -> None:
        self.birth = dict(facts)

    def link_status(self) -> dict:
        return {**super().link_status(), "transport": "memory (no broker configured)", "kept": len(self.messages)}

    def topics(self, suffix: str) -> list[dict]:
        return [m.payload for m in self.messages if m.topic.endswith("/" + suffix)]


class Telemetry:
    """Builds and publishes the four message kinds of the ATM."""

    def __init__(
        self,
        atm_id: str,
        clock,
        publishers: list[Publisher] | None = None,
        on_message: Callable[[Message], None] | None = None,
        boot: int | None = None,
    ):
        self.atm_id = atm_id
        self.clock = clock
        self.publishers: list[Publisher] = list(publishers or [])
        self.on_message = on_message
        self._seq = itertools.count(1)
        self.prefix = f"{TOPIC_ROOT}/{atm_id}/"
        # ``boot`` counts agent starts (kept by the outbox); without an outbox a random
        # one keeps (boot, seq) unique. Message ids are "<atm_id>-<boot>-<seq>".
        self.boot = boot if boot is not None else uuid.uuid4().int % 10**12
        self._id_prefix = f"{atm_id}-{self.boot}-"
        self.birth_facts: dict = {}  # what never changes while the agent runs (firmware, rig)

    def envelope(self, body: dict, numbered: bool = True) -> dict:
        """``atm_id``, ``ts``, ``boot`` and, when ``numbered``, the next ``seq`` and the ``id``.

        Only messages that go through the outbox are numbered, so ``seq`` has no gaps a
        consumer must explain; the link's session messages (birth, online status, the
        Will, its own offline status) are not numbered: ``bdSeq`` names them."""
        head = {
            "atm_id": self.atm_id,
            "ts": self.clock.utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "boot": self.boot,
        }
        if numbered:
            seq = next(self._seq)
            head["seq"] = seq
            head["id"] = f"{self._id_prefix}{seq}"
        return {**head, **body}

    def message(
        self,
        kind: str,
        body: dict,
        qos: int = 1,
        retain: bool = False,
        durability: str = "critical",
        numbered: bool = True,
    ) -> Message:
        return Message(self.prefix + kind, self.envelope(body, numbered), qos, retain, durability)

    def send(self, message: Message) -> None:
        for publisher in self.publishers:
            publisher.publish(message)
        if self.on_message is not None:
            self.on_message(message)

    def status_message(self, online: bool, service: str, reason: str = "") -> Message:
        body = {"state": "online" if online else "offline", "service": service}
        if reason:
            body["reason"] = reason
        return self.message("status", body, retain=True, durability="coalesce")

    def status(self, online: bool, service: str) -> None:
        self.send(self.status_message(online, service))

    def fault(self, fault: dict) -> None:
        self.send(self.message("fault", fault))

    def cash(self, cassettes: list[dict]) -> None:
        self.send(self.message("cash", {"cassettes": cassettes}, durability="coalesce"))

    def event(self, summary: dict) -> None:
        self.send(self.message("event", summary))

    def birth_changed(self, snapshot: dict) -> None:
        """The state machine's latest facts for the birth, merged over the static ones."""
        facts = {**self.birth_facts, **snapshot}
        for publisher in self.publishers:
            publisher.set_birth(facts)

    def heartbeat(self, body: dict) -> None:
        self.send(self.message("heartbeat", body, durability="coalesce"))
