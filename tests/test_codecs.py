"""Property tests of the two serial codecs, and of the drivers against a device that talks nonsense.

Any byte string decodes to valid frames or raises ProtocolError, never
anything else; encoding then decoding gives back what went in.
"""

from __future__ import annotations

import os
import threading
import time
import tty

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import ict3q8_codec as ict
from devices import lcdm_codec as lcdm
from devices.base import DeviceContext, DeviceError
from devices.registry import create_device
from devices.serial_link import ProtocolError

FAST = settings(max_examples=400, deadline=None)


# -- known vectors from the protocol facts -------------------------------------
def test_known_frames():
    assert lcdm.encode_command(lcdm.PURGE) == bytes.fromhex("04 50 02 44 03 11")
    assert ict.encode_command(0x31, 0x30) == bytes.fromhex("F2 00 03 43 31 30 C5 2A")


# -- any bytes: frames or ProtocolError ----------------------------------------
@FAST
@given(st.binary(max_size=64))
def test_lcdm_any_bytes_decode_or_raise_protocol_error(data):
    for decode in (lcdm.split_replies, lcdm.decode_reply, lcdm.decode_command):
        try:
            decode(data)
        except ProtocolError:
            pass


@FAST
@given(st.binary(max_size=64))
def test_ict_any_bytes_decode_or_raise_protocol_error(data):
    for decode in (ict.split_replies, ict.decode_reply, ict.decode_command):
        try:
            decode(data)
        except ProtocolError:
            pass


@FAST
@given(st.sampled_from([0x44, 0x46, 0x47, 0x45, 0x55, 0x56, 0x76, 0x77]), st.binary(min_size=21, max_size=21))
def test_lcdm_frames_with_a_valid_header_and_bcc_decode_or_raise(command, body):
    size = lcdm.reply_length(command)
    frame = bytes([lcdm.SOH, 0x50, lcdm.STX, command]) + body[: size - 6] + bytes([lcdm.ETX])
    frame += bytes([lcdm.bcc(frame)])
    try:
        reply = lcdm.decode_reply(frame)
    except ProtocolError:
        return
    assert reply.command == command


# -- round trips -----------------------------------------------------------------
counts = st.integers(1, 60)


@FAST
@given(st.dictionaries(st.sampled_from(["upper", "lower"]), counts, min_size=1), st.booleans())
def test_lcdm_dispense_commands_round_trip(plan, test):
    if test:
        plan = dict([next(iter(plan.items()))])
    frame = lcdm.dispense_command(plan, test=test)
    command, data = lcdm.decode_command(frame)
    positions = lcdm.LCDM2000.dispense_positions(command)
    assert set(positions) == set(plan)
    assert [int(data[i : i + 2]) for i in range(0, len(data), 2)] == [plan[p] for p in positions]


@st.composite
def cassette_counts(draw, position):
    check = draw(st.integers(0, 60))
    out = draw(st.integers(0, check))
    rejects = draw(st.integers(0, check - out))
    return lcdm.CassetteCount(position, check, out, rejects, draw(st.booleans()))


@st.composite
def lcdm_replies(draw):
    command = draw(st.sampled_from([0x44, 0x46, 0x47, 0x45, 0x55, 0x56]))
    error = draw(st.integers(0x30, 0x4E))
    if command == lcdm.PURGE:
        return lcdm.Reply(command, error)
    if command == lcdm.STATUS:
        names = draw(st.sets(st.sampled_from(sorted(lcdm.CHECK_SENSORS.values()))))
        return lcdm.Reply(command, error, sensors=frozenset(names))
    if command == lcdm.ROM_VERSION:
        text = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=4, max_size=4))
        return lcdm.Reply(command, lcdm.GOOD, version=text)
    positions = lcdm.LCDM2000.dispense_positions(command)
    return lcdm.Reply(command, error, counts=tuple(draw(cassette_counts(p)) for p in positions))


@FAST
@given(st.lists(lcdm_replies(), min_size=1, max_size=4))
def test_lcdm_replies_round_trip(replies):
    assert lcdm.split_replies(b"".join(lcdm.encode_reply(r) for r in replies)) == replies


@FAST
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=200))
def test_ict_commands_round_trip(cm, pm, data):
    assert ict.decode_command(ict.encode_command(cm, pm, data)) == (cm, pm, data)


@st.composite
def ict_replies(draw):
    cm, pm = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    if draw(st.booleans()):
        return ict.Reply(
            cm, pm, True, position=draw(st.sampled_from(["none", "gate", "inside"])), data=draw(st.binary(max_size=120))
        )
    return ict.Reply(cm, pm, False, error=draw(st.sampled_from(["00", "10", "18", "21", "40", "60", "B0"])))


@FAST
@given(st.lists(ict_replies(), min_size=1, max_size=4))
def test_ict_replies_round_trip(replies):
    assert ict.split_replies(b"".join(ict.encode_reply(r) for r in replies)) == replies


# -- a damaged byte is always caught ------------------------------------------------
@FAST
@given(lcdm_replies(), st.data())
def test_lcdm_any_single_damaged_byte_is_refused(reply, data):
    frame = bytearray(lcdm.encode_reply(reply))
    i = data.draw(st.integers(0, len(frame) - 1))
    frame[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProtocolError):
        lcdm.decode_reply(bytes(frame))


@FAST
@given(ict_replies(), st.data())
def test_ict_any_single_damaged_byte_is_refused(reply, data):
    frame = bytearray(ict.encode_reply(reply))
    i = data.draw(st.integers(3, len(frame) - 1))  # damage after the length (a bad length is refused too)
    frame[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProtocolError):
        ict.decode_reply(bytes(frame))


# -- drivers against a device that answers random bytes --------------------------------
class Babbler:
    """A pty 'device' that answers every write with bytes from ``answers``."""

    def __init__(self, answers: list[bytes]):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.answers = answers
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import select

        i = 0
        while not self.stop.is_set():
            if select.select([self.master], [], [], 0.02)[0]:
                os.read(self.master, 1024)
                if self.answers:
                    os.write(self.master, self.answers[i % len(self.answers)])
                    i += 1

    def close(self):
        self.stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self._slave)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4), st.sampled_from(["dispenser", "card_reader"])
)
def test_a_device_talking_nonsense_gives_a_fault_never_a_crash_or_a_hang(answers, kind):
    babbler = Babbler(answers)
    scheme = "lcdm2000" if kind == "dispenser" else "ict3q8"
    device = create_device(kind, f"{scheme}://{babbler.port}?ack_timeout=0.05&timeout=0.1&retries=1", DeviceContext())
    started = time.monotonic()
    try:
        device.open()
        device.self_test()
        if kind == "dispenser":
            from devices.dispenser import Cassette

            device.load_cassettes([Cassette("A", 10_000, 100), Cassette("B", 1_000, 100)])
            result = device.dispense({"A": 1})
            assert result.fault_code or result.complete
            assert device.cassette("A").count in (100, 99)
        else:
            try:
                device.read(b"k" * 32)
            except DeviceError as exc:
                assert exc.fault.message
    finally:
        device.close()
        babbler.close()
    assert time.monotonic() - started < 10
