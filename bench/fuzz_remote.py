"""Malformed remote commands against a running agent, through a real local mosquitto.

Sends ``--count`` requests from ``bench/campaign/requests.py`` to an agent on a fully
simulated rig and reports: requests per second (sent and journalled), how many the broker
delivered, how many were refused and answered, and the unexpected exceptions on the link
(``commands.failures`` + ``restarts``), which must be 0.

    .venv/bin/python bench/fuzz_remote.py [--count 5000] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from agent import config as configmod  # noqa: E402
from agent.mqtt import MqttLink  # noqa: E402
from agent.output import Recorder  # noqa: E402
from agent.runtime import Agent  # noqa: E402
from bench.campaign.requests import RequestFuzzer  # noqa: E402
from fsm.clock import RealClock  # noqa: E402
from hw_mocks.servers.broker import HOST, Mosquitto  # noqa: E402
from hw_mocks.servers.wait import wait_for  # noqa: E402

ATM = "atm-0001"
PREFIX = f"atm/v1/{ATM}/"


def run(count: int, seed: int) -> dict:
    broker = Mosquitto().start()
    directory = tempfile.mkdtemp(prefix="fuzz-remote-")
    cfg = configmod.from_dict({"atm": {"id": ATM}, "journal": {"path": f"{directory}/j.db"}})
    clock = RealClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False), brokers=[broker.url])
    replies: list[str] = []
    lock = threading.Lock()
    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-watcher", protocol=paho.MQTTv5)
    sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-fuzzer", protocol=paho.MQTTv5)
    try:
        agent.warm_prompts()
        agent.start()
        agent.start_thread()
        link = agent.publisher
        assert isinstance(link, MqttLink) and link.wait_connected(5), "the agent did not connect"

        def on_reply(client, userdata, message) -> None:
            with lock:
                replies.append(message.topic)

        watcher.on_message = on_reply
        watcher.connect(HOST, broker.port)
        watcher.subscribe(PREFIX + "reply/#", qos=1)
        watcher.loop_start()
        sender.connect(HOST, broker.port)
        sender.loop_start()
        wait_for(lambda: sender.is_connected() and watcher.is_connected(), 5, message="the bench clients")
        fuzzer = RequestFuzzer(ATM, seed)
        single_level = 0
        start = time.perf_counter()
        for request in fuzzer.many(count):
            props = Properties(PacketTypes.PUBLISH)
            if request.response_topic is not None:
                props.ResponseTopic = request.response_topic
            if request.correlation is not None:
                props.CorrelationData = request.correlation
            info = sender.publish(fuzzer.topic(request), request.payload, request.qos, request.retain, props)
            if request.qos:
                info.wait_for_publish(5)
            single_level += "/" not in request.name
        sent_s = time.perf_counter() - start
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = PREFIX + "reply/end", b"end"
        sender.publish(PREFIX + "cmd/status", b"{}", 1, False, props).wait_for_publish(5)
        wait_for(lambda: PREFIX + "reply/end" in replies, 60, message="the answer after the flood")

        def journalled() -> int:
            return sum(1 for e in agent.journal.entries() if e.name == "remote_command")

        wait_for(lambda: journalled() >= single_level + 1, 60, message="every request journalled")
        total_s = time.perf_counter() - start
        return {
            "sent": count,
            "sent_per_s": round(count / sent_s),
            "journalled": journalled() - 1,
            "journalled_per_s": round((journalled() - 1) / total_s),
            "routable": single_level,
            "answered": len(replies) - 1,
            "ran": sum(1 for e in agent.journal.entries() if e.name == "remote_command" and e.data["ok"]) - 1,
            "unexpected_exceptions": link.commands.failures + link.restarts,
            "service": agent.atm.service.service,
        }
    finally:
        for client in (sender, watcher):
            client.disconnect()
            client.loop_stop()
        try:
            agent.stop()
        finally:
            broker.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.count, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0 if result["unexpected_exceptions"] == 0 and result["ran"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
