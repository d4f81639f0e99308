"""Issue 11 item 8: configs and rigs that gave tracebacks, as the user meets them.

Each bad file is one line on stderr and exit status 2 from ``atm run`` and
``atm status``, with ``--config`` and with ``--rig``, and nothing is written:
no journal, no outbox.
"""

from __future__ import annotations

import codecs
import os
import subprocess
import sys

import pytest

from agent import config
from agent.config import ConfigError

ATM = os.path.join(os.path.dirname(sys.executable), "atm")
KINDS = ("card_reader", "chip", "dispenser", "acceptor", "proximity", "keypad", "camera", "speaker", "display")
SECRET = '[security]\ncard_key = "00112233445566778899aabbccddeeff"\n'
NO_PCSCD = {"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}  # pcsc-lite's client asks this socket


def rig_text(**devices: str) -> str:
    lines = ["[rig]", 'name = "bad"', "[devices]"]
    lines += [f"{k} = {devices.get(k, 'sim://')!r}".replace("'", '"') for k in KINDS]
    return "\n".join(lines) + "\n"


def deep_array(depth: int) -> bytes:
    return ("x = " + "[" * depth + "]" * depth + "\n").encode()


def deep_tables(depth: int) -> bytes:
    return ("x = " + "{a = " * depth + "1" + "}" * depth + "\n").encode()


HUGE = "100000000000000000000000"  # 10^23
# name -> (config file, words in the message); a rig file of the same fault where one exists
CONFIGS = {
    "latin-1": ('[atm]\nid = "café"\n'.encode("latin-1"), "not UTF-8"),
    "utf-16": (codecs.BOM_UTF16_LE + '[atm]\nid = "x"\n'.encode("utf-16-le"), "UTF-16"),
    "utf-16 without BOM": ('[atm]\nid = "x"\n'.encode("utf-16-le"), "UTF-16"),
    "arrays 3000 deep": (deep_array(3000), "nested more than"),
    "tables 5000 deep": (deep_tables(5000), "nested more than"),
    "fault=meteor": (b'[devices]\ndispenser = "lcdm2000+emu://?fault=meteor"\n', "fault='meteor'"),
    "upper=Z": (b'[devices]\ndispenser = "lcdm2000+emu://?upper=Z"\n', "upper='Z'"),
    "pcsc://99": (f'[devices]\nchip = "pcsc://99"\n{SECRET}'.encode(), "reader index 99"),
    "mqtt://:::": (b'[telemetry]\nbrokers = ["mqtt://:::"]\n', "telemetry.brokers"),
    "port 99999": (b'[telemetry]\nbrokers = ["mqtt://localhost:99999"]\n', "telemetry.brokers"),
    "count 10^23": (f'[[cassettes]]\nid = "A"\ndenomination = 1000\ncount = {HUGE}\n'.encode(), "count"),
    "max_withdrawal 10^23": (f"[session]\nmax_withdrawal = {HUGE}\n".encode(), "max_withdrawal"),
    "pin=banana": (b'[devices]\nproximity = "gpiozero-pir://?pin=banana"\n', "pin='banana'"),
    "sim://?%%%": (b'[devices]\nkeypad = "sim://?%%%"\n', "malformed"),
}
RIGS = {
    "latin-1": (rig_text().replace('"bad"', '"café"').encode("latin-1"), "not UTF-8"),
    "utf-16": (codecs.BOM_UTF16_BE + rig_text().encode("utf-16-be"), "UTF-16"),
    "tables 5000 deep": (rig_text().encode() + b"[more]\n" + deep_tables(5000), "nested more than"),
    "fault=meteor": (rig_text(dispenser="lcdm2000+emu://?fault=meteor").encode(), "fault='meteor'"),
    "upper=Z": (rig_text(dispenser="lcdm2000+emu://?upper=Z").encode(), "upper='Z'"),
    "pcsc://99": (rig_text(chip="pcsc://99").encode(), "reader index 99"),
    "pin=banana": (rig_text(proximity="gpiozero-pir://?pin=banana").encode(), "pin='banana'"),
    "sim://?%%%": (rig_text(keypad="sim://?%%%").encode(), "malformed"),
    "name = 5": (rig_text().replace('"bad"', "5").encode(), "rig.name"),
}


def atm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ATM, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **NO_PCSCD, **(env or {})}
    )


def assert_one_line(proc: subprocess.CompletedProcess, words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("atm: error: "), proc.stderr[-2000:]
    assert words in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, name, command):
    data, words = CONFIGS[name]
    path = tmp_path / "atm.toml"
    journal = tmp_path / "var" / "journal.db"
    path.write_bytes(data)
    extra = ["--journal", str(journal), "--duration", "5", "--no-customers"] if command == "run" else []
    proc = atm(command, "--config", str(path), *extra)
    assert_one_line(proc, words)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["atm.toml"]


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize("name", sorted(RIGS))
def test_a_bad_rig_is_one_line_exit_2_and_writes_nothing(tmp_path, name, command):
    data, words = RIGS[name]
    path, secret = tmp_path / "rig.toml", tmp_path / "secret.toml"  # a real chip reader needs a card key
    journal = tmp_path / "var" / "journal.db"
    path.write_bytes(data)
    secret.write_text(SECRET)
    extra = ["--journal", str(journal), "--duration", "5", "--no-customers"] if command == "run" else []
    proc = atm(command, "--rig", str(path), "--config", str(secret), *extra)
    assert_one_line(proc, words)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["rig.toml", "secret.toml"]


@pytest.mark.parametrize(
    "url",
    ["mqtt://:::", "mqtt://localhost:99999", "mqtt://localhost:0", "mqtt://user:pw@host", "mqtt://host/topic"],
)
def test_a_broker_url_is_checked_whole_not_by_its_prefix(url):
    with pytest.raises(ConfigError, match=r"^telemetry\.brokers: element 0: bad broker URL"):
        config.from_dict({"telemetry": {"brokers": [url]}})


def test_a_bad_mqtt_option_writes_no_journal(tmp_path):
    journal = tmp_path / "journal.db"
    proc = atm("run", "--mqtt", "mqtt://:::", "--journal", str(journal), "--duration", "5", "--no-customers")
    assert_one_line(proc, "bad broker URL")
    assert list(tmp_path.iterdir()) == []


def test_a_chip_reader_without_pcscd_is_a_fault_not_a_traceback(tmp_path):
    path = tmp_path / "atm.toml"
    path.write_text(f'[devices]\nchip = "pcsc://0"\n{SECRET}')
    proc = atm("status", "--config", str(path))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["chip"])
    assert "pcsc://0" in lines[at] and "pcscd" in lines[at + 1], proc.stdout  # the device, then its fault
