"""Malformed remote commands against a running agent and a real mosquitto (issue 11, item 1).

A request must never silence the ATM: each one the broker delivers is refused, answered
when it can be, journalled once, and changes nothing; telemetry and replies go on.
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.runtime import Agent
from bench.campaign.requests import BadRequest, RequestFuzzer
from hw_mocks.servers.broker import HOST
from hw_mocks.servers.wait import wait_for
from tests.helpers import live_agent
from tests.test_schemas import assert_valid

ATM = "atm-0001"
PREFIX = f"atm/v1/{ATM}/"


class Observer:
    """Sees every message under the ATM's prefix, as the broker delivers it."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, bytes, bytes | None, bool, dict]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="observer", protocol=paho.MQTTv5)
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect(HOST, port)
        c.subscribe("#", qos=1)
        c.loop_start()
        assert subscribed.wait(5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            correlation = getattr(msg.properties, "CorrelationData", None)
            user = dict(getattr(msg.properties, "UserProperty", None) or [])
            self.messages.append((msg.topic, bytes(msg.payload), correlation, bool(msg.retain), user))

    def on(self, predicate) -> list[tuple[str, bytes, bytes | None, bool, dict]]:
        with self.lock:
            return [m for m in self.messages if predicate(m[0])]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Sender:
    """The centre's side: publishes requests, reconnecting if the broker drops it."""

    def __init__(self, port: int):
        self.port = port
        self.client = self._connect()

    def _connect(self) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzzer-{time.monotonic_ns()}", protocol=paho.MQTTv5)
        c.connect(HOST, self.port)
        c.loop_start()
        wait_for(c.is_connected, 5, message="the fuzzer's connection")
        return c

    def send(self, topic: str, request: BadRequest, number: int = 0) -> None:
        """Publish ``request``, tagged with the user property ``fuzz`` = ``number``."""
        props = Properties(PacketTypes.PUBLISH)
        if request.response_topic is not None:
            props.ResponseTopic = request.response_topic
        if request.correlation is not None:
            props.CorrelationData = request.correlation
        props.UserProperty = [*request.user_properties, ("fuzz", str(number))]
        info = self.client.publish(topic, request.payload, request.qos, request.retain, props)
        if request.qos:
            info.wait_for_publish(5)
        if not self.client.is_connected():
            self.client.loop_stop()
            self.client = self._connect()

    def ask(self, name: str, body: dict, tag: str) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{PREFIX}reply/{tag}"
        props.CorrelationData = tag.encode()
        self.client.publish(f"{PREFIX}cmd/{name}", json.dumps(body).encode(), 1, False, props).wait_for_publish(5)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def start_agent(mosquitto, tmp_path):
    """Starts the agent on demand (once), connected and idle."""
    started: list[Agent] = []

    def start() -> Agent:
        agent = live_agent({"atm": {"id": ATM}, "journal": {"path": str(tmp_path / "j.db")}}, mosquitto.url)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def agent(start_agent):
    return start_agent()


def remote_rows(agent) -> list[dict]:
    return [e.data for e in agent.journal.entries() if e.name == "remote_command"]


def reply_to(observer: Observer, tag: str, timeout: float = 10.0) -> dict:
    rows = wait_for(lambda: observer.on(lambda t: t == f"{PREFIX}reply/{tag}"), timeout, message=f"reply {tag}")
    return json.loads(rows[0][1])


def flood(agent, mosquitto, count: int, seed: int) -> None:
    """Send ``count`` malformed requests and check what the ATM made of them."""
    observer, sender = Observer(mosquitto.port), Sender(mosquitto.port)
    fuzzer = RequestFuzzer(ATM, seed)
    sent: dict[str, BadRequest] = {}
    try:
        for number, request in enumerate(fuzzer.many(count), 1):
            sender.send(fuzzer.topic(request), request, number)
            sent[str(number)] = request
        sender.ask("status", {}, "after-flood")  # requests are taken in order: all were seen
        assert reply_to(observer, "after-flood")["ok"] is True

        link = agent.publisher
        assert link.connected and link.restarts == 0 and link.failure is None
        assert link.commands.failures == 0
        seen = observer.on(lambda t: t.startswith(PREFIX + "cmd/") and "/" not in t[len(PREFIX + "cmd/") :])
        delivered = [sent[m[4]["fuzz"]] for m in seen if "fuzz" in m[4]]  # those cmd/+ matches
        assert len(delivered) >= count * 0.9, f"the broker delivered only {len(delivered)} of {count}"
        # one journal row for each, refused, and nothing changed
        rows = wait_for(
            lambda: (r := remote_rows(agent)) and len(r) > len(delivered) and r,
            15,
            message=lambda: f"rows: {len(remote_rows(agent))} for {len(delivered)} delivered",
        )
        assert len(rows) == len(delivered) + 1
        ran = [r for r in rows[:-1] if r["ok"]]
        assert ran == [], ran[:3]
        assert agent.atm.service.service == "in_service" and not agent.atm.service.held
        assert agent.atm.state == "idle"
        # the ATM published only under its own prefix, never on a wildcard or another ATM's topic
        published = observer.on(lambda t: not t.startswith(PREFIX + "cmd/"))
        assert all(t.startswith(PREFIX) and "+" not in t and "#" not in t for t, *_ in published)
        replies = [m for m in published if m[0].startswith(PREFIX + "reply/") and not m[0].endswith("after-flood")]
        for _topic, payload, _correlation, retained, _user in replies:
            answer = json.loads(payload)
            assert answer["ok"] is False and answer["error"] and not retained, answer
            assert_valid("command-response.schema.json", answer, "a refusal")
        answered = {m[0] for m in replies}
        unanswered = [r for r in delivered if r.answerable(PREFIX) and r.response_topic not in answered]
        assert len(replies) == sum(1 for r in delivered if r.answerable(PREFIX)), unanswered[:3]
        # telemetry still flows: a state change after the flood is published
        sender.ask("out_of_service", {"reason": "after the flood"}, "oos")
        assert reply_to(observer, "oos")["effective"] == "now"

        def out_of_service_status() -> bool:
            statuses = observer.on(lambda t: t == PREFIX + "status")
            return any(json.loads(m[1]).get("service") == "out_of_service" for m in statuses)

        wait_for(out_of_service_status, 5, message="the out_of_service status")
    finally:
        sender.stop()
        observer.stop()


def test_a_thousand_malformed_requests_are_refused_and_silence_nothing(agent, mosquitto):
    flood(agent, mosquitto, 1000, seed=11)


def test_the_two_requests_that_killed_the_link(agent, mosquitto):
    """2,000 nested brackets, and a ResponseTopic with a wildcard (the issue's reproduction)."""
    observer, sender = Observer(mosquitto.port), Sender(mosquitto.port)
    try:
        deep = BadRequest("body", "status", b"[" * 2000, f"{PREFIX}reply/deep", b"deep")
        wild = BadRequest("response_topic", "status", b"{}", f"{PREFIX}reply/+", b"wild")
        sender.send(f"{PREFIX}cmd/status", deep)
        sender.send(f"{PREFIX}cmd/status", wild)
        assert reply_to(observer, "deep")["error"] == "malformed_json"
        sender.ask("status", {}, "alive")
        assert reply_to(observer, "alive")["ok"] is True
        rows = wait_for(lambda: (r := remote_rows(agent)) and len(r) == 3 and r, 5, message="three rows")
        assert [r.get("error") for r in rows] == ["malformed_json", "bad_response_topic", None]
        assert agent.publisher.restarts == 0
    finally:
        sender.stop()
        observer.stop()


def test_a_retained_request_is_refused_and_never_runs_again_at_a_later_connection(start_agent, mosquitto):
    observer, sender = Observer(mosquitto.port), Sender(mosquitto.port)
    try:
        kept = BadRequest("retain", "out_of_service", b"{}", f"{PREFIX}reply/kept", b"kept", retain=True)
        sender.send(f"{PREFIX}cmd/out_of_service", kept)  # on the broker before the ATM connects
        agent = start_agent()
        live = BadRequest("retain", "out_of_service", b"{}", f"{PREFIX}reply/live", b"live", retain=True)
        sender.send(f"{PREFIX}cmd/out_of_service", live)
        sender.ask("status", {}, "after")
        assert reply_to(observer, "after")["ok"] is True
        assert observer.on(lambda t: t == f"{PREFIX}reply/kept") == []  # never delivered to the ATM
        assert reply_to(observer, "live")["error"] == "retained"
        rows = wait_for(lambda: (r := remote_rows(agent)) and len(r) == 2 and r, 5, message="two rows")
        assert [(r["command"], r.get("error")) for r in rows] == [("out_of_service", "retained"), ("status", None)]
        assert not agent.atm.service.held
    finally:
        sender.stop()
        observer.stop()
