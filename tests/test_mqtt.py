"""MqttLink (durable outbox, sessions, two sites, commands) against real mosquitto brokers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.mqtt import BrokerUrl, MqttLink, parse_broker_url
from agent.outbox import Outbox
from hw_mocks.servers.broker import HOST, Mosquitto, Subscriber, free_port
from hw_mocks.servers.wait import wait_for
from tests.helpers import live_agent
from tests.test_schemas import assert_valid

ROOT = Path(__file__).resolve().parent.parent
ATM = "ATM-T1"


class Consumer:
    """The monitoring centre: a persistent MQTT session, so the broker keeps its
    messages while it reconnects. Counts faults by (boot, seq)."""

    def __init__(self, broker: Mosquitto, topic: str = "atm/v1/#", client_id: str = "centre"):
        self.broker, self.topic = broker, topic
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        c.reconnect_delay_set(0.05, 0.2)
        self.subscribed = threading.Event()
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda cl, ud, mid, rc, pr: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c

    def start(self) -> Consumer:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(HOST, self.broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, message=f"the centre's SUBACK for {self.topic}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [p for t, p, r in self.messages if t.endswith("/" + kind)]

    def numbers(self, kind: str = "fault") -> list[int]:
        return [p["n"] for p in self.of(kind)]


# -- URLs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, expected",
    [
        ("mqtt://127.0.0.1", BrokerUrl("127.0.0.1", 1883, False)),
        ("mqtt://broker.local:1884", BrokerUrl("broker.local", 1884, False)),
        ("mqtts://127.0.0.1", BrokerUrl("127.0.0.1", 8883, True)),
        ("MQTTS://host:8884/", BrokerUrl("host", 8884, True)),
    ],
)
def test_parse_good_urls(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1",
        "127.0.0.1:1883",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://h:99999",
        "mqtt://h:abc",
        "mqtt://h/topic",
        "mqtt://u:p@h",
        "tcp://h:1883",
        "",
        "mqtt://a..b:1883",  # getaddrinfo would raise UnicodeError on these two
        "mqtt://" + "a" * 64 + ".example",
    ],
)
def test_bad_url_raises(url, tmp_path):
    with pytest.raises(ValueError, match="bad broker URL"):
        parse_broker_url(url)
    with pytest.raises(ValueError):
        MqttLink([url], "x", Outbox(str(tmp_path / "o.db")))


# -- messages, envelope, birth ----------------------------------------------------------------
def test_fault_and_cash_arrive_with_envelope_after_the_birth(mosquitto, links):
    with Subscriber(mosquitto, f"atm/v1/{ATM}/#") as sub:
        link, tel = links(mosquitto.url, birth={"firmware": "9.9", "service": "in_service"})
        link.start()
        assert link.wait_connected(5)
        tel.fault({"device": "dispenser", "code": "JAM"})
        tel.cash([{"id": "A", "denomination": 1000, "count": 42}])
        assert link.flush(5)
        fault = sub.wait_for(lambda m: m.topic.endswith("/fault"))
        cash = sub.wait_for(lambda m: m.topic.endswith("/cash"))
        topics = [m.topic.rsplit("/", 1)[1] for m in sub.messages]
    assert topics.index("birth") < topics.index("fault")
    birth = next(m for m in sub.messages if m.topic.endswith("/birth")).json()
    assert birth["firmware"] == "9.9" and birth["bdSeq"] == link.bdseq and birth["service"] == "in_service"
    assert fault.qos == 1 and cash.qos == 1
    f, c = fault.json(), cash.json()
    for body in (f, c):
        assert body["atm_id"] == ATM and body["ts"].endswith("Z")
        assert body["id"] == f"{ATM}-{body['boot']}-{body['seq']}" and "historical" not in body
    assert f["code"] == "JAM" and c["cassettes"][0]["count"] == 42 and c["seq"] == f["seq"] + 1
    assert link.acked == 2 and link.outbox.count() == 0


@pytest.mark.mosquitto
def test_messages_stored_while_no_broker_arrive_in_order_flagged_historical(links):
    broker = Mosquitto()
    link, tel = links(broker.url)
    link.start()
    for i in range(20):
        tel.fault({"code": "X", "n": i})
    assert not link.connected and link.outbox.count() == 20
    broker.start()
    try:
        consumer = Consumer(broker).start()
        assert link.flush(10)
        wait_for(lambda: len(consumer.of("fault")) == 20)
        faults = consumer.of("fault")
        assert [f["n"] for f in faults] == list(range(20)) and all(f["historical"] for f in faults)
        tel.fault({"code": "live"})
        wait_for(lambda: len(consumer.of("fault")) == 21)
        assert "historical" not in consumer.of("fault")[-1]
        consumer.stop()
    finally:
        link.stop(timeout=0.5)
        broker.close()


def test_retained_status_carries_the_session_counter(mosquitto, links):
    link, tel = links(mosquitto.url)
    link.start()
    tel.status(True, "in_service")
    assert link.flush(5)
    with Subscriber(mosquitto, f"atm/v1/{ATM}/status") as sub:
        msg = sub.wait_for(lambda m: m.retain)
    assert msg.json()["state"] == "online" and msg.json()["bdSeq"] == link.bdseq


# -- outages --------------------------------------------------------------------------------
def stream(tel, n, rate_s=0.002, start=0):
    for i in range(start, start + n):
        tel.fault({"code": "X", "n": i})
        time.sleep(rate_s)


@pytest.mark.mosquitto
@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_broker_outage_mid_stream_loses_nothing(links, outage):
    broker = Mosquitto(persistence=True).start()
    consumer = Consumer(broker).start()
    link, tel = links(broker.url)
    link.start()
    try:
        assert link.wait_connected(5)
        stream(tel, 300)
        getattr(broker, outage)()
        stream(tel, 300, start=300)
        broker.start()
        stream(tel, 300, start=600)
        assert link.flush(20), f"{link.outbox.count()} still in the outbox"
        wait_for(lambda: len(set(consumer.numbers())) >= 900, timeout=10)
        numbers = consumer.numbers()
        assert set(numbers) == set(range(900)), sorted(set(range(900)) - set(numbers))[:10]
        ids = [f["id"] for f in consumer.of("fault")]
        assert len(set(ids)) == 900  # duplicates, if any, carry the same id: a consumer drops them
        first = {}
        for f in consumer.of("fault"):
            first.setdefault(f["id"], f["seq"])
        seqs = list(first.values())
        assert seqs == sorted(seqs)  # per topic, in the order they were made
    finally:
        consumer.stop()
        link.stop(timeout=0.5)
        broker.close()


AGENT_CHILD = textwrap.dedent("""
    import sys, time
    from fsm.clock import RealClock
    from agent.mqtt import MqttLink
    from agent.outbox import Outbox
    from agent.telemetry import Telemetry
    url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    box = Outbox(path)
    tel = Telemetry("ATM-K", RealClock(), boot=box.next_counter("boot"))
    link = MqttLink([url], "ATM-K", box, keepalive=5, make_message=tel.message)
    tel.publishers = [link]
    link.start()
    print("boot", tel.boot, flush=True)
    for i in range(n):
        tel.fault({"code": "X", "n": i})
        time.sleep(0.002)
    print("done", flush=True)
    link.flush(30)
    print("flushed", flush=True)
    time.sleep(60)
""")


def test_agent_kill_9_mid_stream_then_restart_loses_nothing(mosquitto, tmp_path):
    consumer = Consumer(mosquitto, "atm/v1/ATM-K/#").start()
    path = str(tmp_path / "outbox.db")
    child = subprocess.Popen(
        [sys.executable, "-c", AGENT_CHILD, mosquitto.url, path, "2000"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().split() == ["boot", "1"]
        wait_for(lambda: len(consumer.of("fault")) >= 200, 10, message="200 faults before the kill")
        os.kill(child.pid, signal.SIGKILL)  # mid-stream: some sent, some in flight, some stored
        child.wait()
        first = Outbox(path)
        stored = first.count()
        sent_first = {p["n"] for p in consumer.of("fault")}
        produced = max(sent_first | {-1}) + 1
        first.close()
        again = subprocess.Popen(
            [sys.executable, "-c", AGENT_CHILD, mosquitto.url, path, "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            assert again.stdout.readline().split() == ["boot", "2"]
            assert again.stdout.readline().strip() == "done"
            assert again.stdout.readline().strip() == "flushed"
        finally:
            again.kill()
            again.wait()
    finally:
        child.kill()
        consumer.stop()
    numbers = {p["n"] for p in consumer.of("fault") if p["boot"] == 1}
    assert stored >= 0 and produced > 0
    assert numbers >= set(range(produced)), sorted(set(range(produced)) - numbers)[:10]


# -- sessions and the Will --------------------------------------------------------------------
WILL_CHILD = textwrap.dedent("""
    import sys, time
    from fsm.clock import RealClock
    from agent.mqtt import MqttLink
    from agent.outbox import Outbox
    from agent.telemetry import Telemetry
    box = Outbox(sys.argv[2])
    tel = Telemetry("ATM-W", RealClock(), boot=box.next_counter("boot"))
    link = MqttLink([sys.argv[1]], "ATM-W", box, keepalive=int(sys.argv[3]), make_message=tel.message)
    tel.publishers = [link]
    link.start()
    tel.status(True, "in_service")
    assert link.flush(5)
    print("ready", link.bdseq, flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_will_marks_a_dead_atm_offline_with_its_session_counter(mosquitto, sig, tmp_path):
    """SIGKILL closes the socket: the Will at once. SIGSTOP hangs it: the Will after
    1.5 x keepalive (mosquitto checks in whole seconds; keepalive 2 s gives ~3-5 s)."""
    with Subscriber(mosquitto, "atm/v1/ATM-W/status") as sub:
        child = subprocess.Popen(
            [sys.executable, "-c", WILL_CHILD, mosquitto.url, str(tmp_path / "o.db"), "2"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            words = child.stdout.readline().split()
            assert words[0] == "ready"
            bdseq = int(words[1])
            sub.wait_for(lambda m: m.json()["state"] == "online")
            t0 = time.monotonic()
            os.kill(child.pid, sig)
            offline = sub.wait_for(lambda m: m.json()["state"] == "offline", timeout=8)
            waited = time.monotonic() - t0
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
    assert offline.json()["atm_id"] == "ATM-W" and offline.json()["bdSeq"] == bdseq
    assert waited < 1.5 if sig == signal.SIGKILL else 2.5 < waited < 8.0


def test_keepalive_default_lets_the_broker_notice_within_15_s():
    from agent.config import SECTIONS

    keepalive = SECTIONS["telemetry"]["keepalive"].default
    assert 1.5 * keepalive <= 15


def test_every_connect_has_a_new_session_counter_and_a_late_will_is_older(mosquitto, links):
    consumer = Consumer(mosquitto).start()
    link, tel = links(mosquitto.url)
    link.start()
    try:
        assert link.wait_connected(5)
        first = link.bdseq
        mosquitto.kill()
        mosquitto.start()
        wait_for(lambda: link.connected and link.bdseq > first, timeout=8)
        wait_for(lambda: consumer.of("birth") and consumer.of("birth")[-1]["bdSeq"] == link.bdseq)
        wills = [s for s in consumer.of("status") if s["state"] == "offline"]
        assert all(w["bdSeq"] < link.bdseq for w in wills)  # any Will is an older session's
    finally:
        consumer.stop()


def test_stop_publishes_the_final_status_and_no_will(mosquitto, links):
    with Subscriber(mosquitto, f"atm/v1/{ATM}/status") as sub:
        link, tel = links(mosquitto.url)
        link.start()
        tel.status(True, "in_service")
        sub.wait_for(lambda m: m.json()["state"] == "online")
        assert link.stop(final=tel.status_message(False, "in_service", reason="stopped"))
        final = sub.wait_for(lambda m: m.json()["state"] == "offline")
        time.sleep(0.3)  # a clean DISCONNECT must not also fire the Will
        offline = [m.json() for m in sub.messages if m.json()["state"] == "offline"]
    assert final.json()["reason"] == "stopped" and final.json()["service"] == "in_service"
    assert len(offline) == 1


def test_no_broker_never_raises_and_keeps_everything(links):
    link, tel = links(f"mqtt://127.0.0.1:{free_port()}")
    link.start()
    tel.fault({"code": "X"})
    time.sleep(0.5)
    assert not link.connected and link.outbox.count() == 1
    t0 = time.monotonic()
    assert link.stop(timeout=0.2) is False
    assert time.monotonic() - t0 < 3 and link.outbox.count() == 1


# -- two sites ------------------------------------------------------------------------------------
@pytest.mark.mosquitto
def test_failover_to_the_secondary_and_back_to_the_primary(links):
    tokyo, osaka = Mosquitto().start(), Mosquitto().start()
    at_tokyo, at_osaka = Consumer(tokyo).start(), Consumer(osaka).start()
    link, tel = links([tokyo.url, osaka.url], failback_after=1.0)
    link.start()
    try:
        assert link.wait_connected(5) and link.current == parse_broker_url(tokyo.url)
        stream(tel, 50)
        tokyo.kill()
        t0 = time.monotonic()
        tel.fault({"code": "after-kill"})
        wait_for(lambda: any(f.get("code") == "after-kill" for f in at_osaka.of("fault")), timeout=3)
        failover_s = time.monotonic() - t0
        assert link.current == parse_broker_url(osaka.url)
        events = at_osaka.of("event")
        assert any(e.get("event") == "broker_failover" and e["to"] == osaka.url for e in events)
        tokyo.start()
        at_tokyo.client.reconnect()
        wait_for(lambda: link.current == parse_broker_url(tokyo.url) and link.connected, timeout=8)
        tel.fault({"code": "back-home"})
        wait_for(lambda: any(f.get("code") == "back-home" for f in at_tokyo.of("fault")), timeout=5)
        assert not any(f.get("code") == "back-home" for f in at_osaka.of("fault"))
        seen = {f["n"] for f in at_tokyo.of("fault") + at_osaka.of("fault") if "n" in f}
        assert seen == set(range(50)) and failover_s < 3
    finally:
        at_tokyo.stop()
        at_osaka.stop()
        link.stop(timeout=0.5)
        tokyo.close()
        osaka.close()


# -- the outbox's bounds --------------------------------------------------------------------------
def test_a_full_outbox_coalesces_cash_and_keeps_every_fault(tmp_path):
    box = Outbox(str(tmp_path / "o.db"), max_bytes=500)  # the faults alone are over it
    for i in range(100):
        box.put("atm/v1/x/fault", json.dumps({"n": i}).encode(), 1, False, "critical")
        box.put("atm/v1/x/cash", json.dumps({"level": i}).encode(), 1, False, "coalesce")
    rows = box.pending(limit=1000)
    faults = [json.loads(r.payload)["n"] for r in rows if r.topic.endswith("fault")]
    cash = [json.loads(r.payload)["level"] for r in rows if r.topic.endswith("cash")]
    assert faults == list(range(100)) and cash == [99]
    report = box.take_report()
    assert report == {"coalesced": 99, "dropped": 0} and box.take_report() is None


def test_an_outbox_within_its_bound_keeps_everything(tmp_path):
    box = Outbox(str(tmp_path / "o.db"), max_bytes=100_000)
    for i in range(50):
        box.put("atm/v1/x/cash", json.dumps({"level": i}).encode(), 1, False, "coalesce")
    assert box.count() == 50 and box.take_report() is None


def test_old_coalescing_messages_expire_and_are_reported(tmp_path):
    now = [1000.0]
    box = Outbox(str(tmp_path / "o.db"), max_age=60, clock=lambda: now[0])
    box.put("atm/v1/x/cash", b"{}", 1, False, "coalesce")
    box.put("atm/v1/x/fault", b"{}", 1, False, "critical")
    now[0] += 120
    box.expire()
    assert [r.topic for r in box.pending()] == ["atm/v1/x/fault"] and box.take_report() == {
        "coalesced": 0,
        "dropped": 1,
    }


# -- seq: gap-free over the outbox's messages ----------------------------------------------------
@pytest.mark.mosquitto
def test_seq_has_no_gaps_across_reconnects_and_session_messages_take_none(links):
    """Every numbered message reaches the centre; a gap can only mean a lost message.
    The Will, the birth and the online status of each connection carry bdSeq, no seq."""
    broker = Mosquitto(persistence=True).start()  # the centre's session survives a stop
    consumer = Consumer(broker).start()
    link, tel = links(broker.url)
    link.start()
    try:
        assert link.wait_connected(5)
        for round_ in range(3):
            stream(tel, 10, start=10 * round_)
            assert link.flush(5)
            first = link.bdseq
            broker.stop()
            broker.start()
            wait_for(lambda: link.connected and link.bdseq > first, timeout=8)  # noqa: B023
        stream(tel, 10, start=30)
        assert link.flush(5)
        wait_for(lambda: len({f["n"] for f in consumer.of("fault")}) == 40)
        wait_for(lambda: len({b["bdSeq"] for b in consumer.of("birth")}) == 4)
        numbered = [p for _, p, _ in consumer.messages if "seq" in p]
        seqs = {p["seq"] for p in numbered}
        assert seqs == set(range(1, max(seqs) + 1)), sorted(set(range(1, max(seqs) + 1)) - seqs)
        sessions = consumer.of("birth") + [s for s in consumer.of("status") if "bdSeq" in s and "seq" not in s]
        assert len(sessions) >= 8 and all("seq" not in s and "id" not in s and s["boot"] == tel.boot for s in sessions)
        assert all(s["bdSeq"] >= 1 for s in sessions)
    finally:
        consumer.stop()
        link.stop(timeout=0.5)
        broker.close()


# -- a silent site --------------------------------------------------------------------------------
@pytest.fixture
def two_sites():
    """Two brokers (the primary, the secondary) and a centre on each; all closed after."""
    primary, secondary = Mosquitto().start(), Mosquitto().start()
    centres = Consumer(primary).start(), Consumer(secondary, client_id="centre-b").start()
    yield primary, secondary, centres[0], centres[1]
    for centre in centres:
        centre.client.loop_stop()
    primary.close()
    secondary.close()


@pytest.mark.mosquitto
def test_a_silent_primary_is_left_at_the_ack_deadline_not_the_keepalive(links, two_sites):
    """SIGSTOP keeps the TCP connection open: only an unanswered PUBLISH tells."""
    primary, secondary, _, at_secondary = two_sites
    link, tel = links([primary.url, secondary.url], keepalive=60, ack_deadline=1.0, failback_after=0)
    link.start()
    assert link.wait_connected(5) and link.current == parse_broker_url(primary.url)
    primary.pause()
    t0 = time.monotonic()
    tel.fault({"code": "X", "n": 1})
    wait_for(lambda: at_secondary.numbers() == [1], timeout=6, message="the fault on the secondary")
    assert time.monotonic() - t0 < 6 < link.keepalive and link.current == parse_broker_url(secondary.url)
    assert link.outbox.count() == 0 or link.flush(2)


@pytest.mark.mosquitto
def test_a_silent_primary_is_noticed_by_its_unanswered_pingreq_when_idle(links, two_sites):
    primary, secondary, _, at_secondary = two_sites
    link, tel = links([primary.url, secondary.url], keepalive=5, ack_deadline=1.0, failback_after=0)
    link.start()
    assert link.wait_connected(5)
    primary.pause()
    # paho pings after 5 s without traffic; without an answer within 1 s the link moves on,
    # well before paho's own time-out (another keepalive period, 10 s in all)
    wait_for(lambda: at_secondary.of("birth"), timeout=8.5, message="the birth on the secondary")
    assert link.current == parse_broker_url(secondary.url)


def test_ack_deadline_is_a_bounded_config_field():
    from agent.config import SECTIONS

    field = SECTIONS["telemetry"]["ack_deadline"]
    assert field.default == 2.0 and field.low > 0 and field.high <= 60


# -- failback only to a primary that answers MQTT -------------------------------------------------
@pytest.mark.mosquitto
def test_no_failback_to_a_hung_primary_that_still_accepts_tcp(links, two_sites):
    """A SIGSTOPped primary completes TCP handshakes but never sends a CONNACK: the link
    stays on the secondary, in one session, until the primary answers again."""
    primary, secondary, _, at_secondary = two_sites
    primary.pause()
    link, tel = links([primary.url, secondary.url], failback_after=0.5, connect_timeout=1.0)
    link.start()
    wait_for(lambda: link.connected and link.current == parse_broker_url(secondary.url), timeout=5)
    session = link.bdseq
    time.sleep(3.5)  # several probes, each well past failback_after
    left = [s for s in at_secondary.of("status") if s.get("reason") == "failback"]
    assert left == [] and link.bdseq == session and link.current == parse_broker_url(secondary.url)
    primary.resume()
    wait_for(lambda: link.connected and link.current == parse_broker_url(primary.url), timeout=8)
    wait_for(lambda: [s for s in at_secondary.of("status") if s.get("reason") == "failback"], timeout=2)


# -- a failing link is restarted, and gives up only when it keeps failing ----------------
def test_an_exception_on_the_network_thread_restarts_the_link_and_is_reported(mosquitto, links):
    with Subscriber(mosquitto, f"atm/v1/{ATM}/#") as sub:
        link, tel = links(mosquitto.url)
        fill, failures = link.drain.fill, []

        def fill_that_fails_once(*args):
            if not failures:
                failures.append(1)
                raise RuntimeError("a defect in the drain")
            return fill(*args)

        link.drain.fill = fill_that_fails_once
        link.start()
        event = sub.wait_for(lambda m: m.topic.endswith("/event") and m.json()["event"] == "link_restarted")
        tel.fault({"device": "dispenser", "code": "JAM"})
        sub.wait_for(lambda m: m.topic.endswith("/fault"))
    assert event.json()["error"] == "RuntimeError('a defect in the drain')" and event.json()["restarts"] == 1
    assert link.restarts == 1 and link.failure is None and link.connected
    assert_valid("event.schema.json", event.json(), "link_restarted")


def test_a_link_that_keeps_failing_gives_up_and_says_why(mosquitto, links, monkeypatch):
    monkeypatch.setattr("agent.mqtt.link.RESTART_LIMIT", 3)
    link, _tel = links(mosquitto.url)

    def broken(*args):
        raise RuntimeError("always")

    link.drain.fill = broken
    link.start()
    wait_for(lambda: link.failure, 10, message="the link to give up")
    assert link.restarts == 3 and "RuntimeError('always')" in link.failure
    link._thread.join(3)
    assert not link._thread.is_alive()


def test_the_agent_stops_running_when_its_link_gives_up(mosquitto, tmp_path):
    agent = live_agent({"journal": {"path": str(tmp_path / "j.db")}}, mosquitto.url)
    try:
        assert agent.running
        agent.publisher.failure = "given up (test)"
        assert not agent.running  # atm run then stops and exits 1, naming the failure
    finally:
        agent.stop()
