"""The two-broker campaign, run as an outside tester would.

Two real mosquitto brokers on free 127.0.0.1 ports (the primary and the secondary), a
monitoring centre on each (a paho subscriber with a persistent session), and the real
``atm run`` child process with simulated customers and a cash report every 0.1 s. The
phases, one after the other:

1. the primary killed with -9 (the agent fails over, then back once it returns);
2. the primary SIGSTOPped (a silent site: the agent leaves it at ``ack_deadline``);
3. the agent killed with -9 and started again (a new boot);
4. both brokers down for ``outage`` seconds, then the drain.

Then the agent is stopped (SIGTERM) and every numbered message either centre received is
counted per boot: unique ids, duplicates, and the ``seq`` numbers missing below the
highest one seen (lost messages).

    report = Campaign(workdir, outage=60).run()
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hw_mocks.servers.broker import HOST, Mosquitto
from hw_mocks.servers.wait import wait_for

ATM_ID = "atm-camp"
ATM = os.path.join(os.path.dirname(sys.executable), "atm")


class Centre:
    """A monitoring centre on one broker: a persistent MQTT session (the broker queues for
    it while it reconnects) that keeps every message of the ATM."""

    def __init__(self, broker: Mosquitto, name: str):
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"centre-{name}", protocol=paho.MQTTv5)
        client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]  # paho takes seconds as floats too
        client.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(f"atm/v1/{ATM_ID}/#", qos=1)
        client.on_subscribe = lambda cl, ud, mid, rc, pr: self.subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect(HOST, broker.port, keepalive=5, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        wait_for(self.subscribed.is_set, message=f"the SUBACK of centre {name}")

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append({"topic": msg.topic.rsplit("/", 1)[1], **json.loads(msg.payload)})

    def all(self) -> list[dict]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class BootCount:
    """What the centres received of one boot's numbered messages."""

    boot: int
    received: int = 0
    unique: int = 0
    highest: int = 0
    missing: list[int] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.received - self.unique


@dataclass
class Report:
    boots: list[BootCount]
    timings: dict[str, float]

    @property
    def lost(self) -> int:
        return sum(len(b.missing) for b in self.boots)

    def lines(self) -> list[str]:
        out = [
            f"boot {b.boot}: {b.unique} ids ({b.received} received, {b.duplicates} duplicates),"
            f" seq 1..{b.highest}, {len(b.missing)} missing {b.missing[:10]}"
            for b in self.boots
        ]
        out += [f"{name}: {seconds:.2f} s" for name, seconds in self.timings.items()]
        return out


def count(messages: list[dict]) -> list[BootCount]:
    """Per boot: received, unique ids, the highest seq and the seq numbers missing below it."""
    seqs: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for m in messages:
        if "seq" in m:
            seqs[m["boot"]][m["seq"]] += 1
    boots = []
    for boot, seen in sorted(seqs.items()):
        highest = max(seen)
        missing = sorted(set(range(1, highest + 1)) - set(seen))
        boots.append(BootCount(boot, sum(seen.values()), len(seen), highest, missing))
    return boots


class Campaign:
    """Runs the phases in ``workdir``; ``outage``: seconds both brokers stay down."""

    def __init__(self, workdir: Path, outage: float = 60.0, ack_deadline: float = 1.0, failback_after: float = 2.0):
        self.workdir = Path(workdir)
        self.outage = outage
        self.primary = Mosquitto(persistence=True)
        self.secondary = Mosquitto(persistence=True)
        self.config = self.workdir / "atm.toml"
        self.config.write_text(
            f'[atm]\nid = "{ATM_ID}"\n'
            f"[journal]\npath = '{self.workdir / 'journal.db'}'\n"
            "[telemetry]\n"
            f'brokers = ["{self.primary.url}", "{self.secondary.url}"]\n'
            f"cash_interval = 0.1\nkeepalive = 5\nfailback_after = {failback_after}\nack_deadline = {ack_deadline}\n"
        )
        self.agent: subprocess.Popen | None = None
        self.centres: list[Centre] = []
        self.timings: dict[str, float] = {}

    # -- the parts ------------------------------------------------------------------------
    def start_agent(self) -> None:
        log = self.workdir / f"atm-{time.monotonic_ns()}.log"
        with open(log, "w") as out:
            self.agent = subprocess.Popen(
                [ATM, "run", "--config", str(self.config), "--seed", "7"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(lambda: "ready:" in log.read_text(), 30, message=f"the agent's ready line in {log}")

    def messages(self) -> list[dict]:
        return [m for centre in self.centres for m in centre.all()]

    def on(self, broker: Mosquitto) -> bool:
        """Whether the agent's newest session (highest bdSeq) is on ``broker``."""
        births = [m for m in self.messages() if m["topic"] == "birth"]
        return bool(births) and max(births, key=lambda b: b["bdSeq"])["broker"] == broker.url

    def newest(self) -> tuple[int, int]:
        """(boot, seq) of the newest numbered message received."""
        return max(((m["boot"], m["seq"]) for m in self.messages() if "seq" in m), default=(0, 0))

    def flowing(self, timeout: float = 10.0) -> None:
        """Wait until new numbered messages arrive (the agent is sending)."""
        before = self.newest()
        wait_for(lambda: self.newest() > before, timeout, message="new telemetry")

    def timed(self, name: str, condition, timeout: float) -> None:
        t0 = time.monotonic()
        wait_for(condition, timeout, 0.02, message=name)
        self.timings[name] = time.monotonic() - t0

    # -- the campaign -------------------------------------------------------------------
    def run(self) -> Report:
        try:
            self.primary.start()
            self.secondary.start()
            self.centres = [Centre(self.primary, "primary"), Centre(self.secondary, "secondary")]
            self.start_agent()
            wait_for(lambda: self.on(self.primary), 10, message="the agent on the primary")
            self.flowing()
            # 1. the primary killed with -9
            self.primary.kill()
            self.timed("primary kill -9: on the secondary", lambda: self.on(self.secondary), 10)
            self.flowing()
            self.primary.start()
            self.timed("primary back: failback", lambda: self.on(self.primary), 20)
            self.flowing()
            # 2. the primary SIGSTOPped
            self.primary.pause()
            self.timed("primary SIGSTOP: on the secondary", lambda: self.on(self.secondary), 10)
            self.flowing()
            self.primary.resume()
            self.timed("primary SIGCONT: failback", lambda: self.on(self.primary), 20)
            self.flowing()
            # 3. the agent killed with -9, then started again
            assert self.agent is not None
            self.agent.kill()
            self.agent.wait()
            self.start_agent()
            self.flowing()
            # 4. both sites down, then the drain
            self.primary.stop()
            self.secondary.stop()
            time.sleep(self.outage)
            before = self.newest()
            self.primary.start()
            self.secondary.start()
            self.timed("outage over: drained", lambda: self.drained(before), 30 + self.outage)
            self.stop_agent()
            return Report(count(self.messages()), self.timings)
        finally:
            self.close()

    def drained(self, before: tuple[int, int]) -> bool:
        """Past the outage and nothing missing in the newest boot."""
        boots = count(self.messages())
        return self.newest() > before and not boots[-1].missing

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            self.agent.wait(30)
            stopped = [m for m in self.messages() if m["topic"] == "status" and m.get("reason") == "stopped"]
            wait_for(lambda: stopped or any(m.get("reason") == "stopped" for m in self.messages()), 5)

    def close(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        for centre in self.centres:
            centre.close()
        self.primary.close()
        self.secondary.close()
