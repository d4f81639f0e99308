"""``atm emulate``: a real subprocess, its pty spoken to with pyserial, its console on stdin."""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import serial

ROOT = Path(__file__).resolve().parent.parent
ATM = [sys.executable, "-m", "agent.cli"]
ACK, NAK = b"\x06", b"\x15"


def bcc(data: bytes) -> bytes:
    out = 0
    for b in data:
        out ^= b
    return bytes([out])


def crc16(data: bytes) -> bytes:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc.to_bytes(2, "big")


def lcdm_frame(cmd: int, data: bytes = b"") -> bytes:
    frame = bytes([0x04, 0x50, 0x02, cmd]) + data + b"\x03"
    return frame + bcc(frame)


def ict_frame(cm: int, pm: int) -> bytes:
    head = bytes([0xF2, 0x00, 0x03, 0x43, cm, pm])
    return head + crc16(head)


LCDM_STATUS = lcdm_frame(0x46)
ICT_STATUS = ict_frame(0x31, 0x30)


class Emulate:
    """``atm emulate ARGS`` as a subprocess; its stdout lines arrive on a queue."""

    def __init__(self, *args: str, stdin=subprocess.PIPE):
        self.proc = subprocess.Popen(
            [*ATM, "emulate", *args], cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = self.line()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float = 5) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail("atm emulate printed nothing in time")

    def command(self, text: str) -> str:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.line()

    def status(self) -> dict:
        reply = self.command("status")
        assert reply.startswith("ok {"), reply
        return json.loads(reply[3:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def emulate():
    started = []

    def start(*args, **kwargs):
        started.append(Emulate(*args, **kwargs))
        return started[-1]

    yield start
    for em in started:
        em.close()


def open_port(em: Emulate, baud: int) -> serial.Serial:
    assert em.port.startswith("/dev/") and stat.S_ISCHR(os.stat(em.port).st_mode), em.port
    return serial.Serial(em.port, baud, timeout=1)


def exchange(port: serial.Serial, frame: bytes, reply_length: int) -> bytes:
    """Send a command, expect ACK, read the reply, ACK it."""
    port.write(frame)
    assert port.read(1) == ACK
    reply = port.read(reply_length)
    port.write(ACK)
    return reply


def lcdm_status(port: serial.Serial) -> bytes:
    reply = exchange(port, LCDM_STATUS, 10)
    assert len(reply) == 10 and reply[:4] == b"\x01\x50\x02\x46" and reply[8] == 0x03
    assert reply[9:] == bcc(reply[:9])
    return reply


def ict_reply(port: serial.Serial, frame: bytes) -> bytes:
    """Send a reader command; its whole reply (framed by LEN), CRC checked."""
    port.write(frame)
    assert port.read(1) == ACK
    head = port.read(3)
    assert head[:1] == b"\xf2" and len(head) == 3
    rest = port.read(int.from_bytes(head[1:], "big") + 2)
    port.write(ACK)
    reply = head + rest
    assert crc16(reply[:-2]) == reply[-2:]
    return reply[3:-2]  # kind CM PM [st1 st0] data


def test_lcdm2000_serves_the_wire_and_the_console_changes_it(emulate):
    em = emulate("lcdm2000")
    with open_port(em, 9600) as port:
        reply = lcdm_status(port)
        assert reply[5] == 0x30  # no error
        assert em.command("fault jam_chk").startswith("ok")
        assert em.status()["faults"] == ["jam_chk"]
        # the jam fires on the next dispense: 4 notes asked, 2 delivered, then jam (33)
        reply = exchange(port, lcdm_frame(0x45, b"04"), 14)
        assert reply[4:8] == b"0302" and reply[8] == 0x33
        assert lcdm_status(port)[5] == 0x33
        state = em.status()
        assert state["jam"] == "jam_chk" and state["on_path"] == 1 and state["exit_notes"] == 2
        assert em.command("take") == "ok took 2 notes"
        assert em.command("clear-jam").startswith("ok")
        assert lcdm_status(port)[5] == 0x30
        assert em.command("load 10 20").startswith("ok")
        assert em.status()["counts"] == {"upper": 10, "lower": 20}
        assert em.command("power off") == "ok power off"
        port.write(LCDM_STATUS)
        assert port.read(1) == b""  # unpowered: silent
        assert em.command("power on") == "ok power on"
        port.reset_input_buffer()
        lcdm_status(port)


def test_ict3q8_takes_a_card_from_the_console_and_never_shows_its_number(emulate):
    assert ICT_STATUS == bytes.fromhex("F20003433130C52A")  # the documented frame
    em = emulate("ict3q8")
    pan = "4999990000000015"  # CARDS["domestic"]
    with open_port(em, 38400) as port:
        assert ict_reply(port, ICT_STATUS) == b"P10" + b"00"  # no card
        assert em.command("insert domestic").startswith("error:")  # entry not enabled yet
        assert ict_reply(port, ict_frame(0x30, 0x30))[:1] == b"P"  # initialise
        assert ict_reply(port, ict_frame(0x3A, 0x30))[:1] == b"P"  # enable entry
        assert em.status()["entry_enabled"] is True
        assert em.command("insert domestic") == "ok card domestic inside"
        line = em.command("status")
        assert pan not in line and "499999******0015" in line
        state = json.loads(line[3:])
        assert state["position"] == "inside" and state["card"]["pan"] == "499999******0015"
        assert ict_reply(port, ICT_STATUS) == b"P10" + b"02"
        assert ict_reply(port, ict_frame(0x36, 0x32)) == b"P62" + b"02" + f"{pan}=30122010000000000".encode()
        assert ict_reply(port, ict_frame(0x49, 0x30)) == b"PI0" + b"02" + bytes.fromhex("3B6800000073C84013009000")
        assert ict_reply(port, ict_frame(0x33, 0x30)) == b"P30" + b"01"  # eject to the gate
        assert em.command("take") == "ok took the card"
        assert em.status()["position"] == "none"
        # a raw track 2, no chip
        assert ict_reply(port, ict_frame(0x3A, 0x30))[:1] == b"P"
        assert em.command(f"insert-track2 ;{pan}=3012101?") == "ok card inside"
        assert ict_reply(port, ict_frame(0x36, 0x32)) == b"P62" + b"02" + f"{pan}=3012101".encode()
        assert ict_reply(port, ict_frame(0x49, 0x30)) == b"NI0" + b"60"  # no chip
        assert pan not in em.command("status")
        # a fault from the console
        assert em.command("fault jam").startswith("ok")
        assert ict_reply(port, ict_frame(0x33, 0x30)) == b"N30" + b"10"
        assert em.command("clear jam").startswith("ok")
        assert ict_reply(port, ict_frame(0x33, 0x30)) == b"P30" + b"01"


def test_start_faults_and_timing(emulate):
    em = emulate("lcdm2000", "--fault", "reject_tray_removed", "--fault", "jam_div", "--timing")
    assert em.status()["faults"] == ["jam_div", "reject_tray_removed"]
    with open_port(em, 9600) as port:
        reply = lcdm_status(port)
        assert not reply[7] & 0x40  # reject tray not present


def test_bad_console_input_is_answered_and_never_stops_the_emulator(emulate):
    em = emulate("ict3q8")
    em.proc.stdin.write("\n   \n")  # blank lines: no answer
    assert em.command("help").startswith("ok commands:")
    secret = "4999990000000015"
    for bad in (
        "nonsense",
        "fault",
        "fault nope",
        "clear nope",
        "power",
        "power off x",
        "power sideways",
        "status now",
        "insert",
        f"insert {secret}",
        "insert-track2 ;é=1?",
        "insert-track2 ?",
        "take",
        "load 1 2",
        "clear-jam",
        "\x00\xff",
        f"insert-track2 {secret}=3012",
    ):
        answer = em.command(bad)
        assert answer.startswith("error:"), (bad, answer)
        assert secret not in answer
    assert "nak_storm" in em.command("fault nope")  # names the known faults
    assert em.proc.poll() is None
    assert em.status()["card"] is None
    with open_port(em, 38400) as port:
        assert ict_reply(port, ICT_STATUS) == b"P10" + b"00"


def test_unknown_fault_is_a_usage_error():
    done = subprocess.run(
        [*ATM, "emulate", "lcdm2000", "--fault", "nope"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("atm: error:")
    assert "'nope'" in lines[0] and "jam_chk" in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(emulate, sig):
    em = emulate("ict3q8")
    em.proc.send_signal(sig)
    assert em.proc.wait(timeout=5) == 0
    assert em.line() is None  # nothing more printed
    assert em.proc.stderr.read() == ""


def test_end_of_input_keeps_it_serving(emulate):
    em = emulate("lcdm2000", stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    assert em.proc.poll() is None
    with open_port(em, 9600) as port:
        lcdm_status(port)
    # and the console closed after a command
    em2 = emulate("lcdm2000")
    assert em2.command("fault jam_chk").startswith("ok")
    em2.proc.stdin.close()
    time.sleep(0.5)
    assert em2.proc.poll() is None
    with open_port(em2, 9600) as port:
        assert exchange(port, lcdm_frame(0x45, b"02"), 14)[8] == 0x33  # the fault is still there
    em2.proc.send_signal(signal.SIGTERM)
    assert em2.proc.wait(timeout=5) == 0
