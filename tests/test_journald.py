"""The agent's entries to journald: the native protocol, the fields an administrator filters on."""

import logging
import os
import socket
import struct
import subprocess

from agent.journald import Journald, JournaldHandler, JournaldSink, encode, record_fields
from devices.base import Action, Fault, Severity
from tests.helpers import RAW_PANS
from tests.running import ATM


def parse(datagram: bytes) -> dict[str, str]:
    """The native protocol read back (what journald does)."""
    fields, i = {}, 0
    while i < len(datagram):
        end = datagram.index(b"\n", i)
        line = datagram[i:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            fields[key.decode()] = value.decode()
            i = end + 1
        else:
            (size,) = struct.unpack("<Q", datagram[end + 1 : end + 9])
            fields[line.decode()] = datagram[end + 9 : end + 9 + size].decode()
            i = end + 9 + size + 1
    return fields


def jam(state: str) -> dict:
    fault = Fault("dispenser", "jam", Severity.ERROR, "notes jammed at the exit", Action.RESET)
    return {"type": "device", "t": 1.0, "device": "dispenser", "event": "fault", "fault": fault, "state": state}


def test_a_raised_fault_is_an_error_with_its_device_and_code_and_a_cleared_one_a_notice():
    raised, cleared = record_fields(jam("raised")), record_fields(jam("cleared"))
    assert (raised["PRIORITY"], raised["ATM_DEVICE"], raised["ATM_FAULT_CODE"], raised["ATM_FAULT_STATE"]) == (
        "3",
        "dispenser",
        "jam",
        "raised",
    )
    assert cleared["PRIORITY"] == "5" and cleared["ATM_FAULT_STATE"] == "cleared"
    state = record_fields({"type": "state", "t": 2.0, "previous": "idle", "state": "card_inserted", "trigger": "t"})
    assert (state["ATM_STATE"], state["PRIORITY"]) == ("card_inserted", "5")
    card = record_fields(
        {"type": "card", "t": 3.0, "masked": "411111******1111", "source": "chip", "session": "atm-0001-000007"}
    )
    assert card["ATM_SESSION"] == "atm-0001-000007" and "411111******1111" in card["MESSAGE"]
    assert record_fields({"type": "telemetry", "t": 4.0, "topic": "x", "payload": {}})["PRIORITY"] == "7"


def test_entries_reach_the_socket_in_the_native_protocol_newlines_and_all(tmp_path):
    path = str(tmp_path / "journal.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    journald = Journald(path)
    try:
        JournaldSink(journald)(jam("raised"))
        entry = parse(server.recv(65536))
        assert entry["SYSLOG_IDENTIFIER"] == "atm-agent" and entry["ATM_FAULT_CODE"] == "jam"
        logger = logging.getLogger("agent.test-journald")
        logger.addHandler(JournaldHandler(journald))
        logger.warning("two\nlines")
        entry = parse(server.recv(65536))
        assert (entry["MESSAGE"], entry["PRIORITY"], entry["ATM_LOGGER"]) == ("two\nlines", "4", "agent.test-journald")
    finally:
        journald.close()
        server.close()
    assert parse(encode({"A": "x\ny", "B": "z"})) == {"A": "x\ny", "B": "z"}


def test_under_systemd_the_records_leave_stdout_and_the_agent_runs_without_a_journald(tmp_path):
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n[control]\nsocket = "{tmp_path / "c.sock"}"\n')
    env = {**os.environ, "JOURNAL_STREAM": "8:1234"}
    if not os.path.exists("/run/systemd/journal/socket"):  # the entries are dropped, said once
        proc = subprocess.run(
            [ATM, "run", "--config", str(config), "--no-customers", "--duration", "3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "ready:" in proc.stdout and "state   starting ->" not in proc.stdout  # no record lines there
        assert "Traceback" not in proc.stderr
    plain = subprocess.run(
        [ATM, "run", "--config", str(config), "--no-customers", "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0 and "state   starting ->" in plain.stdout  # outside systemd: the lines
    assert not any(pan in plain.stdout for pan in RAW_PANS)
