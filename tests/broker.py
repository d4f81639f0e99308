"""Test helpers: a real ``mosquitto`` child process and a collecting subscriber.

Everything listens on 127.0.0.1 only, on a free port.
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def find_mosquitto() -> str:
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if path is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto); "
                           "the MQTT tests need a real broker")
    return path


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:<free port>, with its own config file."""

    def __init__(self, port: int | None = None):
        self.exe = find_mosquitto()
        self.port = port or free_port()
        self.host = HOST
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self.conf = Path(self._dir.name) / "mosquitto.conf"
        self.logfile = Path(self._dir.name) / "mosquitto.log"
        self.conf.write_text(f"listener {self.port} {HOST}\nallow_anonymous true\n"
                             "persistence false\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 5.0) -> "Mosquitto":
        if self.running:
            return self
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf), "-v"],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.port} "
                                       f"within {timeout}s:\n{self.log()}")
                time.sleep(0.05)

    def stop(self, timeout: float = 3.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self):
        return json.loads(self.payload)


class Subscriber:
    """A paho client that collects messages matching ``topic`` into ``messages``."""

    def __init__(self, broker: Mosquitto | int, topic: str = "#", client_id: str = ""):
        port = broker.port if isinstance(broker, Mosquitto) else broker
        self.topic = topic
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=paho.MQTTv5)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c
        self.port = port

    def start(self, timeout: float = 5.0) -> "Subscriber":
        self.client.connect(HOST, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"subscriber: no SUBACK for {self.topic!r} within {timeout}s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Received], bool],
                 timeout: float = 5.0) -> Received:
        """Return the first message matching ``predicate``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m.topic, m.payload[:80]) for m in self.messages]
                    raise AssertionError(f"no matching message on {self.topic!r} "
                                         f"within {timeout}s; got {got}")
                self._cond.wait(left)

    def __enter__(self) -> "Subscriber":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
