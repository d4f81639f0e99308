"""`atm trace` and `atm logs` against a running `atm run --no-customers` on the sim rig, as an
engineer types them: the serial frames of the live drivers, decoded, and the agent's lines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.control import protocol
from agent.control.client import call
from agent.control.streams import Follower
from agent.mqtt.commands import Request
from agent.remote import CommandHandler
from devices import ict3q8_codec
from devices.ict3q8 import FRAMING
from devices.ring import Ring
from devices.serial_trace import FrameTrace
from hw_mocks.cards import CARDS
from hw_mocks.servers.wait import wait_for as shared_wait_for

ATM = os.path.join(os.path.dirname(sys.executable), "atm")
STATUS_COMMAND = "04 50 02 46 03 13"  # LCDM-2000 status (EOT ID STX 'F' ETX BCC)
SENSORS = "sensors lower_present,reject_tray_present,upper_present"


def atm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ATM, *args], capture_output=True, text=True, timeout=30)


class Agent:
    """``atm run`` on the sim rig with a config of its own; ``atm(...)`` talks to it."""

    def __init__(self, folder: Path, extra: str = "", *run_args: str):
        self.socket_dir = tempfile.mkdtemp(prefix="atm-trc-")  # a short path: a socket's is at most 107 bytes
        self.config = folder / "atm.toml"
        self.config.write_text(
            f'[rig]\nfile = "sim"\n[journal]\npath = "{folder / "j.db"}"\n'
            f'[control]\nsocket = "{self.socket_dir}/control.sock"\n{extra}'
        )
        self.path = f"{self.socket_dir}/control.sock"
        self.proc = subprocess.Popen(
            [ATM, "run", "--config", str(self.config), *(run_args or ("--no-customers",))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ready:"):
                break
        else:
            raise AssertionError(f"atm run did not get ready: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def atm(self, *args: str) -> subprocess.CompletedProcess:
        return atm(*args, "--config", str(self.config))

    def follow(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [ATM, *args, "--follow", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str:
        """Stop it; what it printed (checked for card numbers by the tests)."""
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=20)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        assert self.proc.returncode == 0, err
        return out + err


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """One agent for the tests that change nothing; its dispenser polled twice a second."""
    running = Agent(tmp_path_factory.mktemp("trace"), "[timeouts]\nstatus_poll = 0.5\n")
    yield running
    running.stop()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def wait_for(test, seconds: float = 10.0):
    return shared_wait_for(test, timeout=seconds, interval=0.1, message="the entry")


def test_trace_shows_the_dispensers_status_polls_decoded(agent):
    wait_for(lambda: agent.atm("trace", "dispenser", "--lines", "8").stdout.count("status reply") >= 2)
    human = agent.atm("trace", "dispenser", "--lines", "8")
    assert human.returncode == 0 and not human.stderr
    lines = human.stdout.splitlines()
    assert len(lines) == 8
    commands = [line for line in lines if "host->device" in line and STATUS_COMMAND in line]
    replies = [line for line in lines if "device->host" in line and "01 50 02 46 30 30" in line]
    assert commands and all(line.endswith("status command") for line in commands)
    assert replies and all(line.endswith(f"status reply, error 0x30 (good), {SENSORS}") for line in replies)
    assert any(line.split()[1:] == ["device->host", "06", "ACK"] for line in lines)

    frames = json_lines(agent.atm("trace", "dispenser", "--lines", "8", "--json").stdout)
    assert len(frames) == 8 and all(f["device"] == "dispenser" for f in frames)
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + 8))
    assert all(f["direction"] in ("host->device", "device->host") and f["bytes"] >= 1 for f in frames)
    reply = next(f for f in frames if f["frame"]["kind"] == "reply")
    assert reply["frame"] == {
        "kind": "reply",
        "command": "status",
        "error": "0x30",
        "meaning": "good",
        "sensors": ["lower_present", "reject_tray_present", "upper_present"],
    }
    assert reply["bytes"] == 10 and len(reply["hex"].split()) == 10  # one frame, not the chunks it was read in


def test_follow_receives_new_frames_as_they_happen_and_ctrl_c_ends_it(agent):
    follower = agent.follow("trace", "card_reader", "--lines", "1", "--json")
    assert follower.stdout is not None
    first = json.loads(follower.stdout.readline())
    try:  # out of service, the reader's entry is closed (ENTRY 31); back in, opened (ENTRY 30)
        assert agent.atm("service", "out").returncode == 0
        seen = []
        while not any(f["frame"] == {"kind": "command", "command": "entry", "pm": "31"} for f in seen):
            seen.append(json.loads(follower.stdout.readline()))
    finally:
        assert agent.atm("service", "in").returncode == 0
    assert all(f["device"] == "card_reader" for f in seen)
    assert [f["seq"] for f in seen] == list(range(first["seq"] + 1, first["seq"] + 1 + len(seen)))  # none lost
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=10)
    assert follower.returncode in (0, 130) and err == ""


def test_a_follower_that_never_reads_does_not_stall_the_agent_and_is_told_what_it_lost(agent):
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(agent.path)
    stuck.sendall(protocol.request_line(1, "trace", {"device": "card_reader", "lines": 1, "follow": True}))
    try:
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:  # thousands of frames, none read
            call(agent.path, "selftest", {"device": "card_reader"})
        started = time.monotonic()
        status = agent.atm("status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["agent"] == "running"
        assert time.monotonic() - started < 3
        stuck.settimeout(1.0)
        data = b""
        while b'"dropped"' not in data or not data.endswith(b"\n"):
            data += stuck.recv(1 << 20)
    finally:
        stuck.close()
    lines = json_lines(data.decode())
    assert lines[0]["id"] == 1 and lines[0]["result"]["follow"] is True
    last = lines[0]["result"]["entries"][-1]["seq"]
    dropped = 0
    for line in lines[1:]:
        assert "id" not in line  # notifications
        if line["method"] == "dropped":
            dropped += line["params"]["count"]
            continue
        assert line["method"] == "trace"
        seq = line["params"]["entry"]["seq"]
        assert seq == last + 1 + dropped, "a gap is what a dropped line said, no more, no less"
        last, dropped = seq, 0
    assert any(line["method"] == "dropped" for line in lines[1:])


def test_a_followers_queue_is_bounded_and_says_where_it_lost_entries():
    ring, woken = Ring(10), []
    follower = Follower("trace", lambda: woken.append(1), limit=3)
    backlog, follower.unfollow = ring.follow(5, follower)
    for n in range(6):  # 3 fit, 3 are lost
        ring.add({"n": n})
    assert backlog == [] and len(woken) == 3
    assert follower.take(1) == [{"n": 0, "seq": 1}]
    ring.add({"n": 6})  # room again: the count goes first, where the gap is
    ring.add({"n": 7})  # full again: lost, and told at the end
    assert follower.take(10) == [{"n": 1, "seq": 2}, {"n": 2, "seq": 3}, 3, {"n": 6, "seq": 7}, 1]
    follower.close()
    ring.add({"n": 8})
    assert follower.take(10) == [] and ring.followers == 0


def test_the_card_readers_bytes_show_only_as_whole_valid_frames_and_never_its_track():
    pan = CARDS["domestic"].pan
    reply = ict3q8_codec.encode_reply(
        ict3q8_codec.Reply(ict3q8_codec.READ_TRACK, 0x32, True, "inside", data=CARDS["domestic"].track2.encode())
    )
    trace = FrameTrace(FRAMING)
    trace.sent(ict3q8_codec.encode_command(ict3q8_codec.READ_TRACK, 0x32))
    trace.received(b"\x06" + reply[:1])
    trace.received(reply[1:])  # whole: one entry, its track hidden
    trace.received(reply[:20])  # cut short (the host NAKs next)
    trace.sent(b"\x15")
    trace.received(reply[:-1] + bytes([reply[-1] ^ 1]))  # a damaged CRC
    trace.received(pan.encode())  # line noise that happens to be digits
    trace.sent(b"\x15")
    kinds = [(e["direction"][:4], e["frame"]["kind"], e["bytes"]) for e in trace.ring.recent(10)]
    assert kinds == [
        ("host", "command", 8),
        ("devi", "ack", 1),
        ("devi", "reply", len(reply)),
        ("devi", "incomplete", 20),
        ("host", "nak", 1),
        ("devi", "bad", len(reply)),
        ("devi", "noise", len(pan)),
        ("host", "nak", 1),
    ]
    text = json.dumps(trace.ring.recent(10))
    for form in card_number_forms():
        assert form not in text


def test_a_chips_data_through_the_reader_shows_only_its_atr():
    """Only the activation's reply (pm 30) is an ATR; any other IC reply may hold the chip's
    records, the card number among them: its length only."""
    pan = CARDS["domestic"].pan
    trace = FrameTrace(FRAMING)
    atr = bytes.fromhex("3b 02 14 50")
    trace.received(ict3q8_codec.encode_reply(ict3q8_codec.Reply(ict3q8_codec.IC, 0x30, True, "inside", data=atr)))
    record = b"\x70\x13\x5a\x08" + bytes.fromhex(pan[:16])  # a READ RECORD answer with its PAN (tag 5A)
    trace.received(ict3q8_codec.encode_reply(ict3q8_codec.Reply(ict3q8_codec.IC, 0x39, True, "inside", data=record)))
    activated, exchanged = trace.ring.recent(2)
    assert activated["frame"]["atr"] == atr.hex(" ")
    assert exchanged["frame"]["data"] == f"<{len(record)} bytes of data>"
    text = json.dumps([activated, exchanged])
    for form in card_number_forms():
        assert form not in text


def test_the_monitoring_centre_may_not_stream_and_is_journalled():
    posted, answers, opened = [], [], []
    handler = CommandHandler(posted.append, rebirth=lambda: None)
    for name, body in (("trace", b'{"device": "dispenser", "follow": true}'), ("logs", b"{}")):
        handler(Request(name, body, answers.append, stream=lambda *a: opened.append(a)))  # MQTT's
    assert [a["error"] for a in answers] == ["not_permitted", "not_permitted"] and not opened
    assert [(p.command, p.ok, p.error, p.transport) for p in posted] == [
        ("trace", False, "not_permitted", "mqtt"),
        ("logs", False, "not_permitted", "mqtt"),
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("trace", "toaster"), "unknown device 'toaster' (devices: card_reader, chip, dispenser"),
        (("trace", "speaker"), "speaker (sim://) is not a serial device; the serial devices are: card_reader, "),
        (("trace", "chip"), "chip (sim://) is not a serial device"),
        (("trace", "dispenser", "--lines", "0"), "--lines: '0' is not a number of lines from 1 to 1000"),
        (("trace", "dispenser", "--lines", "1000000"), "--lines: '1000000' is not a number of lines"),
        (("logs", "--lines", "many"), "--lines: 'many' is not a number of lines"),
        (("logs", "--lines", "-3", "--follow"), "--lines: '-3' is not a number of lines"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(agent, args, words):
    proc = agent.atm(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("atm: error: ")
    assert words in proc.stderr, proc.stderr


def test_without_a_running_agent_both_refuse_in_one_line(tmp_path):
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n')
    trace = atm("trace", "dispenser", "--config", str(config))
    logs = atm("logs", "--follow", "--config", str(config))
    for proc in (trace, logs):
        assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1
        assert proc.stderr.startswith("atm: error: no agent is running for ATM atm-0001 (control socket ")
    assert "a trace is of a live driver" in trace.stderr
    assert "journalctl -u atm-agent" in logs.stderr


def test_logs_show_the_lines_the_agent_wrote_and_follow_new_ones(tmp_path):
    agent = Agent(tmp_path)
    try:
        follower = agent.follow("logs", "--lines", "1", "--json")
        assert follower.stdout is not None
        follower.stdout.readline()  # following from here on
        assert agent.atm("service", "out", "--reason", "cash van due").returncode == 0
        crowd = []
        try:  # with the follower's, one connection more than the socket takes: the agent logs a warning
            for _ in range(16):
                line = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                line.settimeout(5)
                line.connect(agent.path)
                crowd.append(line)
            assert b"too many connections" in crowd[-1].recv(4096)
        finally:
            for line in crowd:
                line.close()
        followed = []
        while not any(e["source"] == "log" for e in followed):
            followed.append(json.loads(follower.stdout.readline()))
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) in (0, 130)
        human = agent.atm("logs").stdout.splitlines()
        entries = json_lines(agent.atm("logs", "--json", "--lines", "1000").stdout)
    finally:
        agent.stop()
    assert any(line.endswith("state   idle -> out_of_service  (service_lost)") for line in human)
    assert any("WARNING agent.control: control socket: refused pid" in line for line in human)
    assert any(e["source"] == "event" and e["name"] == "state" and "out_of_service" in e["text"] for e in followed)
    warning = next(e for e in followed if e["source"] == "log")
    assert warning["level"] == "WARNING" and warning["name"] == "agent.control"
    assert "too many connections (16)" in warning["text"]
    assert len(human) <= 50 < len(entries) or len(human) == len(entries)  # --lines 50 by default
    assert all(a["seq"] < b["seq"] for a, b in zip(entries, entries[1:], strict=False))


def card_number_forms() -> list[str]:
    """Every PAN of the virtual cards as it could show: digits, and its ASCII in hex."""
    forms = []
    for card in CARDS.values():
        forms += [card.pan, card.pan[:12], card.pan.encode().hex(), card.pan.encode().hex(" ")]
        forms += [card.pan[:8].encode().hex(" "), card.pan[:8].encode().hex()]
    return forms


def test_a_card_reads_trace_and_the_agents_lines_hold_no_card_number(tmp_path):
    agent = Agent(tmp_path, "", "--customers", "--seed", "21")  # its first card (magstripe) is read at once
    outputs = []
    try:

        def read_track() -> list[dict]:
            proc = agent.atm("trace", "card_reader", "--lines", "1000", "--json")
            outputs.append(proc.stdout + proc.stderr)
            frames = json_lines(proc.stdout)
            return [f for f in frames if f["frame"].get("command") == "read_track" and f["frame"]["kind"] == "reply"]

        replies = wait_for(read_track, 20)
        follower = agent.follow("logs", "--lines", "1000")  # until the agent stops
        for args in (("trace", "card_reader", "--lines", "1000"), ("logs", "--lines", "1000")):
            outputs.append(agent.atm(*args).stdout)
        outputs.append(agent.atm("logs", "--lines", "1000", "--json").stdout)
    finally:
        outputs.append(agent.stop())
    followed, said = follower.communicate(timeout=10)
    assert follower.returncode == 1 and said == "atm: the agent closed the logs stream (it stopped)\n"
    assert "state   " in followed
    outputs.append(followed)
    track = replies[0]
    assert track["frame"]["data"].endswith(" bytes of track data>") and track["frame"]["position"] == "inside"
    assert track["hex"].startswith("f2 00 ") and track["hex"].endswith(" bytes of track data and CRC not shown>")
    assert any("card_reader.inserted" in line for line in outputs[-3].splitlines())  # in atm logs
    text = "\n".join(outputs)
    for form in card_number_forms():
        assert form not in text, f"{form!r} is in what the agent or the CLI printed"
