"""Remote commands: MQTT 5 request/response against a running agent, and their timing in a session."""

from __future__ import annotations

import json
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.remote import BadRequest, parse_request
from hw_mocks.customer import Visit
from hw_mocks.servers.broker import HOST
from hw_mocks.servers.wait import wait_for
from tests.helpers import live_agent, run_visits

ATM = "atm-0001"


class Requester:
    """The monitoring centre's side: send a command, wait for its answer."""

    def __init__(self, broker):
        self.answers: dict[bytes, dict] = {}
        self.births: list[dict] = []
        self.cond = threading.Condition()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="centre-cmd", protocol=paho.MQTTv5)
        self.subacks = 0
        c.on_message = self._on_message
        c.on_subscribe = lambda cl, ud, mid, rc, pr: setattr(self, "subacks", self.subacks + 1)
        c.connect(HOST, broker.port)
        c.subscribe(f"atm/v1/{ATM}/reply/#", qos=1)
        c.subscribe(f"atm/v1/{ATM}/birth", qos=1)
        c.loop_start()
        wait_for(lambda: self.subacks == 2, message="the centre's two SUBACKs")
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            if msg.topic.endswith("/birth"):
                self.births.append(json.loads(msg.payload))
            else:
                self.answers[msg.properties.CorrelationData] = json.loads(msg.payload)
            self.cond.notify_all()

    def ask(self, command: str, body: bytes | dict = b"{}", timeout: float = 5.0) -> dict:
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"atm/v1/{ATM}/reply/centre"
        props.CorrelationData = correlation
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        self.client.publish(f"atm/v1/{ATM}/cmd/{command}", payload, qos=1, properties=props)
        with self.cond:
            assert self.cond.wait_for(lambda: correlation in self.answers, timeout), f"no answer to {command}"
            return self.answers[correlation]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def running(mosquitto, tmp_path):
    agent = live_agent({"journal": {"path": str(tmp_path / "j.db")}}, mosquitto.url)
    requester = Requester(mosquitto)
    yield agent, requester
    requester.stop()
    agent.stop()


def test_each_command_answers_on_the_response_topic(running):
    agent, centre = running
    status = centre.ask("status")
    assert status["ok"] and status["state"] == "idle" and status["service"] == "in_service"
    assert status["devices"]["dispenser"]["status"] == "online"
    cash = centre.ask("cash")
    assert [c["id"] for c in cash["cassettes"]] == ["A", "B"]
    tested = centre.ask("selftest", {"device": "dispenser"})
    assert tested["ok"] and tested["results"] == {"dispenser": "online"}
    births = len(centre.births)
    assert centre.ask("rebirth")["ok"]
    wait_for(lambda: len(centre.births) > births, 3, message="a new birth")
    assert centre.births[-1]["bdSeq"] == agent.publisher.bdseq


def test_out_of_service_and_back_when_idle_take_effect_at_once(running):
    agent, centre = running
    answer = centre.ask("out_of_service", {"reason": "cash van due"})
    assert answer["ok"] and answer["effective"] == "now"
    assert centre.ask("status")["state"] == "out_of_service"
    assert centre.ask("out_of_service")["error"] == "not_permitted"
    answer = centre.ask("in_service")
    assert answer["ok"] and answer["effective"] == "now"
    assert centre.ask("status")["state"] == "idle"
    assert centre.ask("in_service")["error"] == "not_permitted"


@pytest.mark.parametrize(
    "command, body, error",
    [
        ("status", b"{not json", "malformed_json"),
        ("status", b"[1, 2]", "malformed"),
        ("reboot", b"{}", "unknown_command"),
        ("selftest", {"device": "toaster"}, "bad_field"),
        ("selftest", {"device": 7}, "bad_field"),
        ("out_of_service", {"reason": "x", "until": "tomorrow"}, "unknown_field"),
        ("out_of_service", b'{"reason": "\\ud800"}', "bad_field"),
        ("status", b"[" * 2000, "malformed_json"),
    ],
)
def test_bad_requests_get_an_error_and_change_nothing(running, command, body, error):
    agent, centre = running
    answer = centre.ask(command, body)
    assert answer["ok"] is False and answer["error"] == error and answer["reason"]
    assert agent.atm.state == "idle" and not agent.atm.service.held
    # the refusal is journalled on the loop thread
    rows = wait_for(
        lambda: [e.data for e in agent.journal.entries() if e.name == "remote_command"],
        3,
        message="the remote_command journal row",
    )
    assert rows[-1] == {"command": command, "ok": False, "error": error, "transport": "mqtt"}


def test_parse_request_checks_fields():
    assert parse_request("selftest", b"") == {"device": "all"}  # the declared default
    with pytest.raises(BadRequest, match="200 characters"):
        parse_request("out_of_service", json.dumps({"reason": "x" * 201}).encode())
    with pytest.raises(BadRequest, match="bytes"):
        parse_request("status", b"{" + b" " * 5000 + b"}")


def test_out_of_service_requested_mid_session_waits_for_the_session_to_end():
    answers = []

    def request(agent):  # during the customer's PIN entry
        agent.atm.operator.remote_command("out_of_service", {"reason": "audit"}, answers.append)

    def selftest(agent):
        agent.atm.operator.remote_command("selftest", {}, answers.append)

    run = run_visits(
        [Visit("withdrawal", amount=20_000), Visit("balance", card="domestic2")],
        setup=lambda a: (a.scheduler.call_later(6.0, request, a), a.scheduler.call_later(6.2, selftest, a)),
    )
    assert answers[0] == {"ok": True, "command": "out_of_service", "effective": "after_session"}
    assert answers[1]["ok"] is False and answers[1]["error"] == "not_permitted"
    outcomes = [s["outcome"] for s in run.sessions()]
    assert outcomes == ["completed"]  # the withdrawal finished; the next customer was not served
    states = [r["state"] for r in run.agent.recorder.of_type("state")]
    assert states[-1] == "out_of_service" and "dispensing" in states
    assert states.index("dispensing") < len(states) - 1 - states[::-1].index("out_of_service")


# -- every answer journalled; nothing runs while the agent stops -------------------------
def _request(name: str, body: bytes = b"{}"):
    from agent.mqtt.commands import Request

    replies: list[dict] = []
    return Request(name, body, replies.append), replies


def test_requests_while_the_agent_stops_are_answered_unavailable_and_run_nothing():
    from agent.remote import CommandHandler

    posted: list = []
    handler = CommandHandler(posted.append, rebirth=lambda: posted.append("rebirth"))
    handler.close()
    for name in ("status", "rebirth", "reboot"):
        request, replies = _request(name)
        handler(request)
        assert replies == [{"ok": False, "command": name, "error": "unavailable", "reason": "the agent is stopping"}]
    assert posted == []


def test_replies_are_sent_only_on_the_connection_their_request_came_on():
    from agent.mqtt.commands import CommandChannel

    channel = CommandChannel("atm/v1/atm-0001/", None, wake=lambda: None)
    channel.reply("atm/v1/atm-0001/reply/1", b"1", {"ok": True})
    channel.drop_replies()  # the connection was lost
    sent: list = []
    channel.send_replies(lambda *args: sent.append(args))
    assert sent == []


def test_a_command_that_fails_inside_the_atm_is_answered_and_journalled():
    from tests.helpers import make_agent

    agent = make_agent()
    agent.warm_prompts()
    agent.start()
    agent.loop.run_until_idle(max_time=agent.clock.now() + 1)

    def broken(args, answer):
        raise RuntimeError("a defect")

    operator = agent.atm.operator
    operator.handlers["status"] = broken
    replies: list[dict] = []
    with pytest.raises(RuntimeError):
        operator.remote_command("status", {}, replies.append)
    operator.remote_command("in_service", {}, replies.append)  # not held: refused on the loop
    rows = [e.data for e in agent.journal.entries() if e.name == "remote_command"]
    assert [r["error"] for r in replies] == ["internal", "not_permitted"]
    assert rows == [
        {"command": "status", "args": {}, "ok": False, "error": "internal"},
        {"command": "in_service", "args": {}, "ok": False, "error": "not_permitted"},
    ]
    agent.stop()
