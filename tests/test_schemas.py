"""docs/schemas/ against what the agent really sends.

Every schema is a valid JSON Schema (draft 2020-12). Then every message a real
mosquitto delivers is validated against the schema for its topic: all `atm demo`
scenarios (child processes, with their `--json` telemetry too), a running agent
answering good and bad remote commands, the Will of a killed agent, and a
failover to the secondary broker and back with a trimmed outbox. A few outcomes
no demo reaches (dispense_uncertain, cash_retracted, pin_tries_exceeded,
shutdown) are played on the virtual clock and their telemetry validated.
One broker for the module; the failover test adds its own primary.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from jsonschema import Draft202012Validator
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from referencing import Registry, Resource

from agent import config as configmod
from agent.output import Recorder
from agent.remote import COMMANDS
from agent.runtime import Agent
from agent.scenarios import SCENARIOS, Scenario, ScenarioRun
from fsm.clock import RealClock
from hw_mocks.cards import CARDS
from hw_mocks.customer import Visit
from hw_mocks.servers.broker import HOST, Mosquitto, Subscriber
from hw_mocks.servers.wait import wait_for
from tests.helpers import RAW_PANS, make_agent

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "docs" / "schemas"
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.schema.json"))
BASE = "https://example.com/atm/v1/schemas/"
TELEMETRY_KINDS = ("status", "birth", "fault", "cash", "event", "heartbeat")
TOPIC = re.compile(r"^atm/v1/(?P<atm>[A-Za-z0-9_-]{1,64})/(?P<kind>[a-z_]+)(?:/(?P<rest>.+))?$")


def _load() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in SCHEMA_FILES}


SCHEMAS = _load()
REGISTRY = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in SCHEMAS.values() if "$id" in s)
_validators: dict[str, Draft202012Validator] = {}


def validator(ref: str) -> Draft202012Validator:
    """``ref``: a schema file name, optionally with a #fragment."""
    if ref not in _validators:
        _validators[ref] = Draft202012Validator(
            {"$ref": BASE + ref}, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
    return _validators[ref]


def problems(ref: str, payload) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator(ref).iter_errors(payload)
    ]


def assert_valid(ref: str, payload, where: str = "") -> None:
    found = problems(ref, payload)
    assert not found, f"{where} does not match {ref}: {found}\n{json.dumps(payload, ensure_ascii=False)}"


def kind_of(topic: str) -> str | None:
    """status, birth, fault, cash or event for a telemetry topic; None for cmd/ and reply/ topics."""
    match = TOPIC.match(topic)
    return match["kind"] if match and match["rest"] is None else None


def check_wire(messages, atm_id: str) -> collections.Counter:
    """Validate every delivered message of ``atm_id`` against its topic's schema (command
    requests are checked where they are sent). Returns what was seen, by kind/event."""
    seen = collections.Counter()
    for m in messages:
        match = TOPIC.match(m.topic)
        assert match, f"unexpected topic {m.topic}"
        if match["atm"] != atm_id or match["kind"] == "cmd":
            continue
        for pan in RAW_PANS:
            assert pan.encode() not in m.payload, m.topic
        body = json.loads(m.payload)
        kind = match["kind"]
        if kind == "reply":
            assert_valid("command-response.schema.json", body, m.topic)
            seen[f"reply:{body.get('command')}:{body.get('error', 'ok')}"] += 1
            continue
        assert kind in TELEMETRY_KINDS and match["rest"] is None, f"no schema for topic {m.topic}"
        assert_valid(f"{kind}.schema.json", body, m.topic)
        assert body["atm_id"] == atm_id
        if "seq" in body:  # stored, numbered
            assert body["id"] == f"{atm_id}-{body['boot']}-{body['seq']}"
        else:  # a session message: named by its bdSeq
            assert kind in ("birth", "status") and "bdSeq" in body and "id" not in body, body
        if kind == "status":
            assert "bdSeq" in body, f"a status without bdSeq on the wire: {body}"
        seen[kind if kind != "event" else f"event:{body['event']}"] += 1
    return seen


@pytest.fixture(scope="module")
def broker():
    with Mosquitto() as b:
        yield b


# -- the schemas themselves ------------------------------------------------------------------
@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_schema_is_valid_draft_2020_12(path):
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == BASE + path.name
    for example in schema.get("examples", []):
        assert_valid(path.name, example, "example")


def test_there_is_a_schema_for_every_message_type():
    names = {p.name for p in SCHEMA_FILES}
    assert {f"{k}.schema.json" for k in TELEMETRY_KINDS} <= names
    assert {
        "envelope.schema.json",
        "common.schema.json",
        "command-request.schema.json",
        "command-response.schema.json",
    } <= names
    requests = SCHEMAS["command-request.schema.json"]["$defs"]
    responses = SCHEMAS["command-response.schema.json"]["$defs"]
    assert set(COMMANDS) <= set(requests) and set(COMMANDS) <= set(responses)


def test_no_card_data_fits_an_event_or_a_fault():
    session = {
        "atm_id": "atm-0001",
        "ts": "2026-01-01T00:00:00.000Z",
        "boot": 1,
        "seq": 9,
        "id": "atm-0001-1-9",
        "event": "session",
        "session": "atm-0001-000001",
        "function": "withdrawal",
        "outcome": "completed",
        "amount": 30000,
        "language": "ja",
        "card_retained": False,
        "cash_retracted": 0,
        "notes_dispensed": 3,
        "amount_dispensed": 30000,
        "duration_s": 8.1,
    }
    assert_valid("event.schema.json", session)
    for field in ("pan", "card_number", "masked", "last4", "token", "track2", "card"):
        assert problems("event.schema.json", {**session, field: RAW_PANS[0]}), field
    fault = {
        **{k: session[k] for k in ("atm_id", "ts", "boot", "seq", "id")},
        "device": "chip",
        "code": "bad_card",
        "severity": "info",
        "state": "raised",
        "action": "none",
        "message": f"card {RAW_PANS[0]} refused",
    }
    assert problems("fault.schema.json", fault)
    assert problems("event.schema.json", {**session, "event": "card_swallowed"})  # the list is closed


def test_the_examples_in_telemetry_md_match_a_schema():
    text = (ROOT / "docs" / "telemetry.md").read_text()
    examples = []
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():  # one object per line, or one spread over several
            pending += line
            try:
                examples.append(json.loads(pending))
                pending = ""
            except json.JSONDecodeError:
                continue
        assert not pending, f"unparsable example in docs/telemetry.md: {pending[:80]}"
    assert len(examples) >= 10
    for example in examples:
        refs = (
            [f"{k}.schema.json" for k in TELEMETRY_KINDS] if "atm_id" in example else ["command-response.schema.json"]
        )
        assert any(not problems(ref, example) for ref in refs), example


# -- every demo scenario through a real broker ---------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_demo_messages_match_the_schemas(broker, name):
    root = "atm/v1/atm-0001/"
    with Subscriber(broker, "atm/v1/#") as sub:
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "demo", "--scenario", name, "--mqtt", broker.url, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        sub.wait_for(lambda m: m.topic == root + "status" and not m.retain and m.json()["state"] == "offline")
        live = [m for m in sub.messages if not m.retain]  # retained ones are the previous run's
    seen = check_wire(live, "atm-0001")
    assert seen["birth"] == 2 and seen["status"] >= 3 and seen["cash"] >= 1
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    telemetry = [r for r in printed if r["type"] == "telemetry"]
    sessions = [r for r in telemetry if r["payload"].get("event") == "session"]
    assert seen["event:session"] == len(sessions)  # a scenario may have none (passer-by)
    for record in telemetry:
        kind = record["topic"].rsplit("/", 1)[1]
        assert_valid(f"{kind}.schema.json", record["payload"], f"--json {record['topic']}")
    assert {r["payload"]["id"] for r in telemetry} <= {m.json().get("id") for m in live}


# -- outcomes no demo reaches, on the virtual clock ------------------------------------------------
def _dispense_uncertain():
    agent = make_agent({"devices": {"dispenser": "lcdm2000+emu://"}})

    def go_silent(record):  # the dispenser stops answering once the host approved
        if record["type"] == "state" and record["state"] == "authorising":
            agent.devices["dispenser"].inject("silent")

    agent.recorder.sinks.append(go_silent)
    return agent, [Visit("withdrawal")]


def _shutdown(agent):
    agent.start()
    agent.scheduler.call_later(1, agent.devices["card_reader"].customer_insert, CARDS["domestic"])
    agent.loop.run_until_idle(max_time=3)
    agent.stop()


EXTRA = {
    "dispense_uncertain": (_dispense_uncertain, "dispense_uncertain"),
    "cash_retracted": (lambda: (make_agent(), [Visit("withdrawal", forget_cash=True)]), "cash_retracted"),
    "pin_tries_exceeded": (lambda: (make_agent(), [Visit("balance", wrong_pins=3)]), "card_retained"),
    "shutdown": (lambda: (make_agent(), None), "session"),
}


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_rarer_outcomes_match_the_schemas(name):
    make, event = EXTRA[name]
    agent, visits = make()
    if visits is None:
        _shutdown(agent)
    else:
        run = ScenarioRun(Scenario(name, "", visits, check=lambda r: []), agent)
        assert run.run() == []
    records = agent.recorder.of_type("telemetry")
    for record in records:
        kind = record["topic"].rsplit("/", 1)[1]
        assert_valid(f"{kind}.schema.json", record["payload"], record["topic"])
    events = [r["payload"] for r in records if r["topic"].endswith("/event")]
    assert any(e["event"] == event for e in events), events
    outcomes = [e["outcome"] for e in events if e["event"] == "session"]
    assert outcomes == [name], outcomes
    if visits is not None:
        agent.close()


# -- remote commands to a running agent --------------------------------------------------------------
class Requester:
    """The monitoring centre's command client: MQTT 5 request/response."""

    def __init__(self, broker: Mosquitto, atm_id: str):
        self.atm_id = atm_id
        self.replies: dict[str, tuple[bytes, bytes | None]] = {}
        self.cond = threading.Condition()
        self.numbers = itertools.count(1)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"centre-{atm_id}", protocol=paho.MQTTv5)
        subscribed = threading.Event()
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(f"atm/v1/{atm_id}/reply/#", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.connect(HOST, broker.port)
        c.loop_start()
        assert subscribed.wait(5)
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            self.replies[msg.topic] = (bytes(msg.payload), getattr(msg.properties, "CorrelationData", None))
            self.cond.notify_all()

    def __call__(self, name: str, body: bytes | dict = b"", timeout: float = 5.0) -> dict:
        n = next(self.numbers)
        reply_topic = f"atm/v1/{self.atm_id}/reply/{n}"
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = f"req-{n}".encode()
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        self.client.publish(f"atm/v1/{self.atm_id}/cmd/{name}", payload, qos=1, properties=props)
        with self.cond:
            assert self.cond.wait_for(lambda: reply_topic in self.replies, timeout), f"no reply to {name}"
            raw, correlation = self.replies[reply_topic]
        assert correlation == f"req-{n}".encode()
        response = json.loads(raw)
        assert_valid("command-response.schema.json", response, f"reply to {name} {payload[:60]!r}")
        if name in COMMANDS:
            assert_valid(f"command-response.schema.json#/$defs/{name}", response, f"reply to {name}")
        return response

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _real_agent(atm_id: str, brokers: list[str], **telemetry) -> Agent:
    cfg = configmod.from_dict({"atm": {"id": atm_id}, "telemetry": telemetry})
    clock = RealClock()
    return Agent(cfg, clock, Recorder(clock, keep=False), brokers=brokers)


GOOD = [
    ("status", b""),
    ("status", {}),
    ("cash", {}),
    ("selftest", {}),
    ("selftest", {"device": "dispenser"}),
    ("selftest", {"device": "all"}),
    ("rebirth", b"  "),
]
BAD = [
    ("reboot", {}, "unknown_command"),
    ("status", b"not json", "malformed_json"),
    ("status", b"\xff\xfe{}", "malformed_json"),
    ("status", b"[1, 2]", "malformed"),
    ("cash", b'{"x": "' + b"y" * 5000 + b'"}', "malformed"),
    ("status", {"verbose": True}, "unknown_field"),
    ("rebirth", {"now": 1}, "unknown_field"),
    ("selftest", {"device": "toaster"}, "bad_field"),
    ("selftest", {"device": 7}, "bad_field"),
    ("out_of_service", {"reason": 5}, "bad_field"),
    ("out_of_service", {"reason": "x" * 201}, "bad_field"),
]


def test_command_requests_and_responses_match_the_schemas(broker):
    atm_id = "atm-cmd"
    with Subscriber(broker, f"atm/v1/{atm_id}/#") as sub:
        agent = _real_agent(atm_id, [broker.url])
        ask = Requester(broker, atm_id)
        try:
            agent.start()
            agent.start_thread()
            wait_for(lambda: agent.publisher.connected and agent.atm.state == "idle", timeout=10)
            # The link subscribes to cmd/+ after the birth: a stored message arriving means the
            # SUBSCRIBE went before it, so no request can overtake it.
            sub.wait_for(lambda m: kind_of(m.topic) == "cash", timeout=10)
            for name, body in GOOD:
                if isinstance(body, dict):
                    assert_valid(f"command-request.schema.json#/$defs/{name}", body, name)
                response = ask(name, body)
                assert response["ok"] is True and response["command"] == name, response
            assert ask("status")["session_active"] is False
            sub.wait_for(
                lambda m: (
                    kind_of(m.topic) == "birth"
                    and not m.retain
                    and sum(kind_of(x.topic) == "birth" for x in sub.messages) >= 2
                )
            )  # the rebirth
            for name, body, error in BAD:
                response = ask(name, body)
                assert (response["ok"], response["error"]) == (False, error), (name, body, response)
                if name in COMMANDS and isinstance(body, dict):  # the schema refuses what the agent refuses
                    assert problems(f"command-request.schema.json#/$defs/{name}", body), (name, body)

            # A customer session runs: out_of_service waits for its end, selftest is refused.
            dev = agent.devices
            assert dev["card_reader"].customer_insert(CARDS["domestic"])
            wait_for(lambda: agent.atm.state == "pin_entry")
            assert ask("selftest")["error"] == "not_permitted"
            assert ask("status")["session_active"] is True
            assert ask("out_of_service", {"reason": "cash van due"}) == {
                "ok": True,
                "command": "out_of_service",
                "effective": "after_session",
            }
            assert ask("out_of_service")["error"] == "not_permitted"
            dev["keypad"].customer_enter("cancel")
            wait_for(lambda: agent.atm.state == "card_at_gate")
            dev["card_reader"].customer_take()
            wait_for(lambda: agent.atm.state == "out_of_service")
            status = ask("status")
            assert (status["held"], status["service"], status["functions"]) == (True, "out_of_service", [])
            assert ask("in_service") == {
                "ok": True,
                "command": "in_service",
                "effective": "now",
                "service": "in_service",
            }
            assert ask("in_service")["error"] == "not_permitted"
            wait_for(lambda: agent.atm.state == "idle")
        finally:
            agent.stop()
            ask.stop()
        sub.wait_for(lambda m: kind_of(m.topic) == "status" and m.json()["state"] == "offline")
        messages = list(sub.messages)
    seen = check_wire(messages, atm_id)
    assert seen["birth"] >= 2 and seen["event:session"] == 1
    assert seen["reply:selftest:not_permitted"] == 1 and seen["reply:reboot:unknown_command"] == 1
    services = [json.loads(m.payload)["service"] for m in messages if kind_of(m.topic) == "status"]
    assert "out_of_service" in services and services[-2:] == ["in_service", "in_service"]


# -- the Will of a killed agent ----------------------------------------------------------------------
WILL_CHILD = textwrap.dedent("""
    import sys, time
    from agent import config as configmod
    from agent.output import Recorder
    from agent.runtime import Agent
    from fsm.clock import RealClock
    clock = RealClock()
    cfg = configmod.from_dict({"atm": {"id": "atm-will"}})
    agent = Agent(cfg, clock, Recorder(clock, keep=False), brokers=[sys.argv[1]])
    agent.start()
    agent.start_thread()
    print("ready" if agent.publisher.wait_connected(5) else "no broker", flush=True)
    time.sleep(60)
""")


def test_the_will_of_a_killed_agent_matches_the_status_schema(broker):
    with Subscriber(broker, "atm/v1/atm-will/#") as sub:
        child = subprocess.Popen(
            [sys.executable, "-c", WILL_CHILD, broker.url], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            online = sub.wait_for(
                lambda m: (
                    kind_of(m.topic) == "status" and m.json()["state"] == "online" and m.json()["service"] != "starting"
                )
            )
            os.kill(child.pid, signal.SIGKILL)
            will = sub.wait_for(lambda m: kind_of(m.topic) == "status" and m.json()["state"] == "offline")
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        messages = list(sub.messages)
    check_wire(messages, "atm-will")
    assert will.json()["reason"] == "connection_lost" and will.json()["bdSeq"] == online.json()["bdSeq"]
    birth = next(m.json() for m in messages if kind_of(m.topic) == "birth")
    assert birth["bdSeq"] == will.json()["bdSeq"]


# -- two brokers: failover, failback, a trimmed outbox and its historical backlog ------------------------
def test_failover_failback_and_outbox_trimmed_match_the_schemas(broker):
    atm_id = "atm-fo"
    primary = Mosquitto().start()
    topic = f"atm/v1/{atm_id}/#"
    at_primary, at_secondary = Subscriber(primary, topic).start(), Subscriber(broker, topic).start()
    back_home = None
    agent = _real_agent(atm_id, [primary.url, broker.url], failback_after=0.5)
    try:
        agent.outbox.max_bytes = 1500  # stored before the first connect: the cash reports coalesce
        for count in range(500, 480, -1):
            level = {"id": "A", "denomination": 10_000, "count": count, "status": "ok", "accuracy": "accurate"}
            agent.telemetry.cash([level])
        agent.start()
        agent.start_thread()
        trimmed = at_primary.wait_for(lambda m: kind_of(m.topic) == "event" and m.json()["event"] == "outbox_trimmed")
        assert trimmed.json()["coalesced"] > 0
        at_primary.wait_for(lambda m: kind_of(m.topic) == "cash" and m.json().get("historical") is True)
        primary.kill()
        at_secondary.wait_for(
            lambda m: kind_of(m.topic) == "event" and m.json()["event"] == "broker_failover", timeout=8
        )
        primary.start()
        back_home = Subscriber(primary, topic).start()
        back_home.wait_for(
            lambda m: (
                kind_of(m.topic) == "event" and m.json()["event"] == "broker_failover" and m.json()["to"] == primary.url
            ),
            timeout=10,
        )
        at_secondary.wait_for(lambda m: kind_of(m.topic) == "status" and m.json().get("reason") == "failback")
    finally:
        agent.stop()
        for sub in (at_primary, at_secondary, back_home):
            if sub is not None:
                sub.stop()
        primary.close()
    everything = at_primary.messages + at_secondary.messages + back_home.messages
    seen = check_wire(everything, atm_id)
    assert seen["event:broker_failover"] >= 2 and seen["event:outbox_trimmed"] >= 1 and seen["birth"] >= 3


def _property_names(node) -> set[str]:
    """Every property name a schema (or a part of one) declares, however deep."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= _property_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= _property_names(item)
    return names


@pytest.mark.parametrize("kind", [*TELEMETRY_KINDS, "command-response", "envelope"])
def test_every_field_of_a_payload_is_in_telemetry_md(kind):
    text = (ROOT / "docs" / "telemetry.md").read_text()
    missing = sorted(n for n in _property_names(SCHEMAS[f"{kind}.schema.json"]) if f"`{n}`" not in text)
    assert missing == [], f"{kind}: fields not documented in docs/telemetry.md: {missing}"
