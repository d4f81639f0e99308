"""The ICT3Q8 driver against the rig's card reader (``--rig``; default: the emulator)."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
import serial

from devices.base import DeviceContext, DeviceError, DeviceStatus
from devices.card_reader import CardPosition
from devices.registry import create_device
from hw_mocks.cards import CARDS
from hw_mocks.ict3q8_emulator import Ict3q8Emulator
from tests.helpers import advance

KEY = b"k" * 32


@pytest.fixture
def reader(rig_device, ctx):
    def make(emulator=True, **params):
        device = rig_device("card_reader", emulator=emulator, ctx=ctx, **params)
        device.open()
        return device

    return make


def insert(r, ctx, card="domestic"):
    r.enable_entry()
    assert r.customer_insert(CARDS[card])
    advance(ctx)
    assert r.position is CardPosition.INSIDE


def test_initialise_status_and_led(reader):
    r = reader(emulator=False)
    assert r.self_test() is DeviceStatus.ONLINE and r.position is CardPosition.NONE
    r.set_led("green")
    with pytest.raises(ValueError):
        r.set_led("purple")


def test_a_card_goes_in_is_read_and_comes_back_out(reader, ctx):
    r = reader()
    insert(r, ctx)
    assert ctx.emit.names() == ["inserted"] and not r.entry_enabled
    card = r.read(KEY)
    assert card.masked == "499999******0015" and card.source == "magstripe" and card.expiry == "3012"
    assert r.activate_contacts() == bytes.fromhex("3B6800000073C84013009000")
    r.eject()
    assert r.position is CardPosition.GATE and ctx.emit.names()[-1] == "at_gate"
    advance(ctx)
    assert ctx.emit.names()[-1] == "at_gate"  # still there: no "taken" yet
    assert r.customer_take() == CARDS["domestic"]
    advance(ctx)
    assert ctx.emit.names() == ["inserted", "at_gate", "taken"] and r.position is CardPosition.NONE


def test_entry_disabled_keeps_the_shutter_closed(reader, ctx):
    r = reader()
    r.disable_entry()
    assert not r.customer_insert(CARDS["domestic"])


def test_capture_keeps_the_card(reader, ctx):
    r = reader()
    insert(r, ctx)
    r.capture()
    assert r.captured == [CARDS["domestic"]] and r.position is CardPosition.NONE
    assert ctx.emit.names()[-1] == "captured"


def test_a_card_without_a_chip_gives_an_icc_fault(reader, ctx):
    r = reader()
    insert(r, ctx, "magstripe")
    with pytest.raises(DeviceError) as err:
        r.activate_contacts()
    assert err.value.fault.code == "icc_error"
    assert r.status is DeviceStatus.ONLINE  # a warning about this card, not a broken reader


@pytest.mark.parametrize(
    "fault, action, code, position",
    [
        ("jam", "eject", "jam", CardPosition.JAMMED),
        ("two_cards", "eject", "two_cards", CardPosition.INSIDE),
        ("read_error", "read", "read_error", CardPosition.INSIDE),
        ("pulled_out", "read", "card_pulled_out", CardPosition.NONE),
    ],
)
def test_reader_errors_become_faults(reader, ctx, fault, action, code, position):
    r = reader()
    insert(r, ctx)
    r.inject(fault)
    with pytest.raises(DeviceError) as err:
        r.read(KEY) if action == "read" else r.eject()
    assert err.value.fault.code == code and code in r.faults
    assert r.position is position


def test_a_jam_clears_when_the_transport_moves_again(reader, ctx):
    r = reader()
    insert(r, ctx)
    r.inject("jam")
    with pytest.raises(DeviceError):
        r.eject()
    assert r.self_test() is DeviceStatus.HARDWARE_ERROR
    r.remove("jam")
    assert r.self_test() is DeviceStatus.ONLINE and r.position is CardPosition.GATE


@pytest.mark.parametrize(
    "fault, code", [("nak_storm", "bad_reply"), ("garbled", "bad_reply"), ("silent", "no_response")]
)
def test_a_broken_link_is_a_fault_with_a_clear_message(reader, fault, code):
    r = reader(ack_timeout=0.1)
    r.inject(fault)
    assert r.self_test() is DeviceStatus.HARDWARE_ERROR
    assert r.faults[code].message.startswith("ICT3Q8 on /dev/")
    r.remove(fault)
    assert r.self_test() is DeviceStatus.ONLINE and not r.faults


def test_after_a_power_loss_the_driver_reinitialises_and_carries_on(reader, ctx):
    r = reader(ack_timeout=0.1)
    insert(r, ctx)
    r.emulator.power_loss(after=1)
    with pytest.raises(DeviceError) as err:
        r.eject()
    assert err.value.fault.code == "no_response"
    r.emulator.power_on()
    r.eject()  # the reader answers "30" then "B0": the driver initialises and resends
    assert r.position is CardPosition.GATE and not r.faults


def test_trace_hides_the_track_data(reader, ctx, caplog):
    r = reader(trace=1)
    insert(r, ctx)
    with caplog.at_level(logging.INFO, logger="atm.serial"):
        r.read(KEY)
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "ICT3Q8 > f2 00 03 43 36 32" in text and "bytes of track data" in text
    pan = CARDS["domestic"].pan
    assert pan not in text and pan.encode().hex(" ") not in text and pan[:8].encode().hex(" ") not in text


def test_bad_locator_options_are_named():
    for text, words in [
        ("ict3q8:///dev/null?baud=fast", "baud"),
        ("ict3q8:///dev/null?init=drop", "init"),
        ("ict3q8:///dev/null?bogus=1", "bogus"),
        ("ict3q8://", "no serial port"),
    ]:
        with pytest.raises(ValueError, match=words):
            create_device("card_reader", text, DeviceContext())


def test_a_missing_port_leaves_the_reader_offline_with_a_fault():
    r = create_device("card_reader", "ict3q8:///dev/ttyNOPE9", DeviceContext())
    r.open()
    assert r.status is DeviceStatus.OFFLINE and "port_unavailable" in r.faults
    with pytest.raises(DeviceError):
        r.enable_entry()


def test_the_driver_works_over_a_socket_url():
    """Any pyserial URL works: here socket:// to a TCP bridge in front of the emulator."""
    with Ict3q8Emulator(initialised=True) as emu, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def bridge():
            conn, _ = server.accept()
            line = serial.Serial(emu.port, 38400, timeout=0.01)
            conn.settimeout(0.01)
            try:
                while True:
                    try:
                        data = conn.recv(256)
                        if not data:
                            return
                        line.write(data)
                    except TimeoutError:
                        pass
                    back = line.read(256)
                    if back:
                        conn.sendall(back)
            finally:
                line.close()
                conn.close()

        thread = threading.Thread(target=bridge, daemon=True)
        thread.start()
        r = create_device("card_reader", f"ict3q8://socket://127.0.0.1:{port}", DeviceContext())
        r.open()
        try:
            assert r.self_test() is DeviceStatus.ONLINE and r.position is CardPosition.NONE
        finally:
            r.close()
        thread.join(timeout=2)


@pytest.mark.hil("card_reader")
def test_real_reader_initialises_and_blinks(reader):
    r = reader(emulator=False)
    assert r.self_test() is DeviceStatus.ONLINE, r.describe()["faults"]
    for colour in ("green", "orange", "red", "off"):
        r.set_led(colour)
