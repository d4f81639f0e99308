"""The LCDM-2000 driver against the rig's dispenser (``--rig``; default: the emulator).

Tests that inject faults need the emulator and skip, saying so, on a real
dispenser. Tests that need a real one carry the ``hil`` marker.
"""

from __future__ import annotations

import logging
import time

import pytest

from devices.base import DeviceError, DeviceStatus
from devices.dispenser import Cassette
from tests.helpers import advance

CASSETTES = [Cassette("A", 10_000, 100, low=20), Cassette("B", 1_000, 200, low=20)]


@pytest.fixture
def dispenser(rig_device, ctx):
    def make(emulator=True, **params):
        device = rig_device("dispenser", emulator=emulator, ctx=ctx, **params)
        device.load_cassettes(CASSETTES)
        device.open()
        return device

    return make


def test_status_reports_sensors_and_rom_version(dispenser):
    d = dispenser(emulator=False)
    assert d.self_test() is DeviceStatus.ONLINE
    info = d.describe()
    assert info["model"] == "LCDM-2000" and len(info["rom_version"]) == 4
    assert {"upper_present", "lower_present", "reject_tray_present"} <= set(info["sensors"])
    assert [c["position"] for c in info["cassettes"]] == ["upper", "lower"]


def test_dispense_from_both_cassettes_then_the_customer_takes_the_notes(dispenser, ctx):
    d = dispenser()
    result = d.dispense({"A": 2, "B": 3})
    assert result.complete and result.picked == {"A": 2, "B": 3} and result.rejected == {"A": 0, "B": 0}
    assert [c.count for c in d.cassettes] == [98, 197]
    assert d.emulator.snapshot()["counts"] == {"upper": 98, "lower": 197}
    assert d.present() == 5 and ctx.emit.names() == ["cash_presented"]
    advance(ctx)
    assert "cash_taken" not in ctx.emit.names()  # the notes still block the exit sensor
    assert d.customer_take_cash() == 5
    advance(ctx)
    assert ctx.emit[-1] == ("cash_taken", {"notes": 5}) and d.at_gate == 0


def test_single_cassette_dispense_uses_the_lower_cassette_for_b(dispenser):
    d = dispenser()
    assert d.dispense({"B": 4}).complete
    assert d.emulator.snapshot()["counts"] == {"upper": 100, "lower": 196}


def test_test_dispense_sends_notes_to_the_reject_tray(dispenser):
    d = dispenser()
    result = d.test_dispense("A", 2)
    assert result.picked == {"A": 2} and result.rejected == {"A": 2}
    assert d.cassette("A").count == 98 and d.emulator.snapshot()["reject_tray"] == 2


@pytest.mark.parametrize(
    "fault, code, action",
    [
        ("pickup_error", "pickup_error", "maintenance"),
        ("jam_chk", "jam", "reset"),
        ("jam_chk34", "jam", "reset"),
        ("jam_div", "jam", "reset"),
        ("jam_exit", "jam", "reset"),
        ("jam_ejt", "jam", "reset"),
        ("empty_upper", "cassette_empty", "replenish"),
        ("cassette_removed_upper", "cassette_missing", "maintenance"),
        ("reject_tray_full", "reject_tray_full", "maintenance"),
        ("reject_tray_removed", "reject_tray_missing", "maintenance"),
    ],
)
def test_each_device_error_becomes_a_fault_and_the_counts_follow_the_device(dispenser, fault, code, action):
    d = dispenser()
    d.inject(fault)
    result = d.dispense({"A": 4})
    assert result.fault_code == code and not result.complete and not result.uncertain
    assert d.faults[code].action.value == action
    assert d.status is DeviceStatus.HARDWARE_ERROR
    # whatever the device counted at its check sensor left the cassette, no more and no less
    snap = d.emulator.snapshot()
    assert d.cassette("A").count == snap["counts"]["upper"]
    left = 100 - snap["counts"]["upper"]
    assert left == snap["exit_notes"] + snap["reject_tray"] + snap["on_path"]
    assert d.at_gate == snap["exit_notes"]


def test_a_jam_clears_only_after_it_is_cleared_by_hand_and_purged(dispenser):
    d = dispenser()
    d.inject("jam")
    assert d.dispense({"A": 4}).fault_code == "jam"
    d.reset()
    assert "jam" in d.faults  # a purge cannot clear a note stuck on the path
    d.remove("jam")  # the engineer takes it out
    d.reset()
    assert not d.faults and d.status is DeviceStatus.ONLINE


def test_near_end_sensors_make_the_cassette_low(dispenser):
    d = dispenser()
    d.inject("near_end_lower")
    d.self_test()
    assert d.cassette("B").status == "low" and d.cassette("A").status == "ok"


def test_a_nak_storm_is_a_clear_fault_and_nothing_is_dispensed(dispenser):
    d = dispenser()
    d.inject("nak_storm")
    result = d.dispense({"A": 3})
    assert result.fault_code == "bad_reply" and not result.uncertain
    assert "NAKed" in d.faults["bad_reply"].message
    assert d.cassette("A").count == 100 and d.emulator.snapshot()["counts"]["upper"] == 100
    d.remove("nak_storm")
    d.self_test()
    assert not d.faults


def test_garbled_replies_are_a_fault_and_never_change_the_counts(dispenser):
    d = dispenser()
    d.inject("garbled")
    with pytest.raises(DeviceError) as err:
        d._transact(b"\x04\x50\x02\x46\x03\x13", 0x46)
    assert err.value.fault.code in ("bad_reply", "no_response")
    result = d.dispense({"A": 2})
    assert result.uncertain and d.cassette("A").count == 100  # unknown, so not guessed
    d.remove("garbled")
    assert d.self_test() is DeviceStatus.ONLINE


def test_a_silent_device_times_out_and_a_dispense_is_never_sent_twice(dispenser):
    d = dispenser(ack_timeout=0.1, retries=3)
    d.inject("silent")
    started = time.monotonic()
    assert d.self_test() is DeviceStatus.HARDWARE_ERROR
    assert time.monotonic() - started < 2.0
    assert d.faults["no_response"].message.endswith("no ACK to the command")
    result = d.dispense({"A": 3})
    assert result.uncertain and result.fault_code == "no_response"
    time.sleep(0.2)
    # the device did act on the one command it got; it never got a second one
    assert d.emulator.snapshot()["counts"]["upper"] == 97


def test_power_loss_mid_dispense_leaves_exactly_the_exit_count_out_of_the_cassette(dispenser):
    d = dispenser()
    d.emulator.power_loss(after=2)
    result = d.dispense({"A": 5})
    assert result.uncertain and result.fault_code == "no_response"
    snap = d.emulator.snapshot()
    assert snap["delivered"] == 2 and snap["exit_notes"] == 2
    assert 100 - snap["counts"]["upper"] == snap["delivered"] + snap["reject_tray"] + snap["on_path"]
    d.emulator.power_on()
    assert d.self_test() is DeviceStatus.ONLINE


def test_trace_hex_dumps_both_directions(dispenser, caplog):
    d = dispenser(emulator=False, trace=1)
    with caplog.at_level(logging.INFO, logger="atm.serial"):
        d.self_test()
    lines = [r.getMessage() for r in caplog.records if r.name == "atm.serial"]
    assert "LCDM-2000 > 04 50 02 46 03 13" in lines
    assert "LCDM-2000 < 06" in lines and "LCDM-2000 > 06" in lines


@pytest.mark.hil("dispenser")
def test_real_dispenser_answers_status_and_version(dispenser):
    d = dispenser(emulator=False)
    assert d.self_test() is DeviceStatus.ONLINE, d.describe()["faults"]
    assert d.version


def test_a_missing_cassette_is_one_fault_raised_once_and_cleared_once(dispenser, ctx):
    """Error 0x45 and the missing presence bit are the same condition; self-tests repeat it."""
    d = dispenser()
    d.inject("cassette_removed_upper")
    assert d.dispense({"A": 1}).fault_code == "cassette_missing"  # the device's error 0x45
    for _ in range(48):
        d.self_test()  # the presence bit, at every self-test
    d.remove("cassette_removed_upper")
    d.self_test()
    d.self_test()
    faults = [(data["fault"].code, data["state"]) for name, data in ctx.emit if name == "fault"]
    assert faults == [("cassette_missing", "raised"), ("cassette_missing", "cleared")]
    assert d.status is DeviceStatus.ONLINE
