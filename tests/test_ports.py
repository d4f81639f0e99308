"""Ports that will not open: a fault (port_unavailable), retried with a backoff, never a traceback."""

from __future__ import annotations

import fcntl
import json
import os
import time

import pytest

from devices.base import DeviceContext, DeviceStatus
from devices.registry import create_device
from fsm.clock import Scheduler, VirtualClock
from hw_mocks.ict3q8_emulator import Ict3q8Emulator
from tests.test_rig import all_sim, run_cli, write_rig


def reader_on(port: str, ctx: DeviceContext | None = None):
    reader = create_device("card_reader", f"ict3q8://{port}", ctx or DeviceContext())
    reader.open()
    return reader


def test_the_emulator_port_opens_again_after_its_first_client_left():
    """8E1 with RTS/CTS, closed, then opened again (termios.error 22 before the fix)."""
    with Ict3q8Emulator(initialised=True) as emu:
        for _ in range(3):
            reader = reader_on(emu.port)
            assert reader.status is DeviceStatus.ONLINE, reader.faults
            reader.close()
            time.sleep(0.2)  # the emulator sees the close


def test_a_port_that_refuses_its_line_settings_is_a_fault_retried_with_a_backoff():
    with Ict3q8Emulator(initialised=True) as emu:
        ctx = DeviceContext(scheduler=Scheduler(VirtualClock()))
        keeper = os.open(emu.port, os.O_RDWR | os.O_NOCTTY)  # the port never looks closed
        first = reader_on(emu.port)  # its 8E1 RTS/CTS stays on the port when it closes
        first.close()
        reader = reader_on(emu.port, ctx)
        if reader.status is DeviceStatus.ONLINE:  # a kernel that accepts it: nothing to see
            pytest.skip("this kernel sets parity on a pty without complaint")
        fault = reader.faults["port_unavailable"]
        assert "8E1 RTS/CTS: Invalid argument (errno 22)" in fault.message
        os.close(keeper)
        time.sleep(0.2)  # the emulator sees the port closed and forgets its settings
        assert reader.poll() is DeviceStatus.OFFLINE  # not before the backoff
        ctx.scheduler.clock.advance(1.0)
        assert reader.poll() is DeviceStatus.ONLINE and not reader.faults
        reader.close()


def held(port: str) -> int:
    """Another process's lock on the port, as pyserial's exclusive open takes it."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_busy_port_is_a_fault_naming_it(tmp_path):
    with Ict3q8Emulator(initialised=True) as emu:
        fd = held(emu.port)
        try:
            reader = reader_on(emu.port)
            assert reader.status is DeviceStatus.OFFLINE
            assert reader.faults["port_busy"].message == f"cannot open {emu.port}: in use by another process"
            rig = write_rig(tmp_path, all_sim(card_reader=f"ict3q8://{emu.port}"))
            cfg = tmp_path / "atm.toml"
            cfg.write_text('[security]\ncard_key = "00112233445566778899aabbccddeeff"\n')
            out = run_cli("status", "--config", str(cfg), "--rig", str(rig), "--json")
            assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
            card_reader = json.loads(out.stdout)["devices"]["card_reader"]
            assert card_reader["status"] == "offline"
            assert [(f["code"], f["action"]) for f in card_reader["faults"]] == [("port_busy", "configuration")]
        finally:
            os.close(fd)
        reader = reader_on(emu.port)  # free again
        assert reader.status is DeviceStatus.ONLINE
        reader.close()
