"""`atm demo --mqtt` against a real mosquitto on loopback."""

import json

from hw_mocks.servers.broker import Subscriber
from tests.helpers import RAW_PANS
from tests.test_cli import atm

ROOT = "atm/v1/atm-0001/"


def _run(mosquitto, scenario):
    with Subscriber(mosquitto, ROOT + "#") as sub:
        proc = atm("demo", "--scenario", scenario, "--mqtt", mosquitto.url, "--json")
        assert proc.returncode == 0, proc.stderr
        sub.wait_for(lambda m: m.topic == ROOT + "status" and m.json()["state"] == "offline")
        messages = list(sub.messages)
    for m in messages:
        body = m.json()
        assert {"atm_id", "ts", "boot"} <= set(body)
        assert {"seq", "id"} <= set(body) or "bdSeq" in body  # numbered, or a session message
        for pan in RAW_PANS:
            assert pan.encode() not in m.payload
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    published = [r["payload"] for r in printed if r["type"] == "telemetry"]
    received = {}
    for m in messages:  # at least once: a duplicate carries the same id
        if "id" in m.json():
            received.setdefault(m.json()["id"], m)
    assert {p["id"] for p in published} <= set(received)
    for topic in {m.topic for m in messages}:  # in order per topic
        sent = [
            p["id"]
            for p in published
            if ROOT + topic.rsplit("/", 1)[1] == topic and p["id"] in received and received[p["id"]].topic == topic
        ]
        got = [i for i in received if received[i].topic == topic and i in set(sent)]
        assert got == sent, topic
    return list(received.values())


def _of(messages, kind):
    return [m for m in messages if m.topic == ROOT + kind]


def test_dispenser_jam_fault_raised_and_cleared_with_retained_status(mosquitto):
    messages = _run(mosquitto, "dispenser-jam")
    faults = [(m.json()["device"], m.json()["code"], m.json()["state"], m.qos) for m in _of(messages, "fault")]
    assert faults == [("dispenser", "jam", "raised", 1), ("dispenser", "jam", "cleared", 1)]
    raised = _of(messages, "fault")[0].json()
    assert raised["severity"] == "error" and raised["message"] and raised["action"] == "reset"
    services = [m.json()["service"] for m in _of(messages, "status") if m.json()["service"] != "starting"]
    assert services[0] == "in_service" and "degraded" in services
    seqs = [m.json()["seq"] for m in _of(messages, "fault")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # A monitoring centre that subscribes later gets the retained status at once.
    with Subscriber(mosquitto, ROOT + "status") as late:
        status = late.wait_for(lambda m: m.retain)
    assert status.json()["state"] == "offline" and status.json()["service"] == "in_service"


def test_cash_low_reaches_the_monitoring_centre(mosquitto):
    messages = _run(mosquitto, "cash-low")
    cash = [m.json()["cassettes"] for m in _of(messages, "cash")]
    assert all(m.qos == 1 for m in _of(messages, "cash"))
    first_a = next(c for c in cash[0] if c["id"] == "A")
    last_a = next(c for c in cash[-1] if c["id"] == "A")
    assert first_a == {"id": "A", "denomination": 10000, "count": 53, "status": "ok", "accuracy": "accurate"}
    assert last_a == {"id": "A", "denomination": 10000, "count": 49, "status": "low", "accuracy": "accurate"}
    sessions = [m.json() for m in _of(messages, "event") if m.json()["event"] == "session"]
    assert sessions and sessions[-1]["outcome"] == "completed"


def test_demo_without_a_broker_keeps_running_and_says_so():
    proc = atm("demo", "--scenario", "balance", "--mqtt", "mqtt://127.0.0.1:9")
    assert proc.returncode == 0
    assert "unreachable" in proc.stderr
