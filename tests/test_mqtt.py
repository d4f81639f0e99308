"""MqttPublisher against a real mosquitto on 127.0.0.1."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.mqtt import BrokerUrl, MqttPublisher, parse_broker_url
from agent.telemetry import Message, Telemetry
from fsm.clock import RealClock
from tests.broker import Subscriber, free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_until(cond, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.fixture
def make_publisher():
    made = []

    def make(url, atm_id="ATM-T1", **kw):
        tel = Telemetry(atm_id, RealClock(), None)
        pub = MqttPublisher([url], client_id=atm_id, will=tel.status_message(False, "offline"), **kw)
        tel.publishers = [pub]
        made.append(pub)
        return pub, tel

    yield make
    for pub in made:
        pub.stop(timeout=0.2)


# -- URLs ---------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1", BrokerUrl("127.0.0.1", 1883, False)),
    ("mqtt://broker.local:1884", BrokerUrl("broker.local", 1884, False)),
    ("mqtts://127.0.0.1", BrokerUrl("127.0.0.1", 8883, True)),
    ("MQTTS://host:8884/", BrokerUrl("host", 8884, True)),
])
def test_parse_good_urls(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", [
    "http://127.0.0.1", "127.0.0.1:1883", "mqtt://", "mqtt://:1883", "mqtt://h:99999",
    "mqtt://h:abc", "mqtt://h/topic", "mqtt://u:p@h", "tcp://h:1883", "",
])
def test_bad_url_raises(url):
    with pytest.raises(ValueError, match="bad broker URL"):
        parse_broker_url(url)
    with pytest.raises(ValueError):
        MqttPublisher([url], client_id="x")


# -- real broker --------------------------------------------------------
def test_retained_status_for_late_subscriber(mosquitto, make_publisher):
    pub, tel = make_publisher(mosquitto.url)
    pub.start()
    tel.status(True, "in_service")
    assert pub.flush(5)
    with Subscriber(mosquitto, "atm/v1/ATM-T1/status") as sub:
        msg = sub.wait_for(lambda m: True)
    assert msg.retain
    assert msg.json()["state"] == "online" and msg.json()["service"] == "in_service"


def test_fault_and_cash_arrive_with_envelope(mosquitto, make_publisher):
    with Subscriber(mosquitto, "atm/v1/ATM-T1/#") as sub:
        pub, tel = make_publisher(mosquitto.url)
        pub.start()
        tel.fault({"device": "dispenser", "code": "JAM"})
        tel.cash([{"id": "A", "denomination": 1000, "count": 42}])
        assert pub.flush(5)
        fault = sub.wait_for(lambda m: m.topic.endswith("/fault"))
        cash = sub.wait_for(lambda m: m.topic.endswith("/cash"))
    assert pub.acked == 2 and not pub.unacked
    assert fault.qos == 1 and cash.qos == 1
    f, c = fault.json(), cash.json()
    for body in (f, c):
        assert body["atm_id"] == "ATM-T1"
        assert body["ts"].endswith("Z") and body["id"].endswith(f"-{body['seq']}")
    assert f["id"] != c["id"] and f["id"].split("-")[0] == c["id"].split("-")[0]  # one boot
    assert f["code"] == "JAM" and f["device"] == "dispenser"
    assert c["cassettes"][0]["count"] == 42
    assert c["seq"] == f["seq"] + 1


def test_messages_before_broker_up_are_delivered(mosquitto, make_publisher):
    mosquitto.stop()
    pub, _ = make_publisher(mosquitto.url, reconnect_delay=(1, 1))
    msgs = [Message(f"atm/v1/ATM-T1/test/{i}", {"n": i}, qos=1, retain=True) for i in range(5)]
    pub.publish(msgs[0])  # before start()
    pub.start()
    for m in msgs[1:]:
        pub.publish(m)  # while no broker is listening
    assert not pub.connected and len(pub.unacked) == 5
    mosquitto.start()
    assert pub.flush(8), f"still unacked: {pub.unacked}"
    assert pub.connected and pub.acked == 5
    with Subscriber(mosquitto, "atm/v1/ATM-T1/test/+") as sub:
        assert wait_until(lambda: len(sub.messages) == 5)
    assert sorted(m.json()["n"] for m in sub.messages) == list(range(5))


CHILD = textwrap.dedent("""
    import sys, time
    from agent.mqtt import MqttPublisher
    from agent.telemetry import Telemetry
    from fsm.clock import RealClock
    tel = Telemetry("ATM-W", RealClock(), None)
    pub = MqttPublisher([sys.argv[1]], "ATM-W", will=tel.status_message(False, "offline"),
                        keepalive=2)
    tel.publishers = [pub]
    pub.start()
    tel.status(True, "in_service")
    assert pub.flush(5)
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_will_fires_when_client_dies(mosquitto, sig):
    """SIGKILL closes the socket: Will at once. SIGSTOP hangs it: Will after 1.5 x keepalive
    (mosquitto 2.0 checks in whole seconds; keepalive 2 s gives ~5 s)."""
    with Subscriber(mosquitto, "atm/v1/ATM-W/status") as sub:
        child = subprocess.Popen([sys.executable, "-c", CHILD, mosquitto.url], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            sub.wait_for(lambda m: m.json()["state"] == "online")
            t0 = time.monotonic()
            os.kill(child.pid, sig)
            offline = sub.wait_for(lambda m: m.json()["state"] == "offline", timeout=6)
            waited = time.monotonic() - t0
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
    assert offline.json()["atm_id"] == "ATM-W"
    if sig == signal.SIGKILL:
        assert waited < 1.5
    else:
        assert 2.5 < waited < 8.0
    with Subscriber(mosquitto, "atm/v1/ATM-W/status") as late:  # the Will is retained
        assert late.wait_for(lambda m: True).json()["state"] == "offline"


def test_stop_publishes_final_offline_status(mosquitto, make_publisher):
    with Subscriber(mosquitto, "atm/v1/ATM-T1/status") as sub:
        pub, tel = make_publisher(mosquitto.url)
        pub.start()
        tel.status(True, "in_service")
        sub.wait_for(lambda m: m.json()["state"] == "online")
        assert pub.stop(final=tel.status_message(False, "shutdown"))
        pub.stop()  # idempotent
        assert not pub.connected
        final = sub.wait_for(lambda m: m.json()["state"] == "offline")
        time.sleep(0.3)  # a clean DISCONNECT must not also fire the Will
        offline = [m.json() for m in sub.messages if m.json()["state"] == "offline"]
    assert final.json()["service"] == "shutdown"
    assert len(offline) == 1
    pub.publish(tel.status_message(True, "x"))  # after stop: dropped, no exception


def test_no_broker_start_does_not_raise_and_warns_once(caplog, make_publisher):
    caplog.set_level(logging.INFO, logger="agent.mqtt")
    pub, tel = make_publisher(f"mqtt://127.0.0.1:{free_port()}", reconnect_delay=(1, 1))
    fails = []
    orig = pub.client.on_connect_fail
    pub.client.on_connect_fail = lambda *a: (fails.append(1), orig(*a))
    pub.start()
    tel.fault({"code": "X"})  # queued, no exception
    assert wait_until(lambda: len(fails) >= 3, timeout=5)
    warnings = [r for r in caplog.records
                if r.name.startswith("agent.mqtt") and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage()
    assert not pub.connected and len(pub.unacked) == 1
    t0 = time.monotonic()
    assert pub.stop(timeout=0.2) is False
    assert time.monotonic() - t0 < 3
