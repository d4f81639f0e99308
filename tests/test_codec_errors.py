"""Issue 11 item 9: each codec raises only its documented error type, whatever it is given.

ProtocolError for devices/lcdm_codec.py and devices/ict3q8_codec.py, TlvError
for devices/tlv.py, ChipReadError for devices/emv/. These are the inputs that
once escaped as KeyError, StopIteration, UnicodeEncodeError, ValueError,
TypeError, OverflowError or MemoryError, or were silently taken.
"""

from __future__ import annotations

import pytest

from devices import emv, tlv
from devices import ict3q8_codec as ict
from devices import lcdm_codec as lcdm
from devices.emv.errors import ChipReadError
from devices.serial_link import ProtocolError

GOOD = lcdm.GOOD
KEY = b"0123456789abcdef"
AIDS = [bytes.fromhex("A0000000031010")]


def cassette(position: str, check: int = 1, out: int = 1, rejects: int = 0) -> lcdm.CassetteCount:
    return lcdm.CassetteCount(position, check, out, rejects, False)


LCDM = {
    "test dispense from an unknown cassette": lambda: lcdm.dispense_command({"middle": 1}, test=True),
    "a fraction of a note": lambda: lcdm.dispense_command({"upper": 1.5}),
    "a note count that is text": lambda: lcdm.dispense_command({"upper": "5"}),
    "a note count that is a bool": lambda: lcdm.dispense_command({"upper": True}),
    "counts that are no table": lambda: lcdm.dispense_command(["upper"]),  # type: ignore[arg-type]
    "a cassette name that is no text": lambda: lcdm.dispense_command({None: 1}, test=True),  # type: ignore[dict-item]
    "a command byte of 300": lambda: lcdm.encode_command(300),
    "a command that is text": lambda: lcdm.encode_command("D"),  # type: ignore[arg-type]
    "command data that is text": lambda: lcdm.encode_command(0x76, "05"),  # type: ignore[arg-type]
    "an error byte of 300": lambda: lcdm.encode_reply(lcdm.Reply(lcdm.STATUS, 300)),
    "a version that is not ASCII": lambda: lcdm.encode_reply(lcdm.Reply(lcdm.ROM_VERSION, GOOD, version="é")),
    "a reply to an unknown command": lambda: lcdm.encode_reply(lcdm.Reply(0x99, GOOD)),
    "a dispense reply without its cassette": lambda: lcdm.encode_reply(lcdm.Reply(0x45, GOOD)),
    "a dispense reply for the wrong cassette": lambda: lcdm.encode_reply(lcdm.Reply(0x45, GOOD, (cassette("lower"),))),
    "a count of 100 notes": lambda: lcdm.encode_reply(lcdm.Reply(0x45, GOOD, (cassette("upper", 100, 0),))),
    "a reply frame that is text": lambda: lcdm.decode_reply("\x01P\x02F"),  # type: ignore[arg-type]
    "a host frame that is None": lambda: lcdm.decode_command(None),  # type: ignore[arg-type]
    "replies that are a list": lambda: lcdm.split_replies([1, 80, 2, 70]),  # type: ignore[arg-type]
    "a reply length for a list": lambda: lcdm.reply_length([0x46]),  # type: ignore[arg-type]
}
ICT = {
    "a positive reply at an unknown position": lambda: ict.encode_reply(ict.Reply(0x31, 0x30, True, position="x")),
    "an error code that is not ASCII": lambda: ict.encode_reply(ict.Reply(0x31, 0x30, False, error="é1")),
    "an error code that is not hex": lambda: ict.encode_reply(ict.Reply(0x31, 0x30, False, error="zz")),
    "a reply CM of 300": lambda: ict.encode_reply(ict.Reply(300, 0x30, False, error="00")),
    "reply data that is text": lambda: ict.encode_reply(ict.Reply(0x31, 0x30, True, "gate", data="x")),  # type: ignore[arg-type]
    "command data that is text": lambda: ict.encode_command(0x31, 0x30, "x"),  # type: ignore[arg-type]
    "a CM that is text": lambda: ict.encode_command("1", 0x30),  # type: ignore[arg-type]
    "a frame that is None": lambda: ict.decode_reply(None),  # type: ignore[arg-type]
    "a command frame that is text": lambda: ict.decode_command("\xf2\x00\x03C10"),  # type: ignore[arg-type]
    "replies that are text": lambda: ict.split_replies("\xf2"),  # type: ignore[arg-type]
    "a header that is None": lambda: ict.frame_length(None),  # type: ignore[arg-type]
}
TLV = {
    "a negative length": lambda: tlv.encode_length(-1),
    "a length that is text": lambda: tlv.encode_length("5"),  # type: ignore[arg-type]
    "a value that is text": lambda: tlv.encode(0x5A, "4111"),  # type: ignore[arg-type]
    "a tag that is a bool": lambda: tlv.encode(True, b""),
    "whether text is constructed": lambda: tlv.tag_constructed("6F"),  # type: ignore[arg-type]
    "an object with a text tag": lambda: tlv.Tlv("6F", b""),  # type: ignore[arg-type]
    "an object with a text value": lambda: tlv.Tlv(0x6F, "x"),  # type: ignore[arg-type]
    "a search among no objects": lambda: tlv.find(None, 0x5A),  # type: ignore[arg-type]
    "a search for every one among no objects": lambda: tlv.find_all(5, 0x5A),  # type: ignore[arg-type]
}


def transmit_sw(sw1: int, sw2: int, data=b""):
    return lambda apdu: (data, sw1, sw2)


EMV = {
    "an AID of 300 bytes": lambda: emv.select(bytes(300)),
    "an AID that is text": lambda: emv.select("A000"),  # type: ignore[arg-type]
    "SFI 99": lambda: emv.read_record(99, 1),
    "record 300": lambda: emv.read_record(1, 300),
    "a DOL length of -1": lambda: emv.dol_data([(0x9F02, -1)], {}),
    "a DOL length of 10^20": lambda: emv.dol_data([(0x9F02, 10**20)], {}),
    "a DOL tag that is text": lambda: emv.dol_data([("9F02", 6)], {}),  # type: ignore[list-item]
    "a terminal value that is text": lambda: emv.dol_data([(0x9F02, 6)], {0x9F02: "000000"}),  # type: ignore[dict-item]
    "an AFL that is text": lambda: emv.afl_entries("0801"),  # type: ignore[arg-type]
    "a card asking for Le 300": lambda: emv.exchange(transmit_sw(0x6C, 300), emv.select(b"1PAY.SYS.DDF01")),
    "a card answering GET RESPONSE 300": lambda: emv.exchange(transmit_sw(0x61, 300), emv.select(b"A0000")),
    "a card answering None": lambda: emv.exchange(transmit_sw(0x90, 0, None), emv.select(b"A0000")),
    "a card answering sw1 -1": lambda: emv.exchange(transmit_sw(-1, 0), emv.select(b"A0000")),
    "a card answering text": lambda: emv.read_card(transmit_sw(0x90, 0, "6F00"), KEY, AIDS, "250101"),
    "a card answering no tuple": lambda: emv.read_card(lambda apdu: None, KEY, AIDS, "250101"),
    "a fallback AID that is text": lambda: emv.read_card(transmit_sw(0x6A, 0x82), KEY, ["A0"], "250101"),  # type: ignore[list-item]
}


@pytest.mark.parametrize(
    "case", [pytest.param(f, id=n) for n, f in LCDM.items()] + [pytest.param(f, id=n) for n, f in ICT.items()]
)
def test_the_serial_codecs_raise_only_protocol_error(case):
    with pytest.raises(ProtocolError):
        case()


@pytest.mark.parametrize("case", [pytest.param(f, id=n) for n, f in TLV.items()])
def test_tlv_raises_only_tlv_error(case):
    with pytest.raises(tlv.TlvError):
        case()


@pytest.mark.parametrize("case", [pytest.param(f, id=n) for n, f in EMV.items()])
def test_emv_raises_only_chip_read_error(case):
    with pytest.raises(ChipReadError) as err:
        case()
    assert err.value.code == "malformed"


def test_every_reply_that_encodes_decodes_to_itself():
    for reply in (
        lcdm.Reply(0x45, GOOD, (cassette("upper", 3, 2, 1),)),
        lcdm.Reply(0x56, GOOD, (cassette("upper"), cassette("lower"))),
        lcdm.Reply(lcdm.STATUS, GOOD, sensors=frozenset({"chk1"})),
        lcdm.Reply(lcdm.ROM_VERSION, GOOD, version="V1.0"),
    ):
        assert lcdm.decode_reply(lcdm.encode_reply(reply)) == reply
