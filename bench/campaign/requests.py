"""Malformed remote commands, as a tester of the monitoring centre's side would send them.

Written apart from ``agent.remote``: it knows only the documented wire contract
(``docs/telemetry.md``, Remote commands). Each :class:`BadRequest` is a PUBLISH that a
broker forwards (valid UTF-8 topic names, well-formed properties) but that the ATM
must refuse: bad names, bodies, ResponseTopics, CorrelationData, QoS and retain flags.
None of them may change anything on the ATM.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

COMMANDS = ("status", "selftest", "out_of_service", "in_service", "rebirth", "cash")
# commands whose body is checked: a bad body on these is refused ("rebirth", "status",
# "cash" and "in_service" take no field, so any field is unknown)
DEEP = 2000


@dataclass(frozen=True)
class BadRequest:
    """One PUBLISH to ``atm/v1/<atm>/cmd/<name>``."""

    kind: str  # what is wrong with it, for the report
    name: str
    payload: bytes
    response_topic: str | None  # None: no ResponseTopic property
    correlation: bytes | None
    qos: int = 1
    retain: bool = False
    user_properties: list[tuple[str, str]] = field(default_factory=list)

    def answerable(self, prefix: str) -> bool:
        """Whether the documented contract lets the ATM of ``prefix`` (``atm/v1/<id>/``)
        answer it: a ResponseTopic under its own ``reply/``, no wildcard, 256 bytes at most."""
        topic = self.response_topic
        return (
            topic is not None
            and topic.startswith(prefix + "reply/")
            and topic != prefix + "reply/"
            and not any(c in topic for c in "+#")
            and len(topic.encode()) <= 256
        )


class RequestFuzzer:
    """Generates malformed requests for ATM ``atm_id`` from a seed."""

    def __init__(self, atm_id: str, seed: int = 0):
        self.atm = atm_id
        self.prefix = f"atm/v1/{atm_id}/"
        self.rng = random.Random(seed)
        self.n = 0

    def reply_topic(self) -> str:
        return f"{self.prefix}reply/fuzz-{self.n}"

    def correlation(self) -> bytes:
        return f"fuzz-{self.n}".encode()

    # -- the parts, each broken one way -----------------------------------------------
    def bad_name(self) -> str:
        rng = self.rng
        return rng.choice(
            [
                "",
                "STATUS",
                "status ",
                " status",
                "reboot",
                "shutdown",
                "dispense",
                "rm -rf",
                "status\u200b",
                "ステータス",
                "x" * rng.randint(65, 3000),
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-.") for _ in range(rng.randint(1, 30))),
                "\u00e9" * rng.randint(1, 200),
                "%s%n%x",
                "../status",
                "${jndi:ldap://127.0.0.1/a}",
            ]
        )

    def bad_body(self, name: str) -> bytes:
        rng = self.rng
        deep = rng.randint(DEEP // 2, DEEP + 1000)
        choices: list[bytes] = [
            b"[" * DEEP,
            b"[" * deep + b"]" * deep,
            b'{"a":' * deep + b"1" + b"}" * deep,
            b"{" + b'"reason":"' + b"x" * 5000 + b'"}',
            bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))),
            b"\xff\xfe{\x00}\x00",
            b"\xef\xbb\xbf{}",
            b"{",
            b"}",
            b"null",
            b"[]",
            b"42",
            b'"status"',
            b"1e999999",
            b'{"reason": NaN}',
            b'{"device": Infinity}',
            b'{"device": 1e999}',
            b'{"device": ' + b"9" * 5000 + b"}",
            b'{"device": null}',
            b'{"device": ["all"]}',
            b'{"device": {"all": 1}}',
            b'{"device": "toaster"}',
            b'{"device": "all", "device": 5}',
            b'{"reason": 5}',
            b'{"reason": "' + b"r" * 201 + b'"}',
            b'{"reason": "\\ud800"}',
            b'{"unknown": 1}',
            b'{"": ""}',
            b"{\x00}",
            json.dumps({"reason": "x", "extra": list(range(50))}).encode(),
        ]
        if name in ("status", "cash", "in_service", "rebirth"):
            choices.append(json.dumps({"device": "all"}).encode())  # a field it does not take
        return rng.choice(choices)

    def bad_response_topic(self) -> str | None:
        rng = self.rng
        return rng.choice(
            [
                None,
                f"{self.prefix}reply/+",
                f"{self.prefix}reply/#",
                f"{self.prefix}+/x",
                "#",
                "+",
                f"{self.prefix}reply/",
                f"{self.prefix}status",
                f"{self.prefix}cmd/status",
                "atm/v1/atm-0002/reply/x",
                "somewhere/else",
                "/",
                f"{self.prefix}reply/" + "y" * rng.randint(300, 4000),
                "",
            ]
        )

    def bad_correlation(self) -> bytes:
        rng = self.rng
        return rng.choice([b"c" * rng.randint(257, 20000), bytes(rng.getrandbits(8) for _ in range(300))])

    # -- whole requests ---------------------------------------------------------------
    def one(self) -> BadRequest:
        """A request broken in one or more ways, chosen at random."""
        self.n += 1
        rng = self.rng
        kind = rng.choice(["name", "body", "response_topic", "correlation", "retain", "mixed"])
        name = rng.choice(COMMANDS)
        payload = self.bad_body(name) if kind in ("body", "mixed") else b"{}"
        response: str | None = self.reply_topic()
        correlation: bytes | None = self.correlation()
        retain = False
        if kind in ("name", "mixed") and (kind == "name" or rng.random() < 0.5):
            name = self.bad_name()
        if kind == "response_topic" or (kind == "mixed" and rng.random() < 0.3):
            response = self.bad_response_topic()
        if kind == "correlation" or (kind == "mixed" and rng.random() < 0.2):
            correlation = self.bad_correlation()
        if kind == "retain":
            retain = True
        if kind == "mixed" and rng.random() < 0.3:
            correlation = None if rng.random() < 0.5 else b""
        if kind in ("name", "mixed") and name in COMMANDS and payload == b"{}" and response == self.reply_topic():
            name = "reboot"  # it must be broken somewhere
        if name in COMMANDS and payload == b"{}" and not retain and (correlation is None or len(correlation) <= 256):
            if response is not None and response == self.reply_topic():
                payload = b'{"bogus": true}'  # a well-formed request would run: break its body
        user = [("k", "v" * rng.randint(0, 500))] if rng.random() < 0.2 else []
        return BadRequest(kind, name, payload, response, correlation, rng.choice([0, 1, 1, 2]), retain, user)

    def many(self, count: int) -> Iterator[BadRequest]:
        for _ in range(count):
            yield self.one()

    def topic(self, request: BadRequest) -> str:
        return f"{self.prefix}cmd/{request.name}"
