"""Mutual TLS and per-ATM ACLs on a real mosquitto (127.0.0.1 only), with paho directly.

The broker uses the documented ACL, docs/mosquitto/atm.acl.example, and the settings of
docs/mosquitto/mosquitto-tls.conf.example (cafile/certfile/keyfile, require_certificate,
use_identity_as_username, allow_anonymous false).

What mosquitto 2.0 does when it refuses something (asserted below):
  * no client certificate / a certificate from another CA: the TLS handshake fails. With
    TLS 1.2 the client gets an alert (handshake_failure / unknown_ca) from do_handshake();
    with TLS 1.3 the client's side of the handshake completes and the broker then closes
    the connection without a CONNACK (EOF on the client's first read);
  * a broker certificate from a CA the client does not trust: the client's handshake fails
    with CERTIFICATE_VERIFY_FAILED;
  * PUBLISH QoS 1 outside the ATM's own prefix: MQTT v5 PUBACK 0x87 (Not authorized),
    3.1.1 a plain PUBACK; not delivered; the connection stays up;
  * SUBSCRIBE to another ATM's commands: 2.0 grants it (acl_file is not consulted at
    SUBSCRIBE) but never delivers a message the client may not read;
  * a Will outside the ATM's prefix: CONNECT accepted, the Will dropped when it fires.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from hw_mocks.servers.broker import HOST, Mosquitto, Subscriber, make_client, mosquitto_version
from hw_mocks.servers.tls import Pki, make_pki
from hw_mocks.servers.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
ACL = (ROOT / "docs" / "mosquitto" / "atm.acl.example").read_text()
ATMS = ("atm-0001", "atm-0002")
NOT_AUTHORIZED = 0x87


pytestmark = pytest.mark.mosquitto


# -- fixtures -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="pki-") as d:
        yield make_pki(d, ATMS)


@pytest.fixture(scope="module")
def broker(pki):
    b = Mosquitto(tls=pki, acl=ACL)
    try:
        b.start()
        yield b
    finally:
        b.close()


@pytest.fixture
def clients():
    """Make connected paho clients; all disconnected and stopped afterwards."""
    made: list[paho.Client] = []

    def make(broker, cert, **kw) -> Session:
        s = Session.open(broker, cert, **kw)
        made.append(s.client)
        assert s.connack is not None and not s.connack.is_failure, s
        return s

    yield make
    for c in made:
        c.disconnect()
        c.loop_stop()


# -- helpers ------------------------------------------------------------------------
@dataclass
class Session:
    """A paho client and what happened to it: CONNACK, disconnect, PUBACK/SUBACK codes."""

    client: paho.Client
    connack: ReasonCode | None = None
    disconnect: ReasonCode | None = None
    error: BaseException | None = None  # raised by connect()
    acks: dict = field(default_factory=dict)  # mid -> PUBACK reason code / SUBACK codes
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def open(
        cls, broker, cert, *, ca=None, protocol=paho.MQTTv5, username=None, client_id="", will=None, timeout=3.0
    ) -> Session:
        s = cls(make_client(broker, cert, ca=ca, client_id=client_id, protocol=protocol))
        c = s.client
        c.reconnect_delay_set(0.1, 0.1)  # loop_stop() waits out a pending reconnect delay
        if username is not None:
            c.username_pw_set(username)
        if will is not None:
            c.will_set(*will, qos=1)
        c.on_connect = lambda cl, ud, fl, rc, pr: s._set(connack=rc)
        c.on_disconnect = lambda cl, ud, fl, rc, pr: s._set(disconnect=rc)
        c.on_publish = lambda cl, ud, mid, rc, pr: s._ack(mid, rc)
        c.on_subscribe = lambda cl, ud, mid, rcs, pr: s._ack(mid, list(rcs))
        try:
            c.connect(HOST, broker.port, keepalive=10)
        except (OSError, ssl.CertificateError) as e:  # ssl.SSLError is an OSError
            s.error = e
            return s
        c.loop_start()
        with s.cond:
            s.cond.wait_for(lambda: s.connack is not None or s.disconnect is not None, timeout)
        return s

    def _set(self, **kw) -> None:
        with self.cond:
            for k, v in kw.items():
                if getattr(self, k) is None:
                    setattr(self, k, v)
            self.cond.notify_all()

    def _ack(self, mid, rc) -> None:
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def _wait_ack(self, mid: int, timeout: float = 3.0):
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.acks, timeout), f"no ack for mid {mid}"
            return self.acks[mid]

    def publish(self, topic: str, payload: bytes = b"{}", qos: int = 1) -> ReasonCode:
        """Publish and return the broker's PUBACK reason code."""
        return self._wait_ack(self.client.publish(topic, payload, qos=qos).mid)

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=qos)
        (rc,) = self._wait_ack(mid)
        return rc

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def raw_tls(
    broker: Mosquitto, cert=None, *, ca=None, server_hostname=HOST, tls_version: ssl.TLSVersion | None = None
) -> bytes:
    """TLS-connect with the ssl module, send an MQTT 3.1.1 CONNECT and return the reply
    (a CONNACK is b' \\x02\\x00\\x00'); exceptions propagate."""
    ctx = ssl.create_default_context(cafile=str(ca or broker.tls.ca_cert))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = tls_version
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 0])
    with socket.create_connection((HOST, broker.port), timeout=3) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
            tls.sendall(connect)
            return tls.recv(4)


def assert_rejected(s: Session) -> None:
    """No CONNACK, and the broker closed the connection."""
    if s.error is None:
        with s.cond:
            s.cond.wait_for(lambda: s.disconnect is not None or s.connack is not None, 3)
    s.close()
    assert s.connack is None, f"broker accepted the client: {s}"
    assert s.error is not None or s.disconnect is not None, s
    assert not s.client.is_connected()


# -- the broker --------------------------------------------------------------------
def test_tls_broker_listens_on_localhost_only(broker, pki):
    assert broker.url == f"mqtts://127.0.0.1:{broker.port}"
    conf = broker.conf.read_text().splitlines()
    assert [line for line in conf if line.startswith(("listener", "port", "bind"))] == [
        f"listener {broker.port} 127.0.0.1"
    ]
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert "allow_anonymous false" in conf and f"acl_file {broker.acl_file}" in conf
    assert raw_tls(broker, pki.client("atm-0001")) == b" \x02\x00\x00"  # CONNACK accepted


def test_atm_publishes_over_mutual_tls_and_monitor_receives(broker, clients):
    with Subscriber(broker, "atm/v1/#", cert="monitor") as monitor:
        atm = clients(broker, "atm-0001", client_id="atm-0001-agent")
        assert atm.publish("atm/v1/atm-0001/fault", b'{"code": "JAM"}').value == 0
        msg = monitor.wait_for(lambda m: m.topic == "atm/v1/atm-0001/fault")
    assert msg.json() == {"code": "JAM"} and msg.qos == 1
    # use_identity_as_username: the certificate's CN is the username
    broker.wait_for_log("as atm-0001-agent (p5, c1, k10, u'atm-0001')")


def test_client_without_certificate_is_rejected(broker):
    assert_rejected(Session.open(broker, None))
    broker.wait_for_log("peer did not return a certificate")
    with pytest.raises(ssl.SSLError, match="SSLV3_ALERT_HANDSHAKE_FAILURE"):
        raw_tls(broker, None, tls_version=ssl.TLSVersion.TLSv1_2)  # fails in the handshake
    with pytest.raises(OSError):  # 1.3: handshake "completes", then EOF instead of CONNACK
        raw_tls(broker, None, tls_version=ssl.TLSVersion.TLSv1_3)


def test_client_certificate_from_another_ca_is_rejected(broker, pki):
    assert pki.rogue.cn == "atm-0001"  # same CN as a real ATM: impersonation attempt
    assert_rejected(Session.open(broker, pki.rogue))
    broker.wait_for_log("certificate verify failed")
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_UNKNOWN_CA"):
        raw_tls(broker, pki.rogue, tls_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(OSError):
        raw_tls(broker, pki.rogue, tls_version=ssl.TLSVersion.TLSv1_3)


def test_client_refuses_a_broker_it_does_not_trust(broker, pki):
    s = Session.open(broker, "atm-0001", ca=pki.rogue_ca_cert)
    assert isinstance(s.error, ssl.SSLCertVerificationError), s
    assert s.error.reason == "CERTIFICATE_VERIFY_FAILED"
    assert_rejected(s)
    # the server certificate is checked against the host name too (SAN 127.0.0.1, localhost)
    assert raw_tls(broker, pki.client("atm-0001"), server_hostname="localhost") == b" \x02\x00\x00"
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname mismatch"):
        raw_tls(broker, pki.client("atm-0001"), server_hostname="broker.example")


# -- the ACL ------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311], ids=["v5", "v311"])
def test_atm_cannot_publish_for_another_atm(broker, clients, protocol):
    with Subscriber(broker, "atm/v1/#", cert="monitor") as monitor:
        # the username it sends is ignored: the certificate says atm-0001
        atm = clients(broker, "atm-0001", protocol=protocol, username="atm-0002")
        denied = atm.publish("atm/v1/atm-0002/fault", b'{"forged": true}')
        denied_other = atm.publish("atm/v2/anything", b"{}")
        allowed = atm.publish("atm/v1/atm-0001/reply/req-1", b'{"ok": true}')
        monitor.wait_for(lambda m: m.topic == "atm/v1/atm-0001/reply/req-1")
        assert atm.client.is_connected()
    if protocol == paho.MQTTv5:
        assert denied.value == NOT_AUTHORIZED and denied.getName() == "Not authorized"
        assert denied_other.value == NOT_AUTHORIZED
        assert allowed.value == 0
    else:  # 3.1.1 has no reason codes: an ordinary PUBACK, the message silently dropped
        assert denied.value == 0 and denied_other.value == 0
    broker.wait_for_log("Denied PUBLISH from")
    # published before the allowed reply on the same connection: it would have arrived first
    assert [m.topic for m in monitor.messages] == ["atm/v1/atm-0001/reply/req-1"]


def test_atm_receives_only_its_own_commands(broker, clients):
    atm1 = clients(broker, "atm-0001")
    got: list[str] = []
    atm1.client.on_message = lambda cl, ud, msg: got.append(msg.topic)
    other = atm1.subscribe("atm/v1/atm-0002/cmd/#")
    wildcard = atm1.subscribe("atm/v1/+/cmd/#")
    if mosquitto_version()[:2] == (2, 0):
        # mosquitto 2.0 does not check acl_file at SUBSCRIBE: granted, filtered on delivery
        assert other.value == 1 and wildcard.value == 1
    else:
        assert other.value in (1, NOT_AUTHORIZED)
    with Subscriber(broker, "atm/v1/atm-0002/cmd/#", cert="atm-0002") as atm2:
        monitor = clients(broker, "monitor")
        assert monitor.publish("atm/v1/atm-0002/cmd/reboot").value == 0
        assert monitor.publish("atm/v1/atm-0001/cmd/reboot").value == 0
        atm2.wait_for(lambda m: m.topic == "atm/v1/atm-0002/cmd/reboot")  # atm-0002 gets its own
        wait_for(lambda: "atm/v1/atm-0001/cmd/reboot" in got, 3, message="atm-0001's own command")
    # same publisher, same order: atm-0002's command would have arrived before atm-0001's
    assert got == ["atm/v1/atm-0001/cmd/reboot"]


def test_atm_cannot_send_commands_to_other_atms(broker, clients):
    with Subscriber(broker, "atm/v1/atm-0002/cmd/#", cert="atm-0002") as atm2:
        atm1 = clients(broker, "atm-0001")
        assert atm1.publish("atm/v1/atm-0002/cmd/dispense").value == NOT_AUTHORIZED
        monitor = clients(broker, "monitor")
        assert monitor.publish("atm/v1/atm-0002/cmd/ping").value == 0
        atm2.wait_for(lambda m: m.topic.endswith("/ping"))
    assert [m.topic for m in atm2.messages] == ["atm/v1/atm-0002/cmd/ping"]


def test_will_outside_the_atm_prefix_is_dropped(broker, clients):
    with Subscriber(broker, "atm/v1/#", cert="monitor") as monitor:
        for topic in ("atm/v1/atm-0002/status", "atm/v1/atm-0001/status"):
            s = Session.open(broker, "atm-0001", will=(topic, b'{"state": "offline"}'))
            assert s.connack is not None and s.connack.value == 0  # accepted either way
            s.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
            s.client.loop_stop()
        monitor.wait_for(lambda m: m.topic == "atm/v1/atm-0001/status")
    assert [m.topic for m in monitor.messages] == ["atm/v1/atm-0001/status"]


# -- outages ------------------------------------------------------------------------
def test_tls_broker_kill_and_restart_on_the_same_port(pki: Pki):
    b = Mosquitto(tls=pki, acl=ACL)
    try:
        b.start()
        port = b.port
        s = Session.open(b, "atm-0001")
        assert s.connack is not None and not s.connack.is_failure
        b.kill()
        assert not b.running
        with s.cond:
            assert s.cond.wait_for(lambda: s.disconnect is not None, 3)
        s.close()
        b.start()
        assert b.port == port and b.url == f"mqtts://127.0.0.1:{port}"
        s = Session.open(b, "atm-0001")
        assert s.connack is not None and not s.connack.is_failure
        assert s.publish("atm/v1/atm-0001/status").value in (0, 0x10)  # 0x10: no subscribers
        s.close()
        b.stop()
        assert not b.running
        b.start()
        assert b.port == port
    finally:
        b.close()
    assert not Path(b.conf).exists()


@pytest.mark.parametrize("persistence", [True, False])
def test_persistence_keeps_retained_messages_across_a_restart(persistence):
    b = Mosquitto(persistence=persistence)
    try:
        b.start()
        s = Session.open(b, None)
        s.client.publish("atm/v1/atm-0001/birth", b"{}", qos=1, retain=True).wait_for_publish(3)
        s.close()
        b.stop()  # SIGTERM: mosquitto saves its database on the way out
        b.start()
        s = Session.open(b, None)
        got: list[str] = []
        s.client.on_message = lambda cl, ud, msg: got.append(msg.topic)
        assert s.subscribe("atm/v1/#").value == 1
        time.sleep(0.3)
        s.close()
    finally:
        b.close()
    assert got == (["atm/v1/atm-0001/birth"] if persistence else [])
