"""Durable telemetry against real local mosquitto brokers, side by side in one run.

1. Throughput at QoS 1: MqttLink (outbox first) against raw paho QoS 1 without
   persistence (targets: >= 5,000 msg/s, ratio >= 0.5), for coalescing messages
   (synchronous=NORMAL) and critical ones (fsync each).
2. Latency from a fault raised to a subscriber receiving it, p50 and p99, with
   100 msg/s of background load (target: p99 <= 20 ms).
3. Drain rate of a 100,000-message backlog after an outage (target: >= 5,000
   msg/s, none lost).
4. Failover time, primary killed to the first message acknowledged by the
   secondary (target: <= 3 s).

    .venv/bin/python bench/telemetry.py
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.mqtt import MqttLink  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from agent.telemetry import Telemetry  # noqa: E402
from fsm.clock import RealClock  # noqa: E402
from hw_mocks.servers.broker import HOST  # noqa: E402
from hw_mocks.servers.broker import Mosquitto as _Mosquitto  # noqa: E402
from hw_mocks.servers.wait import wait_for  # noqa: E402


def Mosquitto() -> _Mosquitto:
    """A broker that queues without limit for a slow subscriber (mosquitto drops
    QoS 1 messages beyond max_queued_messages, 1000 by default)."""
    return _Mosquitto(extra="max_queued_messages 0")


class Counter:
    """A subscriber that counts messages and notes when each fault id arrived."""

    def __init__(self, broker, topic: str = "atm/v1/#") -> None:
        self.count = 0
        self.ids: set[str] = set()
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{id(self)}", protocol=paho.MQTTv5)
        subscribed = threading.Event()
        c.on_message = self._on_message
        c.on_subscribe = lambda cl, ud, mid, rc, pr: subscribed.set()
        c.connect(HOST, broker.port)
        c.subscribe(topic, qos=1)
        c.loop_start()
        wait_for(subscribed.is_set, message=f"the SUBACK for {topic}")
        self.client = c

    def _on_message(self, client, userdata, msg):
        now = time.perf_counter()
        with self.lock:
            self.count += 1
            if b'"id"' in msg.payload and msg.topic.endswith(("/fault", "/cash")):
                body = json.loads(msg.payload)
                self.ids.add(body["id"])
                self.arrived.setdefault(body["id"], now)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def make_link(urls, directory, **kw):
    box = Outbox(str(Path(directory) / f"outbox-{time.monotonic_ns()}.db"), max_bytes=512 * 1024 * 1024)
    tel = Telemetry("atm-bench", RealClock(), boot=box.next_counter("boot"))
    link = MqttLink(urls, "atm-bench", box, make_message=tel.message, **kw)
    tel.publishers = [link]
    return link, tel


def raw_paho_rate(broker, n: int) -> float:
    acked = threading.Semaphore(0)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(200)
    c.on_publish = lambda *a: acked.release()
    c.connect(HOST, broker.port)
    c.loop_start()
    payload = json.dumps({"atm_id": "atm-bench", "cassettes": [{"id": "A", "count": 1}]}).encode()
    start = time.perf_counter()
    for _ in range(n):
        c.publish("atm/v1/atm-bench/cash", payload, qos=1)
    for _ in range(n):
        acked.acquire()
    rate = n / (time.perf_counter() - start)
    c.disconnect()
    c.loop_stop()
    return rate


def link_rate(broker, directory, n: int, kind: str) -> float:
    link, tel = make_link([broker.url], directory)
    link.start()
    link.wait_connected(5)
    send = (
        (lambda i: tel.cash([{"id": "A", "count": i}]))
        if kind == "coalesce"
        else (lambda i: tel.fault({"device": "dispenser", "code": "bench", "n": i}))
    )
    start = time.perf_counter()
    for i in range(n):
        send(i)
    assert link.flush(120), "not everything was acknowledged"
    rate = n / (time.perf_counter() - start)
    link.stop(timeout=1)
    return rate


def fault_latency(broker, directory, faults: int = 300) -> dict:
    counter = Counter(broker)
    link, tel = make_link([broker.url], directory)
    link.start()
    link.wait_connected(5)
    stop = threading.Event()

    def background():
        i = 0
        while not stop.is_set():
            tel.cash([{"id": "A", "count": i}])
            i += 1
            time.sleep(0.01)  # 100 msg/s

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    sent: dict[str, float] = {}
    for i in range(faults):
        t0 = time.perf_counter()
        message = tel.message("fault", {"device": "dispenser", "code": "bench", "n": i})
        link.publish(message)
        sent[message.payload["id"]] = t0
        time.sleep(0.02)
    link.flush(10)
    with contextlib.suppress(AssertionError):  # a lost fault shows as received < sent
        wait_for(lambda: sent.keys() <= counter.arrived.keys(), 2, message="every fault at the subscriber")
    stop.set()
    thread.join()
    lat = sorted((counter.arrived[i] - t) * 1000 for i, t in sent.items() if i in counter.arrived)
    link.stop(timeout=1)
    counter.stop()
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[int(0.99 * (len(lat) - 1))],
        "received": len(lat),
        "sent": len(sent),
    }


def drain(directory, n: int) -> dict:
    """Store ``n`` messages while no broker runs, then let the link drain them."""
    broker = Mosquitto()
    link, tel = make_link([broker.url], directory)
    ids = set()
    for i in range(n):
        message = (
            tel.message("cash", {"cassettes": [{"id": "A", "count": i}]}, durability="coalesce")
            if i % 2
            else tel.message("fault", {"code": "x", "n": i})
        )
        link.publish(message)
        ids.add(message.payload["id"])
    broker.start()
    counter = Counter(broker)
    start = time.perf_counter()
    link.start()
    assert link.flush(600), "the backlog did not drain"
    seconds = time.perf_counter() - start
    # the subscriber (Python) is slower than the broker: let it catch up; a loss shows as missing
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not ids - counter.ids, 120, 0.2, "the subscriber to catch up")
    missing = len(ids - counter.ids)
    counter.stop()
    link.stop(timeout=1)
    broker.close()
    return {"messages": n, "seconds": seconds, "rate": n / seconds, "missing": missing}


def failover(directory, rounds: int = 3) -> list[float]:
    times = []
    for _ in range(rounds):
        tokyo, osaka = Mosquitto().start(), Mosquitto().start()
        link, tel = make_link([tokyo.url, osaka.url], directory, failback_after=0)
        link.start()
        link.wait_connected(5)
        tokyo.kill()
        start = time.perf_counter()
        tel.fault({"code": "after-kill"})

        def at_osaka(link=link, port=osaka.port) -> bool:
            return link.outbox.count() == 0 and link.current is not None and link.current.port == port

        wait_for(at_osaka, 30, 0.005, "the fault acknowledged by the secondary")
        times.append(time.perf_counter() - start)
        link.stop(timeout=1)
        tokyo.close()
        osaka.close()
    return times


def run(n: int = 20_000, backlog: int = 100_000) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        broker = Mosquitto().start()
        try:
            raw = raw_paho_rate(broker, n)
            coalesce = link_rate(broker, directory, n, "coalesce")
            critical = link_rate(broker, directory, max(2000, n // 4), "critical")
            latency = fault_latency(broker, directory)
        finally:
            broker.close()
        drained = drain(directory, backlog)
        failovers = failover(directory)
    return {
        "raw": raw,
        "coalesce": coalesce,
        "critical": critical,
        "latency": latency,
        "drain": drained,
        "failover": failovers,
    }


def report(r: dict) -> None:
    print(f"raw paho QoS 1, no persistence                 : {r['raw']:8.0f} msg/s")
    print(
        f"MqttLink, coalescing messages (sync NORMAL)    : {r['coalesce']:8.0f} msg/s  "
        f"(ratio {r['coalesce'] / r['raw']:.2f}; targets >= 5000 msg/s, >= 0.5)"
    )
    print(
        f"MqttLink, critical messages (fsync each)       : {r['critical']:8.0f} msg/s  "
        f"(ratio {r['critical'] / r['raw']:.2f})"
    )
    lat = r["latency"]
    print(
        f"fault raised -> subscriber, 100 msg/s load     : p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms"
        f"  ({lat['received']}/{lat['sent']} received; target p99 <= 20 ms)"
    )
    d = r["drain"]
    print(
        f"backlog drain after an outage                  : {d['rate']:8.0f} msg/s  ({d['messages']} in"
        f" {d['seconds']:.1f} s, {d['missing']} missing; target >= 5000 msg/s, none lost)"
    )
    f = r["failover"]
    print(
        f"failover, primary killed -> secondary PUBACK   : {statistics.median(f):.3f} s median"
        f" (max {max(f):.3f}; target <= 3 s)"
    )


if __name__ == "__main__":
    report(run())
