"""BER-TLV and the EMV contact reader against a dict-driven fake card.

TLV: known vectors, every malformed input is a TlvError (never another
exception), encode/parse round trips. Reader: application selection (PSE
priority, list of AIDs), PDOL, both GPO formats, 61xx/6Cxx, every error code,
and the card number never showing in an error.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import emv, tlv
from devices.emv import CardMute, CardRemoved, ChipReadError, exchange, read_card
from devices.tlv import TlvError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
E = tlv.encode
KEY = b"k" * 32
TODAY = "250601"
DOMESTIC = "4999990000000015"
OVERSEAS = "5432100000000005"
VISA = bytes.fromhex("A0000000031010")
MASTER = bytes.fromhex("A0000000041010")
JCB = bytes.fromhex("A0000000651010")
PSE = b"1PAY.SYS.DDF01"
NO_PDOL_GPO = bytes.fromhex("80A8000002830000")


# -- TLV ------------------------------------------------------------------------------
# A Visa FCI: 84 DF name, A5 with 50 label, 87 priority, 9F38 PDOL, 5F2D language.
VISA_FCI = bytes.fromhex(
    "6F2E 8407A0000000031010 A523 500B5649534120435245444954 8701019F38099F1A029F37045F2A02 5F2D046A61656E"
)


def test_known_fci():
    [fci] = tlv.parse(VISA_FCI)
    assert fci.tag == 0x6F and fci.constructed
    assert [t.tag for t in fci.children] == [0x84, 0xA5]
    assert tlv.find([fci], 0x84).value == VISA
    assert tlv.find([fci], 0x50).value == b"VISA CREDIT"
    pdol = tlv.find([fci], 0x9F38)
    assert not pdol.constructed and pdol.value == bytes.fromhex("9F1A029F37045F2A02")
    assert tlv.parse_dol(pdol.value) == [(0x9F1A, 2), (0x9F37, 4), (0x5F2A, 2)]
    assert tlv.find([fci], 0x5F2D).value == b"jaen"
    assert tlv.find([fci], 0x5A) is None
    assert "VISA" not in repr(fci)  # reprs show tags and lengths, never values


def test_multibyte_tags_and_long_lengths():
    assert E(0x5F24, bytes.fromhex("271231")) == bytes.fromhex("5F2403271231")
    assert E(0x9F38, b"") == bytes.fromhex("9F3800")
    assert E(0xDF8101, b"\x01") == bytes.fromhex("DF81010101")  # 3-byte tag
    long1, long2 = E(0x9F4B, b"\x01" * 200), E(0x70, E(0x9F4B, b"\x02" * 300))
    assert long1[:4] == bytes.fromhex("9F4B81C8")
    assert long2[:4] == bytes.fromhex("70820131") and long2[4:8] == bytes.fromhex("9F4B8201")
    [a] = tlv.parse(long1)
    assert a.value == b"\x01" * 200 and a.children == ()
    [b] = tlv.parse(long2)
    assert tlv.find([b], 0x9F4B).value == b"\x02" * 300
    [c] = tlv.parse(bytes.fromhex("5A83000003") + b"\x12\x34\x56")
    assert c.value == bytes.fromhex("123456")


def test_nested_find_is_depth_first():
    data = E(0x70, E(0x61, E(0x4F, b"first") + E(0x61, E(0x4F, b"inner"))) + E(0x4F, b"later"))
    tlvs = tlv.parse(data)
    assert tlv.find(tlvs, 0x4F).value == b"first"
    assert [t.value for t in tlv.find_all(tlvs, 0x4F)] == [b"first", b"inner", b"later"]
    assert [t.tag for t in tlv.find_all(tlvs, 0x61)] == [0x61, 0x61]


def test_padding_is_skipped():
    data = b"\x00\x00" + E(0x5A, b"\x12") + b"\xff\xff\x00" + E(0x70, b"\x00" + E(0x50, b"L") + b"\xff") + b"\x00"
    tlvs = tlv.parse(data)
    assert [t.tag for t in tlvs] == [0x5A, 0x70]
    assert [t.tag for t in tlvs[1].children] == [0x50]
    assert tlv.parse(b"\x00\xff") == []


@pytest.mark.parametrize(
    "data",
    [
        "9F",
        "9F9F",
        "5A",
        "5A0501",
        "5A81",
        "5A8201",
        "5A8101",
        "5A80",
        "5A8400000001FF",
        "700301020304",
        "70035A0501",
        "7002 5A",
        "9FFFFFFF7F0100",  # 5-byte tag
    ],
)
def test_malformed_tlv_raises_tlverror(data):
    with pytest.raises(TlvError):
        tlv.parse(bytes.fromhex(data.replace(" ", "")))


def test_nesting_is_bounded():
    inner = E(0x5A, b"\x01")
    for _ in range(10):
        inner = E(0x70, inner)
    assert tlv.find(tlv.parse(inner), 0x5A).value == b"\x01"
    deep = b""
    for _ in range(200):
        deep = E(0x70, deep)
    with pytest.raises(TlvError, match="nested"):
        tlv.parse(deep)


def test_parse_dol():
    assert tlv.parse_dol(b"") == []
    assert tlv.parse_dol(bytes.fromhex("9F6604 9F0206 9C01 DF810103".replace(" ", ""))) == [
        (0x9F66, 4),
        (0x9F02, 6),
        (0x9C, 1),
        (0xDF8101, 3),
    ]
    for bad in ("9F", "9F66", "9C019F02", "9F8080808001"):
        with pytest.raises(TlvError):
            tlv.parse_dol(bytes.fromhex(bad))


@pytest.mark.parametrize("tag", [0, -1, 0x1F, 0x9F, 0xFF, 0x5A5A, 0x9F80, 0x9F8080808001])
def test_encode_refuses_bad_tags(tag):
    with pytest.raises(TlvError):
        E(tag, b"")


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_tlverror(data):
    try:
        out = tlv.parse(data)
    except TlvError:
        return
    assert isinstance(out, list)


@FAST
@given(st.binary(max_size=200), st.integers(0, 199), st.integers(0, 255))
def test_mutated_encodings_parse_or_tlverror(payload, where, byte):
    data = bytearray(E(0x70, E(0x61, E(0x4F, payload[:16]) + E(0x9F38, payload[16:])) + E(0x5A, payload[:8])))
    data[where % len(data)] = byte
    for cut in (len(data), len(data) // 2):
        try:
            tlv.parse(bytes(data[:cut]))
        except TlvError:
            pass
    try:
        tlv.parse_dol(payload)
    except TlvError:
        pass


def _tag(constructed: bool):
    flag = 0x20 if constructed else 0
    one = st.integers(0, 0xFF).filter(lambda b: b & 0x1F != 0x1F and b not in (0, 0xFF) and b & 0x20 == flag)
    multi = st.tuples(
        st.sampled_from([0x1F, 0x5F, 0x9F, 0xDF, 0x3F, 0x7F, 0xBF]).filter(lambda b: b & 0x20 == flag),
        st.lists(st.integers(0x80, 0xFF), max_size=1),
        st.integers(0x01, 0x7F),
    ).map(lambda t: int.from_bytes(bytes([t[0], *t[1], t[2]]), "big"))
    return st.one_of(one, multi)


_trees = st.recursive(
    st.tuples(_tag(False), st.binary(max_size=40)),
    lambda kids: st.tuples(_tag(True), st.lists(kids, max_size=4)),
    max_leaves=12,
)


def _encode_tree(node) -> bytes:
    tag, body = node
    return E(tag, body if isinstance(body, bytes) else b"".join(_encode_tree(k) for k in body))


def _check_tree(node, parsed: tlv.Tlv):
    tag, body = node
    assert parsed.tag == tag
    if isinstance(body, bytes):
        assert not parsed.constructed and parsed.value == body
    else:
        assert parsed.constructed and len(parsed.children) == len(body)
        for kid, got in zip(body, parsed.children):
            _check_tree(kid, got)


@FAST
@given(st.lists(_trees, max_size=4))
def test_encode_parse_round_trip(trees):
    parsed = tlv.parse(b"".join(_encode_tree(t) for t in trees))
    assert len(parsed) == len(trees)
    for tree, got in zip(trees, parsed):
        _check_tree(tree, got)


# -- a fake card ------------------------------------------------------------------------
def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


class FakeCard:
    """Answers each command APDU (or CLA INS) from ``answers``: a (data, sw) pair, a list of them
    (consumed in order, the last one repeats), an exception to raise, or a callable
    taking the APDU. Unknown SELECTs get 6A82, unknown READ RECORDs 6A83, the rest 6D00."""

    def __init__(self, answers: dict[bytes, object]):
        self.answers = dict(answers)
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes):
        self.sent.append(apdu)
        answer = self.answers.get(apdu, self.answers.get(apdu[:2]))  # exact, else by CLA INS
        if answer is None:
            answer = (b"", {0xA4: 0x6A82, 0xB2: 0x6A83}.get(apdu[1], 0x6D00))
        if callable(answer):
            answer = answer(apdu)
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        data, sw = answer
        return data, sw >> 8, sw & 0xFF


def app_fci(aid: bytes, label: bytes = b"", pdol: bytes | None = None) -> bytes:
    a5 = (E(0x50, label) if label else b"") + (E(0x9F38, pdol) if pdol is not None else b"")
    return E(0x6F, E(0x84, aid) + E(0xA5, a5))


def pse_fci(sfi: int = 1) -> bytes:
    return E(0x6F, E(0x84, PSE) + E(0xA5, E(0x88, bytes([sfi])) + E(0x5F2D, b"jaen")))


def dir_entry(aid: bytes, label: bytes, priority: int | None) -> bytes:
    return E(0x61, E(0x4F, aid) + E(0x50, label) + (E(0x87, bytes([priority])) if priority is not None else b""))


def card_records(
    pan: str = DOMESTIC,
    expiry: str = "271231",
    country: str = "0392",
    service: str = "201",
    track2_pan: str | None = None,
) -> list[bytes]:
    t2 = (track2_pan or pan) + "D" + expiry[:4] + service + "1234500000"
    return [
        E(0x70, E(0x57, bcd(t2)) + E(0x5F20, b"TARO/YAMADA")),
        E(
            0x70,
            E(0x5A, bcd(pan))
            + E(0x5F24, bytes.fromhex(expiry))
            + E(0x5F28, bytes.fromhex(country))
            + E(0x5F30, bytes.fromhex("0" + service)),
        ),
    ]


def gpo_format1(afl: bytes = bytes.fromhex("08010200")) -> bytes:
    return E(0x80, bytes.fromhex("1800") + afl)


def gpo_format2(afl: bytes = bytes.fromhex("08010200")) -> bytes:
    return E(0x77, E(0x82, bytes.fromhex("1800")) + E(0x94, afl))


def one_app_card(
    aid: bytes = VISA,
    label: bytes = b"VISA",
    pdol: bytes | None = None,
    gpo: bytes | None = None,
    records: list[bytes] | None = None,
    pse: bool = False,
    **rec,
) -> dict[bytes, object]:
    """An answer table for a card with one application, records in SFI 1."""
    answers: dict[bytes, object] = {
        emv.select(aid): (app_fci(aid, label, pdol), 0x9000),
    }
    records = records if records is not None else card_records(**rec)
    answers[NO_PDOL_GPO] = (gpo if gpo is not None else gpo_format1(bytes([0x08, 1, len(records), 0])), 0x9000)
    for i, record in enumerate(records, start=1):
        answers[emv.read_record(1, i)] = (record, 0x9000)
    if pse:
        answers[emv.select(PSE)] = (pse_fci(2), 0x9000)
        answers[emv.read_record(2, 1)] = (E(0x70, dir_entry(aid, label, 1)), 0x9000)
    return answers


def read(card: FakeCard, fallback=(VISA, MASTER), **kw):
    return read_card(card, KEY, list(fallback), TODAY, **kw)


def fails(card: FakeCard, code: str, fallback=(VISA, MASTER), **kw) -> ChipReadError:
    with pytest.raises(ChipReadError) as info:
        read(card, fallback, **kw)
    err = info.value
    assert err.code == code, str(err)
    assert_clean(err)
    return err


def assert_clean(err: ChipReadError):
    """The error shows no card number (nor so track data), however it is printed."""
    shown = " ".join((str(err), repr(err), repr(err.args), repr(err.card), repr(err.__cause__)))
    for pan in (DOMESTIC, OVERSEAS):
        assert pan not in shown and pan[4:] not in shown


# -- reading -----------------------------------------------------------------------------
def test_reads_a_domestic_card_without_pse():
    card = FakeCard(one_app_card())
    data = read(card)
    assert card.sent[0] == emv.select(PSE)
    assert data.masked == "499999******0015" and data.last4 == "0015"
    assert (data.expiry, data.service_code, data.country, data.label, data.aid, data.source) == (
        "2712",
        "201",
        "0392",
        "VISA",
        "A0000000031010",
        "chip",
    )
    assert DOMESTIC not in repr(data)


def test_pse_with_two_apps_picks_by_priority():
    answers = {
        emv.select(PSE): (pse_fci(2), 0x9000),
        emv.read_record(2, 1): (E(0x70, dir_entry(JCB, b"JCB", None) + dir_entry(MASTER, b"MC", 2)), 0x9000),
        # 81: priority 1 with the cardholder-confirmation bit, which does not count for sorting
        emv.read_record(2, 2): (E(0x70, dir_entry(VISA, b"VISA DEBIT", 0x81)), 0x9000),
        **one_app_card(MASTER, b"", pan=OVERSEAS, country="0840"),
    }
    card = FakeCard(answers)
    # VISA (1) before MASTER (2) before JCB (none); VISA is listed but answers 6A82 on select
    data = read(card, fallback=[JCB])
    selects = [a for a in card.sent if a[1] == 0xA4]
    assert selects == [emv.select(PSE), emv.select(VISA), emv.select(MASTER)]
    assert data.aid == "A0000000041010" and data.label == "MC"  # label from the directory
    assert data.country == "0840" and data.last4 == "0005"


def test_pse_priority_chooses_the_best_app():
    answers = one_app_card(VISA, b"VISA")
    answers[emv.select(PSE)] = (pse_fci(1), 0x9000)
    answers[emv.read_record(1, 1)] = (E(0x70, dir_entry(MASTER, b"MC", 3) + dir_entry(VISA, b"V", 2)), 0x9000)
    answers[emv.select(MASTER)] = (app_fci(MASTER), 0x9000)
    data = read(FakeCard(answers))
    assert data.aid == "A0000000031010"


def test_no_pse_falls_back_to_the_aid_list_in_order():
    card = FakeCard(one_app_card(MASTER, b"MASTERCARD", pan=OVERSEAS))
    data = read(card, fallback=[JCB, VISA, MASTER])
    assert [a for a in card.sent if a[1] == 0xA4] == [emv.select(x) for x in (PSE, JCB, VISA, MASTER)]
    assert data.label == "MASTERCARD" and data.masked == "543210******0005"


def test_empty_pse_directory_falls_back_to_the_aid_list():
    answers = one_app_card()
    answers[emv.select(PSE)] = (pse_fci(1), 0x9000)
    assert read(FakeCard(answers)).aid == "A0000000031010"


def test_blocked_pse_falls_back_to_the_aid_list():
    answers = one_app_card()
    answers[emv.select(PSE)] = (b"", 0x6283)
    assert read(FakeCard(answers)).aid == "A0000000031010"


def test_no_application():
    err = fails(FakeCard({}), "no_application")
    assert "A0000000031010" in str(err) and "6A82" in str(err)
    fails(FakeCard({}), "no_application", fallback=[])


def test_pdol_is_built_with_the_asked_lengths():
    pdol = bytes.fromhex("9F6604 9F0206 9F3704 5F2A01 9A03 9F1A03 9501 9C01 DF7F02 9F6602".replace(" ", ""))
    answers = one_app_card(pdol=pdol)
    answers[b"\x80\xa8"] = answers.pop(NO_PDOL_GPO)  # any GPO
    card = FakeCard(answers)
    data = read_card(card, KEY, [VISA], TODAY, terminal={0x9F37: bytes.fromhex("CAFEBABE")})
    assert data.last4 == "0015"
    expected = (
        bytes.fromhex("14C00000")  # 9F66 TTQ
        + bytes(6)  # 9F02 amount
        + bytes.fromhex("CAFEBABE")  # 9F37 from terminal=
        + bytes.fromhex("92")  # 5F2A 0392 asked in 1 byte: numeric, cut on the left
        + bytes.fromhex("250601")  # 9A today
        + bytes.fromhex("000392")  # 9F1A in 3 bytes: numeric, padded on the left
        + bytes.fromhex("00")  # 95 TVR in 1 byte: binary, cut on the right
        + bytes.fromhex("00")  # 9C
        + bytes(2)  # DF7F unknown: zeros
        + bytes.fromhex("14C0")
    )  # 9F66 in 2 bytes: binary, cut on the right
    body = b"\x83" + bytes([len(expected)]) + expected
    [gpo] = [a for a in card.sent if a[:2] == b"\x80\xa8"]
    assert gpo == bytes.fromhex("80A80000") + bytes([len(body)]) + body + b"\x00"


def test_unpredictable_number_is_fresh():
    answers = one_app_card(pdol=bytes.fromhex("9F3704"))
    answers[b"\x80\xa8"] = answers.pop(NO_PDOL_GPO)
    card = FakeCard(answers)
    read(card)
    read(card)
    gpos = [a for a in card.sent if a[:2] == b"\x80\xa8"]
    assert len(gpos) == 2 and len(gpos[0]) == 4 + 1 + 2 + 4 + 1 and gpos[0] != gpos[1]


def test_dol_padding_rules():
    values = {0x9F02: b"\x01\x00", 0x9F4E: b"ATM", 0x9F1A: bytes.fromhex("0392")}
    assert emv.dol_data([(0x9F02, 6), (0x9F4E, 5), (0x9F1A, 1), (0x70, 2)], values) == (
        bytes.fromhex("000000000100") + b"ATM\x00\x00" + b"\x92" + b"\x00\x00"
    )


def test_pdol_too_long_is_malformed():
    fails(FakeCard(one_app_card(pdol=bytes.fromhex("DF01FF DF02FF".replace(" ", "")))), "malformed")


@pytest.mark.parametrize("gpo", [gpo_format1(), gpo_format2()], ids=["format1", "format2"])
def test_gpo_formats(gpo):
    card = FakeCard(one_app_card(gpo=gpo))
    assert read(card).last4 == "0015"
    assert emv.read_record(1, 2) in card.sent and emv.read_record(1, 3) not in card.sent


def test_overseas_card_in_format2_with_two_afl_entries():
    recs = card_records(pan=OVERSEAS, country="0840", service="101")
    answers = one_app_card(MASTER, gpo=gpo_format2(bytes.fromhex("0801010118010100")), records=[recs[0]])
    answers[emv.read_record(3, 1)] = (recs[1], 0x9000)
    data = read(FakeCard(answers))
    assert (data.country, data.service_code, data.last4) == ("0840", "101", "0005")


def test_sfi_11_to_30_records_are_not_parsed():
    answers = one_app_card(gpo=gpo_format1(bytes.fromhex("08010200 58010101")))
    answers[emv.read_record(11, 1)] = (b"\x9f", 0x9000)  # issuer format, not TLV
    assert read(FakeCard(answers)).last4 == "0015"


def test_track2_only_card():
    t2 = bcd(DOMESTIC + "D2712201" + "99")
    data = read(FakeCard(one_app_card(records=[E(0x70, E(0x57, t2))])))
    assert (data.expiry, data.service_code, data.country) == ("2712", "201", "")


def test_61xx_chunks_and_6cxx_resend():
    answers = one_app_card()
    fci = answers[emv.select(VISA)][0]
    answers[emv.select(VISA)] = (b"", 0x6110)
    answers[emv.GET_RESPONSE + b"\x10"] = (fci[:10], 0x6100 | (len(fci) - 10))
    answers[emv.GET_RESPONSE + bytes([len(fci) - 10])] = (fci[10:], 0x9000)
    record2 = answers[emv.read_record(1, 2)][0]
    answers[emv.read_record(1, 2)] = (b"", 0x6C00 | len(record2))
    answers[emv.read_record(1, 2)[:4] + bytes([len(record2)])] = (record2, 0x9000)
    card = FakeCard(answers)
    assert read(card).last4 == "0015"
    assert emv.read_record(1, 2)[:4] + bytes([len(record2)]) in card.sent


def test_exchange_directly():
    card = FakeCard(
        {
            b"\x00\xb2\x01\x0c\x00": (b"", 0x6C05),
            b"\x00\xb2\x01\x0c\x05": (b"ab", 0x6103),
            b"\x00\xc0\x00\x00\x03": (b"cde", 0x9000),
        }
    )
    assert exchange(card, b"\x00\xb2\x01\x0c\x00") == (b"abcde", 0x9000)
    assert exchange(FakeCard({}), b"\x00\xca\x9f\x17\x00") == (b"", 0x6D00)
    # 6Cxx on a case 4 command replaces Le; on a case 3 command adds it
    seen = FakeCard(
        {
            b"\x80\xa8\x00\x00\x02\x83\x00\x00": (b"", 0x6C10),
            b"\x80\xa8\x00\x00\x02\x83\x00\x10": (b"x", 0x9000),
            b"\x00\x20\x00\x80\x01\x00": (b"", 0x6C08),
            b"\x00\x20\x00\x80\x01\x00\x08": (b"", 0x9000),
        }
    )
    assert exchange(seen, b"\x80\xa8\x00\x00\x02\x83\x00\x00") == (b"x", 0x9000)
    assert exchange(seen, b"\x00\x20\x00\x80\x01\x00") == (b"", 0x9000)
    # pyscard gives lists of ints
    assert exchange(lambda apdu: ([0x6F, 0x00], 0x90, 0x00), b"\x00\xa4\x04\x00\x00") == (b"\x6f\x00", 0x9000)


@pytest.mark.parametrize("sw", [0x61FF, 0x6C10, 0x6100])
def test_a_card_looping_on_61_or_6c_is_bounded(sw):
    sent = []

    def looping(apdu):
        sent.append(apdu)
        return b"\x00", sw >> 8, sw & 0xFF

    with pytest.raises(ChipReadError) as info:
        read_card(looping, KEY, [VISA], TODAY)
    assert info.value.code == "malformed" and "32 rounds" in str(info.value)
    assert len(sent) == emv.MAX_ROUNDS


def test_blocked_app_moves_to_the_next():
    answers = one_app_card(MASTER, pan=OVERSEAS)
    answers[emv.select(VISA)] = (b"", 0x6283)
    assert read(FakeCard(answers), fallback=[VISA, MASTER]).aid == "A0000000041010"


def test_all_apps_blocked():
    answers = {
        emv.select(VISA): (b"", 0x6283),
        emv.select(PSE): (pse_fci(1), 0x9000),
        emv.read_record(1, 1): (E(0x70, dir_entry(VISA, b"V", 1) + dir_entry(MASTER, b"M", 2)), 0x9000),
    }
    err = fails(FakeCard(answers), "blocked")
    assert "A0000000031010: blocked (6283)" in str(err) and "A0000000041010: not found (6A82)" in str(err)


@pytest.mark.parametrize("where", ["pse", "app"])
def test_6a81_means_the_card_is_blocked(where):
    answers = one_app_card()
    answers[emv.select(PSE if where == "pse" else VISA)] = (b"", 0x6A81)
    err = fails(FakeCard(answers), "blocked")
    assert "6A81" in str(err)


def test_gpo_6985_drops_the_app():
    answers = one_app_card(MASTER, pan=OVERSEAS)
    answers[emv.select(VISA)] = (app_fci(VISA, pdol=bytes.fromhex("9F1A02")), 0x9000)
    visa_gpo = bytes.fromhex("80A80000048302039200")
    answers[visa_gpo] = (b"", 0x6985)
    card = FakeCard(answers)
    assert read(card, fallback=[VISA, MASTER]).aid == "A0000000041010"
    assert visa_gpo in card.sent
    del answers[emv.select(MASTER)]
    err = fails(FakeCard(answers), "no_application", fallback=[VISA, MASTER])
    assert "not accepted (6985)" in str(err)


def test_expired_card_carries_the_card():
    err = fails(FakeCard(one_app_card(expiry="250531")), "expired")
    assert err.card.masked == "499999******0015" and err.card.last4 == "0015" and err.card.expiry == "2505"
    assert len(err.card.token) == 64
    clone = pickle.loads(pickle.dumps(err))  # the card stays behind
    assert clone.code == "expired" and clone.card is None


def test_expiry_century_window():
    assert read(FakeCard(one_app_card(expiry="250630"))).expiry == "2506"  # this month: still valid
    assert read(FakeCard(one_app_card(expiry="490101"))).expiry == "4901"  # 2049
    fails(FakeCard(one_app_card(expiry="991231")), "expired")  # 1999


@pytest.mark.parametrize(
    "records",
    [
        [b"\x70\x05\x5a\x08\x49\x99"],  # truncated TLV
        [E(0x70, E(0x5F24, bytes.fromhex("271231")))],  # no PAN at all
        card_records(track2_pan=OVERSEAS),  # 5A and 57 disagree
        [E(0x70, E(0x5A, bcd("4999990000000016")) + E(0x5F24, bytes.fromhex("271231")))],  # Luhn
        [E(0x70, E(0x5A, bcd(DOMESTIC)) + E(0x5F24, bytes.fromhex("271331")))],  # month 13
        [E(0x70, E(0x5A, bcd(DOMESTIC)))],  # no expiry
        [E(0x70, E(0x5A, bcd(DOMESTIC)) + E(0x5F24, bytes.fromhex("2712")))],  # short expiry
        [E(0x70, E(0x5A, bcd(DOMESTIC)) + E(0x5F24, bytes.fromhex("271231")) + E(0x5F28, b"\x03\x9a"))],
        [E(0x70, E(0x57, bytes.fromhex("4999990000000015F2712201")))],  # no separator
        [E(0x61, E(0x5A, bcd(DOMESTIC)))],  # not a 70 record
        [E(0x70, E(0x5A, bcd(DOMESTIC))) + E(0x70, b"")],  # two templates
        [E(0x70, E(0x5A, bcd(DOMESTIC))), E(0x70, E(0x5A, bcd(DOMESTIC)))],  # PAN twice
    ],
)
def test_malformed_card_data(records):
    fails(FakeCard(one_app_card(records=records)), "malformed")


@pytest.mark.parametrize(
    "gpo",
    [
        gpo_format1(bytes.fromhex("08010200 00")),  # AFL of 5 bytes
        gpo_format1(bytes.fromhex("00010100")),  # SFI 0
        gpo_format1(bytes.fromhex("08030100")),  # first > last
        gpo_format1(bytes.fromhex("08000100")),  # record 0
        E(0x80, b"\x18"),  # no room for the AIP
        E(0x77, E(0x94, bytes.fromhex("08010200"))),  # format 2 without AIP
        E(0x77, E(0x82, b"\x18\x00")),  # format 2 without AFL
        E(0x70, b""),  # neither format
        b"\x80\x10\x18",  # not TLV
    ],
)
def test_malformed_gpo_answers(gpo):
    fails(FakeCard(one_app_card(gpo=gpo)), "malformed")


def test_afl_record_missing_is_malformed():
    answers = one_app_card()
    del answers[emv.read_record(1, 2)]
    assert "record 2 of SFI 1" in str(fails(FakeCard(answers), "malformed"))


def test_fci_without_template_is_malformed():
    answers = one_app_card()
    answers[emv.select(VISA)] = (E(0x84, VISA), 0x9000)
    fails(FakeCard(answers), "malformed")


@pytest.mark.parametrize(
    "pse_answer",
    [
        E(0x6F, E(0x84, PSE)),  # no SFI
        E(0x6F, E(0xA5, E(0x88, b"\x1f"))),  # SFI 31
        E(0x6F, E(0xA5, E(0x88, b"\x01\x02"))),  # SFI of 2 bytes
    ],
)
def test_bad_pse_is_malformed(pse_answer):
    answers = one_app_card()
    answers[emv.select(PSE)] = (pse_answer, 0x9000)
    fails(FakeCard(answers), "malformed")


def test_bad_directory_entries_are_malformed():
    for entry in (E(0x61, E(0x4F, b"\xa0\x00")), E(0x61, E(0x4F, VISA) + E(0x87, b"\x01\x02"))):
        answers = one_app_card()
        answers[emv.select(PSE)] = (pse_fci(1), 0x9000)
        answers[emv.read_record(1, 1)] = (E(0x70, entry), 0x9000)
        fails(FakeCard(answers), "malformed")


def test_endless_directory_is_bounded():
    answers = one_app_card()
    answers[emv.select(PSE)] = (pse_fci(1), 0x9000)
    card = FakeCard(answers)
    card.answers.update({emv.read_record(1, i): (E(0x70, b""), 0x9000) for i in range(1, 256)})
    fails(card, "malformed")
    assert len(card.sent) == 1 + emv.MAX_DIRECTORY_RECORDS


@pytest.mark.parametrize(
    "command,shown",
    [
        (NO_PDOL_GPO, "GET PROCESSING OPTIONS answered 6F00"),
        (emv.select(VISA), "SELECT A0000000031010 answered 6F00"),
        (emv.select(PSE), "SELECT 1PAY.SYS.DDF01 answered 6F00"),
        (emv.read_record(1, 2), "READ RECORD 2 of SFI 1 answered 6F00"),
    ],
)
def test_unknown_status_names_command_and_sw(command, shown):
    answers = one_app_card()
    answers[command] = (b"", 0x6F00)
    assert str(fails(FakeCard(answers), "unknown_status")) == shown


@pytest.mark.parametrize(
    "exc,code", [(CardRemoved("gone"), "removed"), (CardMute("silent"), "mute"), (emv.ChipTransportError("?"), "mute")]
)
@pytest.mark.parametrize("at", ["pse", "record"])
def test_transport_errors(exc, code, at):
    answers = one_app_card()
    answers[emv.select(PSE) if at == "pse" else emv.read_record(1, 2)] = exc
    err = fails(FakeCard(answers), code)
    assert isinstance(err.__cause__, emv.ChipTransportError)


def test_the_pan_never_shows_in_errors():
    cases = [
        one_app_card(expiry="240101"),
        one_app_card(records=card_records(track2_pan=OVERSEAS)),
        one_app_card(records=[E(0x70, E(0x5A, bcd(DOMESTIC)) + E(0x57, bcd(DOMESTIC + "D27")))]),
        one_app_card(records=[E(0x70, E(0x5A, bcd(DOMESTIC[:-1] + "6")) + E(0x5F24, bytes.fromhex("271231")))]),
        one_app_card(records=[E(0x70, E(0x5A, bcd(DOMESTIC)) + b"\x5a\x09" + bcd(DOMESTIC))]),
    ]
    for answers in cases:
        with pytest.raises(ChipReadError) as info:
            read(FakeCard(answers))
        assert_clean(info.value)
        text = str(info.value) + repr(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
        assert DOMESTIC not in text and OVERSEAS not in text


_SW = st.sampled_from([0x9000, 0x9000, 0x9000, 0x6A82, 0x6A83, 0x6283, 0x6985, 0x6A81, 0x6110, 0x6C08, 0x6F00])
_DATA = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            pse_fci(1),
            app_fci(VISA, b"V", bytes.fromhex("9F1A02")),
            gpo_format1(),
            gpo_format2(),
            *card_records(),
            E(0x70, dir_entry(VISA, b"V", 1)),
            gpo_format1(bytes.fromhex("08010100")),
        ]
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_card_behaviour_ends_in_carddata_or_chipreaderror(data):
    def transmit(apdu):
        if data.draw(st.integers(0, 40)) == 0:
            raise data.draw(st.sampled_from([CardRemoved(), CardMute()]))
        sw = data.draw(_SW)
        return data.draw(_DATA), sw >> 8, sw & 0xFF

    try:
        card = read_card(transmit, KEY, [VISA, MASTER], TODAY)
    except ChipReadError as err:
        assert err.code in {"mute", "removed", "malformed", "unknown_status", "no_application", "blocked", "expired"}
        assert_clean(err)
    else:
        assert card.last4 == "0015"
