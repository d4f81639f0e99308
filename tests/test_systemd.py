"""systemd's notify protocol as `atm run` speaks it: READY=1, STATUS=, WATCHDOG=1 from the loop."""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from agent.systemd import Notifier, status_text
from fsm.clock import RealClock
from fsm.events import RemoteRequest
from hw_mocks.servers.wait import wait_for
from tests.running import ATM, atm

pytestmark = pytest.mark.timeout(120)


class NotifySocket:
    """The datagram socket systemd would hold: every message, with the time it came."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def times(self, key: str) -> list[float]:
        return [t for t, fields in self.messages if key in fields]

    def values(self, key: str) -> list[str]:
        return [fields[key] for _, fields in self.messages if key in fields]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_atm_run_is_ready_then_pings_the_watchdog_and_its_status_follows_the_service(tmp_path):
    notify = NotifySocket(str(tmp_path / "notify"))
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n[control]\nsocket = "{tmp_path / "c.sock"}"\n')
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [ATM, "run", "--config", str(config), "--no-customers", "--local-broker"],  # a child that could notify
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        printed_control = None
        for line in proc.stdout:
            if line.startswith("control:"):
                printed_control = time.monotonic()
            if line.startswith("ready:"):
                printed_ready = time.monotonic()
                break
        wait_for(lambda: notify.values("READY"), message="READY=1")
        (ready_at,) = notify.times("READY")
        assert printed_control is not None and printed_control <= ready_at <= printed_ready + 0.5
        time.sleep(0.5)
        assert notify.values("READY") == ["1"]  # the agent's own, once (mosquitto was told nothing)
        wait_for(lambda: "in service: withdrawal, deposit, balance, transfer" in notify.values("STATUS"))
        time.sleep(2.0)
        pings = [t for t in notify.times("WATCHDOG") if t > ready_at]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert len(pings) >= 7 and max(gaps) < 0.4, gaps  # every half period (0.2 s), from the loop
        assert atm("service", "out", "--reason", "cash van", "--config", str(config)).returncode == 0
        wait_for(lambda: "out of service: cash van" in notify.values("STATUS"), message="STATUS=out of service")
        assert atm("service", "in", "--config", str(config)).returncode == 0
        wait_for(lambda: notify.values("STATUS")[-1] == "in service: withdrawal, deposit, balance, transfer")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        notify.close()
    assert proc.returncode == 0
    assert notify.values("STOPPING") == ["1"]


def test_a_stalled_loop_stops_the_watchdog_pings_though_the_process_lives(tmp_path, monkeypatch):
    notify = NotifySocket(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    cfg = configmod.from_dict({})
    clock = RealClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False))
    try:
        agent.start()
        agent.scheduler.call_later(1.0, time.sleep, 1.5)  # the loop hangs (a driver that blocks it, say)
        stalled_from = time.monotonic() + 1.0
        agent.start_thread()
        time.sleep(3.5)
        assert agent.running  # the thread is alive all along: only the pings say it hung
    finally:
        agent.stop()
        notify.close()
    pings = notify.times("WATCHDOG")
    gaps = [(a, b - a) for a, b in zip(pings, pings[1:])]
    long = [(a, gap) for a, gap in gaps if gap > 0.5]
    assert len(long) == 1 and long[0][1] >= 1.4 and stalled_from - 0.3 <= long[0][0] <= stalled_from + 0.5, gaps
    assert sum(1 for a, gap in gaps if a > stalled_from + 1.6) >= 5  # and they come back after it


def test_outside_systemd_nothing_is_sent_and_a_bad_socket_is_not_an_error(tmp_path):
    assert not Notifier({}).enabled and Notifier({}).send(READY="1") is False
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled and gone.send(READY="1") is False  # systemd gone: logged, never raised
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5000000"}).watchdog_s == 5.0
    assert status_text("out_of_service", [], "jam") == "out of service: jam"
    assert status_text("degraded", ["deposit"]) == "degraded: deposit"


def test_an_abstract_notify_socket_is_reached():
    name = f"atm-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send(STATUS="in service: a\nb") is True
        assert sock.recv(100) == b"STATUS=in service: a b"
    finally:
        sock.close()


UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "atm-agent.service")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path):
    text = open(UNIT).read()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/atm",
        "RuntimeDirectory=atm",
        "Environment=PYTHONUNBUFFERED=1",
    ):
        assert line in text, line
    here = tmp_path / "atm-agent.service"  # the installed program's path, as this checkout's
    here.write_text(text.replace("/opt/atm/venv/bin/atm", ATM))
    proc = subprocess.run(["systemd-analyze", "verify", str(here)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    broken = tmp_path / "broken.service"  # and the check can fail: a key systemd does not know
    broken.write_text(here.read_text().replace("Type=notify", "Type=notifyy"))
    proc = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Failed to parse service type" in proc.stderr


def test_a_notify_socket_nobody_reads_never_holds_the_loop(tmp_path, monkeypatch):
    """A receiver that stopped reading fills its queue: the pings are dropped, the agent goes on."""
    path = str(tmp_path / "notify")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(path)  # never read
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000")  # a ping every millisecond: the queue is full at once
    cfg = configmod.from_dict({})
    clock = RealClock()
    agent = Agent(cfg, clock, Recorder(clock, keep=False))
    try:
        agent.start()
        agent.start_thread()
        time.sleep(1.0)
        answers = []  # the loop still turns: it answers a status request
        agent.loop.post(RemoteRequest("status", {}, answers.append, transport="control", engineer="test"))
        wait_for(lambda: answers, timeout=3, message="the loop to answer")
    finally:
        began = time.monotonic()
        agent.stop()
        deaf.close()
    assert time.monotonic() - began < 10
