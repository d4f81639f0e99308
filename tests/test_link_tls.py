"""The agent's MqttLink over mutual TLS, with the documented ACL, on a real mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.mqtt import MqttLink, TlsFiles
from agent.outbox import Outbox
from agent.telemetry import Telemetry
from fsm.clock import RealClock
from hw_mocks.servers.broker import Mosquitto, Subscriber
from hw_mocks.servers.tls import make_pki
from hw_mocks.servers.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
ACL = (ROOT / "docs" / "mosquitto" / "atm.acl.example").read_text()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), atm_ids=("atm-0001", "atm-0002"))


@pytest.fixture
def broker(pki):
    b = Mosquitto(tls=pki, acl=ACL).start()
    yield b
    b.close()


def make_link(tmp_path, broker, tls, atm_id="atm-0001"):
    box = Outbox(str(tmp_path / f"{atm_id}.db"))
    tel = Telemetry(atm_id, RealClock(), boot=box.next_counter("boot"))
    link = MqttLink([broker.url], atm_id, box, tls=tls, make_message=tel.message, connect_timeout=2)
    tel.publishers = [link]
    return link, tel


def test_mutual_tls_delivers_to_the_monitoring_centre(tmp_path, pki, broker):
    me = pki.client("atm-0001")
    link, tel = make_link(tmp_path, broker, TlsFiles(str(pki.ca_cert), str(me.cert), str(me.key)))
    with Subscriber(broker, "atm/v1/#") as centre:  # the monitor certificate
        link.start()
        try:
            assert link.wait_connected(5)
            tel.fault({"device": "dispenser", "code": "jam"})
            assert link.flush(5)
            fault = centre.wait_for(lambda m: m.topic == "atm/v1/atm-0001/fault")
        finally:
            link.stop(timeout=1)
    assert json.loads(fault.payload)["code"] == "jam" and link.refused == 0


@pytest.mark.parametrize("who", ["no certificate", "rogue CA", "untrusted broker"])
def test_bad_clients_are_rejected_and_keep_their_messages(tmp_path, pki, broker, who):
    me = pki.client("atm-0001")
    tls = {
        "no certificate": TlsFiles(str(pki.ca_cert)),
        "rogue CA": TlsFiles(str(pki.ca_cert), str(pki.rogue.cert), str(pki.rogue.key)),
        "untrusted broker": TlsFiles(str(pki.rogue_ca_cert), str(me.cert), str(me.key)),
    }[who]
    link, tel = make_link(tmp_path, broker, tls)
    link.start()
    try:
        tel.fault({"code": "x"})
        time.sleep(1.5)
        assert not link.connected and link.outbox.count() == 1
    finally:
        link.stop(timeout=0.2)


def test_the_acl_confines_an_atm_to_its_own_topics(tmp_path, pki, broker):
    """atm-0002's certificate cannot publish as atm-0001: the broker refuses (PUBACK 0x87),
    and the message stays in the outbox instead of being lost."""
    other = pki.client("atm-0002")
    link, tel = make_link(
        tmp_path, broker, TlsFiles(str(pki.ca_cert), str(other.cert), str(other.key)), atm_id="atm-0001"
    )
    with Subscriber(broker, "atm/v1/#") as centre:
        link.start()
        try:
            tel.fault({"code": "spoofed"})
            wait_for(lambda: link.refused >= 1, 5, 0.05, "the broker to refuse the spoofed fault")
        finally:
            link.stop(timeout=0.2)
        assert link.refused >= 1 and link.outbox.count() == 1
        assert not any(m.topic.endswith("/fault") for m in centre.messages)
