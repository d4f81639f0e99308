"""The messages that open and close a session: birth, online and offline status, the Will."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.outbox import CRITICAL
from agent.telemetry import TOPIC_ROOT, Message


class SessionMessages:
    """Builds the link's own messages, each session's carrying its ``bdSeq``.

    ``make_message(kind, body, retain=..., durability=..., numbered=...)`` adds the
    envelope (the agent's ``Telemetry.message``); without it a bare one with ``atm_id``
    and ``ts``. The session messages are made ``numbered=False``: they never pass
    through the outbox, so they take no ``seq`` (as Sparkplug's death certificate
    carries only its bdSeq); the link's events are stored and numbered.
    """

    def __init__(
        self, atm_id: str, make_message: Callable[..., Message] | None = None, clock: Callable[[], float] = time.time
    ):
        self.atm_id = atm_id
        self.prefix = f"{TOPIC_ROOT}/{atm_id}/"
        self.status_topic = self.prefix + "status"
        self.clock = clock
        self.make = make_message or self._bare_message

    def _bare_message(
        self, kind: str, body: dict, retain: bool = False, durability: str = CRITICAL, numbered: bool = True
    ) -> Message:
        body = {"atm_id": self.atm_id, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())), **body}
        return Message(self.prefix + kind, body, 1, retain, durability)

    def will(self, bdseq: int) -> bytes:
        """The retained offline status the broker publishes when the connection dies."""
        return self.make(
            "status",
            {"state": "offline", "service": "unknown", "reason": "connection_lost", "bdSeq": bdseq},
            retain=True,
            numbered=False,
        ).encode()

    def birth(self, bdseq: int, broker: str, facts: dict) -> Message:
        return self.make("birth", {"bdSeq": bdseq, "broker": broker, **facts}, retain=True, numbered=False)

    def online(self, bdseq: int, facts: dict) -> Message:
        return self.make(
            "status",
            {"state": "online", "service": facts.get("service", "unknown"), "bdSeq": bdseq},
            retain=True,
            numbered=False,
        )

    def offline(self, bdseq: int, reason: str) -> Message:
        """Our own offline status at an intentional DISCONNECT (which suppresses the Will)."""
        return self.make(
            "status",
            {"state": "offline", "service": "unknown", "reason": reason, "bdSeq": bdseq},
            retain=True,
            numbered=False,
        )

    def event(self, body: dict) -> Message:
        """An event of the link itself (``broker_failover``, ``outbox_trimmed``)."""
        return self.make("event", body)
