"""The LCDM-2000 emulator against hand-built frames (docs/serial-devices.md)."""

from __future__ import annotations

import random
import time

import pytest
import serial

from hw_mocks.lcdm_emulator import Lcdm2000Emulator
from hw_mocks.servers.wait import wait_for

ACK, NAK = b"\x06", b"\x15"
PURGE, UPPER, STATUS, ROM, LOWER, BOTH, TEST_UPPER, TEST_LOWER = (0x44, 0x45, 0x46, 0x47, 0x55, 0x56, 0x76, 0x77)
LENGTH = {PURGE: 7, STATUS: 10, ROM: 10, UPPER: 14, LOWER: 14, BOTH: 21, TEST_UPPER: 14, TEST_LOWER: 14}
# sensor bits
EXIT6, UPPER_NEAR6 = 0x20, 0x40
UPPER_IN7, LOWER_IN7, LOWER_NEAR7, TRAY_IN7 = 0x02, 0x04, 0x20, 0x40
AT_REST7 = UPPER_IN7 | LOWER_IN7 | TRAY_IN7


def bcc(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def command(cmd: int, data: bytes = b"") -> bytes:
    body = bytes([0x04, 0x50, 0x02, cmd]) + data + b"\x03"
    return body + bytes([bcc(body)])


def check_frame(resp: bytes, cmd: int, length: int) -> None:
    assert len(resp) == length, resp.hex(" ")
    assert resp[:4] == bytes([0x01, 0x50, 0x02, cmd])
    assert resp[-2] == 0x03
    assert resp[-1] == bcc(resp[:-1])


def transact(port: serial.Serial, cmd: int, data: bytes = b"") -> bytes:
    """Send a command, expect ACK and a well-formed response, ACK it."""
    port.write(command(cmd, data))
    assert port.read(1) == ACK
    resp = port.read(LENGTH[cmd])
    port.write(ACK)
    check_frame(resp, cmd, LENGTH[cmd])
    return resp


def single(resp: bytes) -> dict:
    return {
        "check": int(resp[4:6]),
        "exit": int(resp[6:8]),
        "code": resp[8],
        "status": resp[9],
        "rejects": int(resp[10:12]),
    }


def both(resp: bytes) -> dict:
    return {
        "upper": (int(resp[4:6]), int(resp[6:8]), int(resp[15:17])),
        "lower": (int(resp[8:10]), int(resp[10:12]), int(resp[17:19])),
        "code": resp[12],
        "status": (resp[13], resp[14]),
    }


def status(port) -> tuple[int, int, int]:
    resp = transact(port, STATUS)
    assert resp[4] == 0x30
    assert not resp[6] & 0x80 and not resp[7] & 0x80
    return resp[5], resp[6], resp[7]


def quiet(port, wait: float = 0.3) -> bytes:
    """Whatever the device sends within ``wait`` seconds."""
    port.timeout = wait
    try:
        return port.read(64)
    finally:
        port.timeout = 1


def left_cassettes(emu, upper, lower) -> int:
    return upper + lower - sum(emu.counts.values())


def assert_invariant(emu, upper=500, lower=1000):
    with emu.lock:
        assert left_cassettes(emu, upper, lower) == (
            emu.delivered + emu.reject_tray + emu.on_path + emu.cleared_by_hand
        )


@pytest.fixture
def emu():
    device = Lcdm2000Emulator().start()
    yield device
    device.stop()


@pytest.fixture
def port(emu):
    with serial.Serial(emu.port, 9600, timeout=1) as host:
        yield host


# framing and handshake ----------------------------------------------------------------


def test_known_purge_frame(port):
    assert command(PURGE) == bytes.fromhex("04 50 02 44 03 11")
    port.write(bytes.fromhex("04 50 02 44 03 11"))
    assert port.read(1) == ACK
    resp = port.read(7)
    port.write(ACK)
    check_frame(resp, PURGE, 7)
    assert resp[4] == 0x30


def test_status_at_rest(port):
    assert status(port) == (0x30, 0x00, AT_REST7)


def test_rom_version(emu, port):
    assert transact(port, ROM)[4:8] == b"2.10"


def test_rom_version_must_be_four_ascii_characters():
    with pytest.raises(ValueError):
        Lcdm2000Emulator(rom_version="2.1")


def test_bad_bcc_is_naked_then_a_resend_works(emu, port):
    frame = bytearray(command(UPPER, b"02"))
    frame[-1] ^= 0xFF
    port.write(frame)
    assert port.read(1) == NAK
    assert quiet(port, 0.2) == b""
    assert emu.counts["upper"] == 500
    assert single(transact(port, UPPER, b"02"))["exit"] == 2
    assert emu.received == 2


def test_host_nak_gets_the_same_response_at_most_three_times(emu, port):
    port.write(command(UPPER, b"03"))
    assert port.read(1) == ACK
    first = port.read(14)
    check_frame(first, UPPER, 14)
    for _ in range(3):
        port.write(NAK)
        assert port.read(14) == first
    port.write(NAK)
    assert quiet(port, 0.7) == b""
    assert emu.counts["upper"] == 497  # dispensed once, not four times
    assert status(port)[0] == 0x30


def test_next_command_instead_of_host_ack_is_served(port):
    port.write(command(STATUS))
    assert port.read(1) == ACK
    assert len(port.read(10)) == 10
    assert transact(port, ROM)[4:8] == b"2.10"


@pytest.mark.parametrize(
    "garbage", [b"\x00\xff\x55\x03", b"\x04\x99\x02", b"\x50\x02\x04", b"\x04\x51\x02\x46\x03\x10"]
)
def test_garbage_before_a_frame_is_skipped(port, garbage):
    port.write(garbage)
    assert status(port) == (0x30, 0x00, AT_REST7)


def test_truncated_frame_is_naked_and_the_device_recovers(emu, port):
    port.write(bytes.fromhex("04 50 02 45 30"))
    assert port.read(1) == NAK
    assert emu.counts["upper"] == 500
    assert status(port)[0] == 0x30


def test_frame_hidden_inside_a_broken_one_is_found(emu, port):
    # dispense with the ETX missing: the host gives up and sends a status
    port.write(bytes.fromhex("04 50 02 45 30") + command(STATUS))
    assert port.read(1) == NAK
    assert port.read(1) == ACK
    resp = port.read(10)
    port.write(ACK)
    check_frame(resp, STATUS, 10)


def test_wrong_data_length_is_naked(emu, port):
    port.write(command(UPPER, b"050"))
    assert port.read(1) == NAK
    assert quiet(port) == b""
    assert emu.counts["upper"] == 500


def test_unknown_command_answers_undefined(port):
    port.write(command(0x99, b"12"))
    assert port.read(1) == ACK
    resp = port.read(7)
    port.write(ACK)
    check_frame(resp, 0x99, 7)
    assert resp[4] == 0x37


def test_random_noise_never_kills_the_device(emu, port):
    rng = random.Random(2000)
    for _ in range(20):
        port.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    time.sleep(1.2)  # any half frame in the noise times out
    port.reset_input_buffer()
    assert status(port)[0] in (0x30, 0x44)  # a noise frame may even have dispensed
    assert_invariant(emu)


def test_real_baud_timing():
    with Lcdm2000Emulator(baud=9600) as device, serial.Serial(device.port, 9600, timeout=1) as host:
        start = time.monotonic()
        assert single(transact(host, UPPER, b"10"))["exit"] == 10
        assert time.monotonic() - start >= (6 + 1 + 14 + 1) * 10 / 9600


# dispensing ---------------------------------------------------------------------------


def test_single_upper_dispense(emu, port):
    resp = transact(port, UPPER, b"05")
    assert resp == bytes.fromhex("01 50 02 45") + b"0505" + b"\x30\x30" + b"00" + bytes([0x03, resp[-1]])
    assert emu.counts == {"upper": 495, "lower": 1000}
    assert emu.exit_notes == 5 and emu.delivered == 5


def test_single_lower_dispense_of_sixty(emu, port):
    assert single(transact(port, LOWER, b"60")) == {"check": 60, "exit": 60, "code": 0x30, "status": 0x30, "rejects": 0}
    assert emu.counts == {"upper": 500, "lower": 940}


def test_both_dispense_layout(emu, port):
    resp = transact(port, BOTH, b"0307")
    assert resp[4:12] == b"03030707"
    assert resp[12:15] == b"\x30\x30\x30"
    assert resp[15:19] == b"0000"
    assert emu.counts == {"upper": 497, "lower": 993}
    assert emu.exit_notes == 10


def test_notes_wait_at_the_exit_until_taken(emu, port):
    transact(port, UPPER, b"04")
    assert status(port)[1] & EXIT6
    transact(port, LOWER, b"02")
    assert emu.take_notes() == 6
    assert emu.take_notes() == 0
    assert not status(port)[1] & EXIT6
    assert emu.delivered == 6


@pytest.mark.parametrize("cmd, name", [(TEST_UPPER, "upper"), (TEST_LOWER, "lower")])
def test_test_dispense_goes_to_the_reject_tray(emu, port, cmd, name):
    assert single(transact(port, cmd, b"04")) == {"check": 4, "exit": 0, "code": 0x30, "status": 0x30, "rejects": 4}
    assert emu.reject_tray == 4 and emu.exit_notes == 0 and emu.delivered == 0
    assert emu.counts[name] == {"upper": 496, "lower": 996}[name]


@pytest.mark.parametrize("digits", [b"00", b"61", b"99", b"6a", b" 5", b"\x00\x05", b"-1"])
def test_bad_counts_are_a_note_request_error(emu, port, digits):
    assert single(transact(port, UPPER, digits)) == {"check": 0, "exit": 0, "code": 0x3B, "status": 0x30, "rejects": 0}
    assert emu.counts["upper"] == 500


def test_bad_count_in_a_both_dispense_moves_nothing(emu, port):
    out = both(transact(port, BOTH, b"0500"))
    assert out["code"] == 0x3B and out["upper"] == out["lower"] == (0, 0, 0)
    assert emu.counts == {"upper": 500, "lower": 1000}


def test_load_replenishes(emu, port):
    emu.load(upper=2)
    assert single(transact(port, UPPER, b"05"))["code"] == 0x38
    emu.load(upper=100, lower=7)
    assert emu.counts == {"upper": 100, "lower": 7}


def test_purge_moves_loose_notes_into_the_reject_tray(emu, port):
    with emu.lock:  # a note left on the path, not a jam
        emu.counts["upper"] -= 1
        emu.on_path = 1
    assert transact(port, PURGE)[4] == 0x30
    assert emu.on_path == 0 and emu.reject_tray == 1
    assert_invariant(emu)


# faults -------------------------------------------------------------------------------

JAM_CASES = [  # fault, code, sensor byte 6 bits, sensor byte 7 bits
    ("jam_chk", 0x33, 0x03, 0x00),
    ("jam_chk34", 0x4C, 0x00, 0x18),
    ("jam_div", 0x36, 0x0C, 0x00),
    ("jam_exit", 0x35, 0x30, 0x00),
    ("jam_ejt", 0x48, 0x10, 0x00),
]


@pytest.mark.parametrize("fault, code, bits6, bits7", JAM_CASES)
def test_jam_blocks_until_cleared(emu, port, fault, code, bits6, bits7):
    assert status(port)[0] == 0x30
    emu.inject(fault)
    assert status(port)[0] == 0x30  # armed, not happened yet
    out = single(transact(port, UPPER, b"10"))
    assert (out["check"], out["exit"], out["code"]) == (6, 5, code)
    assert emu.counts["upper"] == 494 and emu.exit_notes == 5 and emu.on_path == 1
    assert emu.take_notes() == 5
    error, sensor6, sensor7 = status(port)
    assert error == code
    assert sensor6 == bits6 and sensor7 == AT_REST7 | bits7
    assert single(transact(port, LOWER, b"03")) == {"check": 0, "exit": 0, "code": code, "status": 0x30, "rejects": 0}
    assert transact(port, PURGE)[4] == code
    assert emu.counts == {"upper": 494, "lower": 1000}
    assert_invariant(emu)
    assert emu.clear_jam() == 1
    assert fault not in emu.faults and emu.on_path == 0
    assert status(port) == (0x30, 0x00, AT_REST7)
    assert single(transact(port, UPPER, b"10"))["exit"] == 10
    assert_invariant(emu)


def test_removing_the_jam_fault_clears_it_by_hand(emu, port):
    emu.inject("jam_div")
    transact(port, LOWER, b"01")
    assert emu.on_path == 1 and emu.exit_notes == 0
    emu.remove("jam_div")
    assert emu.on_path == 0 and emu.snapshot()["jam"] is None
    assert status(port)[0] == 0x30
    assert_invariant(emu)


def test_jam_in_a_both_dispense_stops_at_the_upper_cassette(emu, port):
    emu.inject("jam_chk")
    out = both(transact(port, BOTH, b"0406"))
    assert out["code"] == 0x33
    assert out["upper"] == (3, 2, 0) and out["lower"] == (0, 0, 0)
    assert emu.counts == {"upper": 497, "lower": 1000}


def test_pickup_error_is_one_shot(emu, port):
    emu.inject("pickup_error")
    assert single(transact(port, UPPER, b"07")) == {"check": 3, "exit": 3, "code": 0x32, "status": 0x30, "rejects": 0}
    assert emu.on_path == 0 and "pickup_error" not in emu.faults
    assert status(port)[0] == 0x30
    assert single(transact(port, UPPER, b"07"))["code"] == 0x30


@pytest.mark.parametrize("name, cmd, bit6, bit7", [("upper", UPPER, UPPER_NEAR6, 0), ("lower", LOWER, 0, LOWER_NEAR7)])
def test_near_end_fault(emu, port, name, cmd, bit6, bit7):
    emu.inject(f"near_end_{name}")
    assert status(port) == (0x30, bit6, AT_REST7 | bit7)
    out = single(transact(port, cmd, b"01"))
    assert (out["code"], out["status"]) == (0x30, 0x31)
    out = both(transact(port, BOTH, b"0101"))
    assert out["status"] == ((0x31, 0x30) if name == "upper" else (0x30, 0x31))


def test_near_end_below_thirty_notes(emu, port):
    emu.load(upper=31)
    assert single(transact(port, UPPER, b"01"))["status"] == 0x30
    assert status(port)[1] == EXIT6
    assert single(transact(port, UPPER, b"01"))["status"] == 0x31
    assert status(port)[1] == EXIT6 | UPPER_NEAR6


@pytest.mark.parametrize("name, cmd, code", [("upper", UPPER, 0x38), ("lower", LOWER, 0x40)])
def test_empty_fault_is_bill_end(emu, port, name, cmd, code):
    emu.inject(f"empty_{name}")
    assert single(transact(port, cmd, b"05")) == {"check": 0, "exit": 0, "code": code, "status": 0x31, "rejects": 0}
    assert emu.counts == {"upper": 500, "lower": 1000}


def test_running_out_mid_dispense(emu, port):
    emu.load(upper=3)
    out = single(transact(port, UPPER, b"05"))
    assert (out["check"], out["exit"], out["code"]) == (3, 3, 0x38)
    assert emu.counts["upper"] == 0 and emu.exit_notes == 3


def test_both_dispense_stops_at_upper_bill_end(emu, port):
    emu.inject("empty_upper")
    out = both(transact(port, BOTH, b"0202"))
    assert out["code"] == 0x38 and out["lower"] == (0, 0, 0)
    emu.remove("empty_upper")
    emu.inject("empty_lower")
    out = both(transact(port, BOTH, b"0202"))
    assert out["code"] == 0x40 and out["upper"] == (2, 2, 0) and out["lower"] == (0, 0, 0)


@pytest.mark.parametrize(
    "name, cmd, code, bit7", [("upper", UPPER, 0x45, UPPER_IN7), ("lower", LOWER, 0x46, LOWER_IN7)]
)
def test_cassette_removed(emu, port, name, cmd, code, bit7):
    emu.inject(f"cassette_removed_{name}")
    error, _, sensor7 = status(port)
    assert error == code and sensor7 == AT_REST7 & ~bit7
    assert single(transact(port, cmd, b"02"))["code"] == code
    assert both(transact(port, BOTH, b"0202"))["code"] == code
    assert emu.counts == {"upper": 500, "lower": 1000}
    other = LOWER if cmd == UPPER else UPPER
    assert single(transact(port, other, b"02"))["code"] == 0x30


def test_reject_tray_full_fault(emu, port):
    emu.inject("reject_tray_full")
    assert status(port)[0] == 0x44
    assert single(transact(port, UPPER, b"02"))["code"] == 0x44
    assert single(transact(port, TEST_LOWER, b"02"))["code"] == 0x44
    assert emu.counts == {"upper": 500, "lower": 1000} and emu.reject_tray == 0
    assert transact(port, PURGE)[4] == 0x30  # nothing to purge


def test_reject_tray_fills_during_a_test_dispense():
    with Lcdm2000Emulator(reject_capacity=5) as device, serial.Serial(device.port, 9600, timeout=1) as host:
        assert single(transact(host, TEST_UPPER, b"08")) == {
            "check": 5,
            "exit": 0,
            "code": 0x44,
            "status": 0x30,
            "rejects": 5,
        }
        assert device.reject_tray == 5
        assert status(host)[0] == 0x44
        assert single(transact(host, UPPER, b"01"))["code"] == 0x44


def test_reject_tray_removed(emu, port):
    emu.inject("reject_tray_removed")
    error, _, sensor7 = status(port)
    assert error == 0x3F and sensor7 == AT_REST7 & ~TRAY_IN7
    assert single(transact(port, UPPER, b"02"))["code"] == 0x3F
    assert transact(port, PURGE)[4] == 0x3F
    assert emu.counts["upper"] == 500


def test_unknown_fault_name_is_refused(emu):
    with pytest.raises(ValueError):
        emu.inject("jam_everything")


def test_nak_storm(emu, port):
    emu.inject("nak_storm")
    port.write(command(UPPER, b"05"))
    assert port.read(1) == NAK
    assert quiet(port) == b""
    assert emu.counts["upper"] == 500
    emu.remove("nak_storm")
    assert status(port)[0] == 0x30


def test_garbled(emu, port):
    emu.inject("garbled")
    port.write(command(STATUS))
    wire = port.read(11)
    port.write(ACK)
    clear = bytes(b ^ 0x5A for b in wire)
    assert clear[:1] == ACK
    check_frame(clear[1:], STATUS, 10)


def test_silent(emu, port):
    emu.inject("silent")
    port.write(command(STATUS))
    assert quiet(port) == b""
    emu.remove("silent")
    assert status(port)[0] == 0x30


# power ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd, data, k", [(UPPER, b"10", 3), (BOTH, b"0205", 4), (TEST_LOWER, b"06", 1)])
def test_power_loss_mid_dispense(emu, port, cmd, data, k):
    emu.power_loss(after=k)
    port.write(command(cmd, data))
    assert port.read(1) == ACK
    assert quiet(port) == b""  # no response
    wait_for(lambda: not emu.powered, 2, 0.01, "the emulator to lose power")
    snap = emu.snapshot()
    assert snap["delivered"] + snap["reject_tray"] == k
    assert snap["exit_notes"] == snap["delivered"]
    assert_invariant(emu)
    port.write(command(STATUS))  # unpowered: nothing at all
    assert quiet(port, 0.2) == b""
    emu.power_on()
    error, sensor6, _ = status(port)
    assert error == 0x30
    assert bool(sensor6 & EXIT6) == (snap["exit_notes"] > 0)
    assert emu.snapshot()["counts"] == snap["counts"]
    assert single(transact(port, UPPER, b"01"))["exit"] == 1
    assert_invariant(emu)


def test_power_loss_at_once(emu, port):
    emu.power_loss()
    port.write(command(UPPER, b"05"))
    assert quiet(port) == b""
    emu.power_on()
    assert status(port)[0] == 0x30
    assert emu.counts["upper"] == 500  # the command sent unpowered was lost


def test_snapshot(emu, port):
    transact(port, UPPER, b"02")
    emu.inject("near_end_lower")
    snap = emu.snapshot()
    assert snap["counts"] == {"upper": 498, "lower": 1000}
    assert (snap["exit_notes"], snap["delivered"], snap["reject_tray"], snap["on_path"]) == (2, 2, 0, 0)
    assert snap["faults"] == ["near_end_lower"] and snap["powered"] is True


def test_invariant_over_a_random_session():
    rng = random.Random(7)
    with (
        Lcdm2000Emulator(upper=40, lower=40, reject_capacity=20) as device,
        serial.Serial(device.port, 9600, timeout=1) as host,
    ):
        for _ in range(40):
            if rng.random() < 0.3:
                device.inject(rng.choice(Lcdm2000Emulator.FAULTS))
            if rng.random() < 0.2:
                device.clear_jam()
                for fault in list(device.faults):
                    device.remove(fault)
            cmd = rng.choice([UPPER, LOWER, BOTH, TEST_UPPER, TEST_LOWER, PURGE, STATUS])
            data = b"".join(b"%02d" % rng.randrange(0, 12) for _ in range({BOTH: 2, PURGE: 0, STATUS: 0}.get(cmd, 1)))
            transact(host, cmd, data)
            if rng.random() < 0.5:
                device.take_notes()
            assert_invariant(device, 40, 40)


# mechanism time -----------------------------------------------------------------------


def test_note_ms_must_be_in_range():
    with pytest.raises(ValueError, match="note_ms"):
        Lcdm2000Emulator(note_ms=-1)


def test_note_ms_rig_option_reaches_the_emulator_and_the_driver_allowance():
    from devices.base import DeviceContext
    from devices.dispenser import Cassette
    from devices.registry import create_device

    device = create_device("dispenser", "lcdm2000+emu://?note_ms=5", DeviceContext())
    try:
        assert device.emulator.note_ms == 5
        assert device.note_time == pytest.approx(0.025)  # 0.02 + the mechanism's 5 ms
        device.load_cassettes([Cassette("A", 1_000, 100, low=10)])
        device.open()
        result = device.dispense({"A": 3})
        assert not result.fault_code and result.picked == {"A": 3}
        assert device.emulator.snapshot()["exit_notes"] == 3
    finally:
        device.close()
    with pytest.raises(ValueError, match="note_ms"):
        create_device("dispenser", "lcdm2000+emu://?note_ms=slow", DeviceContext())
