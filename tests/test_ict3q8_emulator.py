"""The ICT3Q8 card reader emulator, driven byte by byte over its pty.

Frames are built here by hand (with a CRC helper of the test's own) so the
emulator's codec is checked against the protocol doc, not against itself.
"""

import random
import time

import pytest
import serial

from hw_mocks.ict3q8_emulator import Card, Ict3q8Emulator, crc16_xmodem

ACK, NAK = b"\x06", b"\x15"
STATUS = (0x31, 0x30)
INIT_TO_GATE, INIT_CAPTURE, INIT_NO_MOVE = (0x30, 0x30), (0x30, 0x31), (0x30, 0x32)
EJECT, CAPTURE = (0x33, 0x30), (0x33, 0x31)
ENTRY_ON, ENTRY_OFF = (0x3A, 0x30), (0x3A, 0x31)
IC_ON = (0x49, 0x30)
TRACK2 = "4999990000000015=30122010000000000"
ATR = bytes.fromhex("3B6800000073C84013009000")


def crc(data: bytes) -> int:
    """CRC-16/XMODEM, written independently of the emulator's."""
    value = 0
    for byte in data:
        value ^= byte << 8
        for _ in range(8):
            value = (value << 1 ^ 0x1021 if value & 0x8000 else value << 1) & 0xFFFF
    return value


def command(cm: int, pm: int, data: bytes = b"") -> bytes:
    head = bytes([0xF2]) + (3 + len(data)).to_bytes(2, "big") + bytes([0x43, cm, pm]) + data
    return head + crc(head).to_bytes(2, "big")


def read_reply(ser) -> bytes:
    """One whole reply frame; its LEN and CRC are checked."""
    head = ser.read(3)
    assert len(head) == 3 and head[0] == 0xF2, head
    length = int.from_bytes(head[1:], "big")
    rest = ser.read(length + 2)
    assert len(rest) == length + 2, rest
    frame = head + rest
    assert crc(frame[:-2]) == int.from_bytes(frame[-2:], "big")
    return frame


def transact(ser, cm: int, pm: int, data: bytes = b"") -> tuple[str, bytes, bytes]:
    """Send a command, expect ACK and a reply, ACK it; return (kind, code, data)
    where code is the position (P) or the error (N)."""
    ser.write(command(cm, pm, data))
    assert ser.read(1) == ACK
    frame = read_reply(ser)
    ser.write(ACK)
    assert frame[4:6] == bytes([cm, pm])
    kind = chr(frame[3])
    assert kind in "PN"
    if kind == "N":
        assert len(frame) == 10
    return kind, frame[6:8], frame[8:-2]


def quiet(ser, seconds: float = 0.3) -> bytes:
    """Whatever arrives within ``seconds`` (expected to be nothing)."""
    ser.timeout = seconds
    try:
        return ser.read(64)
    finally:
        ser.timeout = 1


def start(**kwargs):
    emu = Ict3q8Emulator(**kwargs).start()
    ser = serial.Serial(emu.port, 38400, timeout=1)
    return emu, ser


@pytest.fixture
def fresh():
    """An uninitialised reader (as after power-on) and the host's port."""
    emu, ser = start()
    yield emu, ser
    ser.close()
    emu.stop()


@pytest.fixture
def rig():
    """An initialised reader and the host's port."""
    emu, ser = start(initialised=True)
    yield emu, ser
    ser.close()
    emu.stop()


def card_inside(emu, ser, tracks=None, atr=None):
    assert transact(ser, *ENTRY_ON)[:2] == ("P", b"00")
    assert emu.insert_card(tracks if tracks is not None else {2: TRACK2}, atr)


# framing ----------------------------------------------------------------------------
def test_crc_matches_the_doc_example():
    assert crc(bytes.fromhex("F2000343 3130")) == 0xC52A
    assert crc16_xmodem(bytes.fromhex("F20003433130")) == 0xC52A
    assert command(*STATUS) == bytes.fromhex("F20003433130C52A")


def test_status_reply_layout(rig):
    emu, ser = rig
    ser.write(command(*STATUS))
    assert ser.read(1) == ACK
    frame = ser.read(10)
    body = bytes.fromhex("F2 0005 50 3130 3030")
    assert frame == body + crc(body).to_bytes(2, "big")
    ser.write(ACK)
    assert quiet(ser) == b""
    assert emu.received == 1


def test_uninitialised_answers_b0_except_initialise_and_status(fresh):
    emu, ser = fresh
    assert transact(ser, *STATUS) == ("P", b"00", b"")
    for cmd in (EJECT, CAPTURE, ENTRY_ON, (0x35, 0x31), (0x36, 0x32), IC_ON):
        assert transact(ser, *cmd) == ("N", b"B0", b""), cmd
    assert not emu.entry_enabled and emu.led == "off"
    assert transact(ser, *INIT_NO_MOVE) == ("P", b"00", b"")
    assert emu.initialised
    assert transact(ser, *ENTRY_ON) == ("P", b"00", b"")


def test_unknown_command_answers_00(fresh):
    _, ser = fresh
    assert transact(ser, 0x37, 0x30) == ("N", b"00", b"")
    assert transact(ser, 0x35, 0x34) == ("N", b"00", b"")  # no such LED colour


def test_initialise_variants(rig):
    emu, ser = rig
    card_inside(emu, ser)
    assert transact(ser, *INIT_NO_MOVE)[:2] == ("P", b"02")
    assert transact(ser, *INIT_TO_GATE)[:2] == ("P", b"01")
    assert emu.position == "gate"
    assert transact(ser, *INIT_CAPTURE)[:2] == ("P", b"01")  # only a card inside is captured
    assert emu.take_card() is not None
    card_inside(emu, ser)
    assert transact(ser, *INIT_CAPTURE)[:2] == ("P", b"00")
    assert emu.card is None and len(emu.captured) == 1


def test_entry_and_insert(rig):
    emu, ser = rig
    assert not emu.insert_card({2: TRACK2})  # entry disabled
    assert transact(ser, *ENTRY_ON)[:2] == ("P", b"00")
    assert emu.entry_enabled
    assert transact(ser, *ENTRY_OFF)[:2] == ("P", b"00")
    assert not emu.insert_card({2: TRACK2})
    assert transact(ser, *ENTRY_ON)[:2] == ("P", b"00")
    assert emu.insert_card({2: TRACK2}, tag="alice")
    assert not emu.entry_enabled and emu.position == "inside"
    assert emu.card == Card({2: TRACK2}, None, "alice")
    assert transact(ser, *STATUS) == ("P", b"02", b"")
    assert transact(ser, *ENTRY_ON)[:2] == ("P", b"02")
    assert not emu.insert_card({2: TRACK2})  # one card at a time


def test_read_tracks(rig):
    emu, ser = rig
    assert transact(ser, 0x36, 0x32) == ("N", b"02", b"")  # no card
    tracks = {1: "B4999990000000015^TEST/CARD^3012201", 2: TRACK2, 3: "0123456789"}
    card_inside(emu, ser, tracks)
    for n, chars in tracks.items():
        assert transact(ser, 0x36, 0x30 + n) == ("P", b"02", chars.encode()), n


def test_read_missing_track(rig):
    emu, ser = rig
    card_inside(emu, ser, {2: TRACK2})
    assert transact(ser, 0x36, 0x31) == ("N", b"20", b"")
    assert transact(ser, 0x36, 0x33) == ("N", b"20", b"")
    assert emu.position == "inside"


def test_eject_and_take(rig):
    emu, ser = rig
    assert transact(ser, *EJECT) == ("P", b"00", b"")  # nothing to eject
    card_inside(emu, ser, tracks={2: TRACK2})
    assert emu.take_card() is None  # inside: out of reach
    assert transact(ser, *EJECT) == ("P", b"01", b"")
    assert transact(ser, 0x36, 0x32) == ("N", b"02", b"")  # at the gate: not inside
    assert emu.take_card().tracks == {2: TRACK2}
    assert transact(ser, *STATUS) == ("P", b"00", b"")


def test_capture(rig):
    emu, ser = rig
    assert transact(ser, *CAPTURE) == ("P", b"00", b"")
    card_inside(emu, ser)
    assert transact(ser, *CAPTURE) == ("P", b"00", b"")
    card_inside(emu, ser, {1: "A"})
    assert transact(ser, *EJECT)[:2] == ("P", b"01")
    assert transact(ser, *CAPTURE) == ("P", b"00", b"")  # from the gate too
    assert [c.tracks for c in emu.captured] == [{2: TRACK2}, {1: "A"}]
    assert emu.card is None and emu.position == "none"


def test_led(rig):
    emu, ser = rig
    for x, colour in enumerate(("off", "green", "red", "orange")):
        assert transact(ser, 0x35, 0x30 + x) == ("P", b"00", b"")
        assert emu.led == colour


def test_ic_activation(rig):
    emu, ser = rig
    assert transact(ser, *IC_ON) == ("N", b"02", b"")
    card_inside(emu, ser, atr=ATR)
    assert transact(ser, *IC_ON) == ("P", b"02", ATR)
    assert transact(ser, *CAPTURE)[0] == "P"
    card_inside(emu, ser)  # no chip
    assert transact(ser, *IC_ON) == ("N", b"60", b"")


def test_snapshot(rig):
    emu, ser = rig
    card_inside(emu, ser, atr=b"\x3b\x00")
    snap = emu.snapshot()
    assert snap["position"] == "inside" and snap["initialised"] and snap["powered"]
    assert snap["card"] == {"tracks": {2: TRACK2}, "atr": "3b00"}
    assert snap["captured"] == 0 and snap["faults"] == []


# handshake and bad input ----------------------------------------------------------
def test_bad_crc_is_naked_then_resend_works(rig):
    emu, ser = rig
    frame = bytearray(command(*STATUS))
    frame[-1] ^= 0xFF
    ser.write(frame)
    assert ser.read(1) == NAK
    assert quiet(ser, 0.2) == b""
    assert transact(ser, *STATUS) == ("P", b"00", b"")
    assert emu.received == 2


def test_host_nak_gets_the_same_reply_at_most_three_times(rig):
    _, ser = rig
    ser.write(command(*STATUS))
    assert ser.read(1) == ACK
    first = read_reply(ser)
    for _ in range(3):
        ser.write(NAK)
        assert read_reply(ser) == first
    ser.write(NAK)
    assert quiet(ser) == b""  # gave up
    assert transact(ser, *STATUS) == ("P", b"00", b"")


def test_garbage_is_skipped(rig):
    emu, ser = rig
    garbage = b"\x00\x13hello\x06\x15" + b"\xf2\xff\xff" + b"\xf2\x02\x01" + b"\xf2\x00\x02\x43\x31"
    ser.write(garbage + command(*STATUS))
    assert ser.read(1) == ACK
    assert read_reply(ser)[3:8] == b"P1000"
    ser.write(ACK)
    assert quiet(ser, 0.2) == b""
    assert emu.received == 1


def test_truncated_frame_does_not_hang(rig):
    emu, ser = rig
    ser.write(command(*STATUS)[:5])
    assert quiet(ser, 0.5) == b""
    assert transact(ser, *STATUS) == ("P", b"00", b"")
    assert emu._thread.is_alive()


def test_random_bytes_do_not_crash(rig):
    emu, ser = rig
    noise = random.Random(8).randbytes(4000)
    ser.write(noise + b"\xf2\x01\x00" + b"\x00" * 100)  # ends with a frame that never completes
    time.sleep(0.6)
    ser.reset_input_buffer()  # the odd NAK to a chance frame
    assert transact(ser, *STATUS) == ("P", b"00", b"")
    assert emu._thread.is_alive()


def test_wrong_frame_type_is_naked(rig):
    _, ser = rig
    head = bytes.fromhex("F20003503130")  # a 'P' frame sent to the device
    ser.write(head + crc(head).to_bytes(2, "big"))
    assert ser.read(1) == NAK


# faults -----------------------------------------------------------------------------
def test_jam(rig):
    emu, ser = rig
    card_inside(emu, ser)
    emu.inject("jam")
    for cmd in (EJECT, CAPTURE, INIT_TO_GATE, INIT_CAPTURE):
        assert transact(ser, *cmd) == ("N", b"10", b""), cmd
    assert emu.position == "inside" and emu.captured == []
    assert transact(ser, *INIT_NO_MOVE)[:2] == ("P", b"02")
    assert transact(ser, 0x36, 0x32)[0] == "P"  # reading moves nothing
    emu.remove("jam")
    assert transact(ser, *EJECT)[:2] == ("P", b"01")


def test_two_cards(rig):
    emu, ser = rig
    card_inside(emu, ser)
    emu.inject("two_cards")
    assert transact(ser, 0x36, 0x32) == ("N", b"18", b"")
    assert transact(ser, 0x36, 0x32)[0] == "P"  # once
    emu.inject("two_cards")
    assert transact(ser, *EJECT) == ("N", b"18", b"")
    assert emu.position == "inside"
    assert transact(ser, *EJECT)[:2] == ("P", b"01")


def test_read_error(rig):
    emu, ser = rig
    card_inside(emu, ser)
    emu.inject("read_error")
    for _ in range(2):
        assert transact(ser, 0x36, 0x32) == ("N", b"21", b"")
    assert transact(ser, *EJECT)[:2] == ("P", b"01")


@pytest.mark.parametrize("cmd", [(0x36, 0x32), EJECT])
def test_pulled_out(rig, cmd):
    emu, ser = rig
    card_inside(emu, ser)
    emu.inject("pulled_out")
    assert transact(ser, *cmd) == ("N", b"40", b"")
    assert emu.card is None and emu.position == "none" and emu.captured == []
    assert transact(ser, *STATUS) == ("P", b"00", b"")


def test_unknown_fault_is_refused(rig):
    with pytest.raises(ValueError):
        rig[0].inject("fire")


def test_nak_storm(rig):
    emu, ser = rig
    emu.inject("nak_storm")
    ser.write(command(*ENTRY_ON))
    assert ser.read(1) == NAK
    assert quiet(ser, 0.2) == b""
    assert not emu.entry_enabled
    emu.remove("nak_storm")
    assert transact(ser, *ENTRY_ON)[0] == "P"


def test_garbled(rig):
    emu, ser = rig
    emu.inject("garbled")
    ser.write(command(*STATUS))
    wire = ser.read(11)
    clean = bytes(b ^ 0x5A for b in wire)
    assert clean[:1] == ACK and clean[1:4] == b"\xf2\x00\x05"
    assert crc(clean[1:-2]) == int.from_bytes(clean[-2:], "big")
    ser.write(ACK)
    emu.remove("garbled")
    assert transact(ser, *STATUS) == ("P", b"00", b"")


def test_silent(rig):
    emu, ser = rig
    emu.inject("silent")
    ser.write(command(*STATUS))
    assert quiet(ser, 0.7) == b""
    emu.remove("silent")
    assert transact(ser, *STATUS) == ("P", b"00", b"")


# power ------------------------------------------------------------------------------
def test_power_loss_mid_eject(rig):
    emu, ser = rig
    card_inside(emu, ser)
    emu.power_loss(after=1)
    ser.write(command(*EJECT))
    assert ser.read(1) == ACK
    assert quiet(ser) == b""  # no reply
    assert not emu.powered and emu.position == "inside"
    ser.write(command(*STATUS))
    assert quiet(ser) == b""  # unpowered: nothing at all
    emu.power_on()
    assert not emu.initialised and not emu.entry_enabled
    assert transact(ser, *STATUS) == ("N", b"30", b"")  # once
    assert transact(ser, *STATUS) == ("P", b"02", b"")
    assert transact(ser, *EJECT) == ("N", b"B0", b"")
    assert transact(ser, *INIT_NO_MOVE) == ("P", b"02", b"")
    assert transact(ser, *EJECT) == ("P", b"01", b"")


def test_power_loss_at_once_then_initialise_gets_30(rig):
    emu, ser = rig
    emu.power_loss()
    assert not emu.powered
    emu.power_on()
    assert transact(ser, *INIT_NO_MOVE) == ("N", b"30", b"")
    assert not emu.initialised
    assert transact(ser, *INIT_NO_MOVE) == ("P", b"00", b"")


def test_real_baud_timing():
    emu, ser = start(baud=38400, initialised=True)
    try:
        card_inside(emu, ser, {1: "X" * 79})
        began = time.monotonic()
        assert transact(ser, 0x36, 0x31) == ("P", b"02", b"X" * 79)
        # command 8 + ACK 1 + reply 89 + host ACK 1 bytes at 11 bits each
        assert time.monotonic() - began >= 99 * 11 / 38400 * 0.9
    finally:
        ser.close()
        emu.stop()
