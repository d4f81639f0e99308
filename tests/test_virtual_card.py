"""The virtual EMV card (hw_mocks/virtual_card/) against a fake vpcd.

The fake vpcd is a TCP server on a free port of 127.0.0.1 that speaks the
vpcd side of the protocol (2-byte big-endian length + payload; 1-byte
controls 00/01/02/04; APDUs otherwise). The TLV parser here is the test's
own, so the card's encoder is checked independently of any driver.
"""

from __future__ import annotations

import ast
import logging
import socket
import threading
from pathlib import Path

import pytest

from hw_mocks import virtual_card as vc
from hw_mocks.virtual_card import PROFILES_DIR, CardModel, VirtualCard, load_profile, profile_names

PSE = b"1PAY.SYS.DDF01"
VISA = bytes.fromhex("A0000000031010")
MASTERCARD = bytes.fromhex("A0000000041010")
KNOWN_AIDS = [VISA, MASTERCARD]

EXPECTED_PANS = {
    "domestic_debit": "4999990000000015",
    "overseas_credit": "5432100000000005",
    "expired": "4999990000000049",
    "blocked_app": "4999990000000056",
    "no_pse": "4999990000000064",
    "chunked_61xx": "4999990000000072",
    "mute": "4999990000000080",
    "broken_tlv": "4999990000000098",
    "pulled_out": "4999990000000106",
}
# Profiles whose whole EMV read works.
READABLE = ["domestic_debit", "overseas_credit", "expired", "no_pse", "chunked_61xx"]

TIMEOUT = 2.0


# --------------------------------------------------------------------------
# The test's own TLV parser


def parse_tlv(data: bytes) -> list[tuple[str, bytes]]:
    """Top-level (tag hex, value) pairs; ValueError on anything malformed."""
    out, i = [], 0
    while i < len(data):
        start = i
        if data[i] & 0x1F == 0x1F:
            i += 1
            while i < len(data) and data[i] & 0x80:
                i += 1
        i += 1
        if i >= len(data):
            raise ValueError(f"TLV ends inside the tag or length at {start}")
        tag = data[start:i].hex().upper()
        first = data[i]
        i += 1
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 2 or i + count > len(data):
                raise ValueError(f"bad length field for {tag}")
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > len(data):
            raise ValueError(f"{tag}: length {length} runs past the data ({len(data) - i} left)")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def tlv_dict(data: bytes) -> dict[str, bytes]:
    """All primitive and constructed tags, recursively (first occurrence wins)."""
    out: dict[str, bytes] = {}
    for tag, value in parse_tlv(data):
        out.setdefault(tag, value)
        if int(tag[:2], 16) & 0x20:  # constructed
            for sub, subvalue in tlv_dict(value).items():
                out.setdefault(sub, subvalue)
    return out


def parse_dol(dol: bytes) -> list[tuple[str, int]]:
    out, i = [], 0
    while i < len(dol):
        start = i
        if dol[i] & 0x1F == 0x1F:
            i += 1
            while dol[i] & 0x80:
                i += 1
        i += 1
        out.append((dol[start:i].hex().upper(), dol[i]))
        i += 1
    return out


def luhn(pan: str) -> bool:
    digits = [int(c) for c in reversed(pan)]
    return sum(d if i % 2 == 0 else (d * 2 if d < 5 else d * 2 - 9) for i, d in enumerate(digits)) % 10 == 0


# --------------------------------------------------------------------------
# Fake vpcd


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.settimeout(TIMEOUT)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv(self) -> bytes | None:
        """One payload, or None when the card closed the connection."""
        header = self._recv_exact(2)
        if header is None:
            return None
        return self._recv_exact(int.from_bytes(header, "big"))

    def power_on(self) -> None:
        self.send(b"\x01")

    def atr(self) -> bytes | None:
        self.send(b"\x04")
        return self.recv()

    def apdu(self, apdu: bytes) -> bytes:
        self.send(apdu)
        response = self.recv()
        assert response is not None, f"card closed the connection on {apdu[:2].hex()}"
        return response

    def closed(self) -> bool:
        """True when the card's side is closed (EOF or reset) within TIMEOUT."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


class FakeVpcd:
    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[Conn] = []

    def accept(self, timeout: float = TIMEOUT) -> Conn:
        self.server.settimeout(timeout)
        sock, _ = self.server.accept()
        conn = Conn(sock)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.server.close()


@pytest.fixture
def vpcd():
    fake = FakeVpcd()
    yield fake
    fake.close()


@pytest.fixture
def plug(vpcd):
    """plug(name) -> (card, conn): the card inserted, powered on, ATR read."""
    cards = []

    def _plug(profile, read_atr=True):
        card = VirtualCard(profile, port=vpcd.port)
        cards.append(card)
        card.insert()
        conn = vpcd.accept()
        if read_atr:
            conn.power_on()
            assert conn.atr() == card.profile.atr
        return card, conn

    yield _plug
    for card in cards:
        card.remove()
        assert not card._thread.is_alive()


# --------------------------------------------------------------------------
# APDU helpers (the terminal side)


def select(name: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(name)]) + name + b"\x00"


def read_record(sfi: int, rec: int, le: int = 0) -> bytes:
    return bytes([0x00, 0xB2, rec, (sfi << 3) | 4, le])


def gpo(pdol_data: bytes) -> bytes:
    return bytes([0x80, 0xA8, 0x00, 0x00, len(pdol_data) + 2, 0x83, len(pdol_data)]) + pdol_data + b"\x00"


def split(response: bytes) -> tuple[bytes, int]:
    return response[:-2], int.from_bytes(response[-2:], "big")


def transmit(conn: Conn, apdu: bytes) -> tuple[bytes, int]:
    """Send an APDU the way a terminal does: follow 6Cxx and 61xx."""
    data, sw = split(conn.apdu(apdu))
    if sw >> 8 == 0x6C:
        data, sw = split(conn.apdu(apdu[:-1] + bytes([sw & 0xFF])))
    while sw >> 8 == 0x61:
        more, sw = split(conn.apdu(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])))
        data += more
    return data, sw


def emv_read(conn: Conn) -> dict:
    """A whole EMV read: PSE (or known AIDs), SELECT, GPO, the AFL's records."""
    out: dict = {}
    fci, sw = transmit(conn, select(PSE))
    if sw == 0x9000:
        sfi = tlv_dict(fci)["88"][0]
        aids, rec = [], 1
        while True:
            record, sw = transmit(conn, read_record(sfi, rec))
            if sw == 0x6A83:
                break
            assert sw == 0x9000
            for tag, entry in parse_tlv(parse_tlv(record)[0][1]):
                assert tag == "61"
                aids.append(tlv_dict(entry)["4F"])
            rec += 1
    else:
        assert sw == 0x6A82
        aids = KNOWN_AIDS
    for aid in aids:
        fci, sw = transmit(conn, select(aid))
        if sw in (0x9000, 0x6283):
            break
    out["aid"], out["select_sw"] = aid, sw
    fields = tlv_dict(fci)
    out["label"] = fields["50"].decode()
    dol = parse_dol(fields.get("9F38", b""))
    pdol_data = b"".join(bytes(length) for _tag, length in dol)
    answer, out["gpo_sw"] = transmit(conn, gpo(pdol_data))
    if out["gpo_sw"] != 0x9000:
        return out
    ((tag, value),) = parse_tlv(answer)
    if tag == "80":
        out["gpo_format"], aip, afl = 1, value[:2], value[2:]
    else:
        assert tag == "77"
        inner = tlv_dict(value)
        out["gpo_format"], aip, afl = 2, inner["82"], inner["94"]
    out["aip"], out["afl"] = aip, afl
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for rec in range(first, last + 1):
            record, sw = transmit(conn, read_record(sfi, rec))
            assert sw == 0x9000
            ((tag, value),) = parse_tlv(record)
            assert tag == "70"
            out.update(tlv_dict(value))
    return out


# --------------------------------------------------------------------------
# Profiles


def test_all_profiles_are_there_with_luhn_valid_pans():
    assert profile_names() == sorted(EXPECTED_PANS)
    for name, pan in EXPECTED_PANS.items():
        profile = load_profile(name)
        assert profile.name == name
        assert [app.pan for app in profile.applications] == [pan]
        assert luhn(pan)


def test_profile_fields():
    debit = load_profile("domestic_debit")
    (app,) = debit.applications
    assert (app.aid, app.label, app.expiry, app.service_code, app.country) == (
        VISA,
        "SIM DEBIT",
        "301231",
        "201",
        "0392",
    )
    assert app.pdol == bytes.fromhex("9F1A025F2A029A039C019F3704")
    credit = load_profile("overseas_credit")
    assert credit.applications[0].aid == MASTERCARD
    assert credit.applications[0].gpo_format == 2
    assert credit.applications[0].country == "0840"
    assert load_profile("expired").applications[0].expiry == "240131"
    assert load_profile("blocked_app").applications[0].blocked
    assert not load_profile("no_pse").pse
    assert load_profile("chunked_61xx").chunk == 16
    assert load_profile("mute").mute
    assert load_profile("broken_tlv").broken_tlv == "record"
    assert load_profile("pulled_out").pull_out_after == 3
    by_path = load_profile(PROFILES_DIR / "domestic_debit.toml")
    assert by_path == debit


GOOD_APP = {
    "aid": "A0000000031010",
    "label": "SIM DEBIT",
    "priority": 1,
    "pan": "4999990000000015",
    "expiry": "301231",
    "service_code": "201",
    "country": "0392",
}
GOOD_TOP = {"atr": "3B 89 80 01 53 49 4D 20 44 45 42 49 54 21", "pse": True}


def toml_text(top: dict, apps: list[dict]) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"{k} = {value(v)}" for k, v in top.items()]
    for app in apps:
        lines += ["", "[[applications]]"] + [f"{k} = {value(v)}" for k, v in app.items()]
    return "\n".join(lines) + "\n"


def test_a_minimal_profile_file_loads(tmp_path):
    path = tmp_path / "minimal.toml"
    path.write_text(toml_text(GOOD_TOP, [GOOD_APP]))
    profile = load_profile(path)
    assert profile.name == "minimal"
    assert (profile.chunk, profile.pull_out_after, profile.broken_tlv, profile.mute) == (0, 0, "none", False)
    assert profile.applications[0].gpo_format == 1
    assert not profile.applications[0].blocked


@pytest.mark.parametrize(
    "top, app, field",
    [
        ({"atr": "3B 89 80 01 53 49 4D 20 44 45 42 49 54 22"}, {}, "atr"),  # TCK
        ({"atr": "3B 89 80 01 53 49"}, {}, "atr"),  # too short
        ({"atr": "not hex"}, {}, "atr"),
        ({"atr": "12 34"}, {}, "atr"),  # TS
        ({"pse": None}, {}, "pse"),
        ({"pse": "yes"}, {}, "pse"),
        ({"chunk": True}, {}, "chunk"),
        ({"chunk": 300}, {}, "chunk"),
        ({"pull_out_after": -1}, {}, "pull_out_after"),
        ({"broken_tlv": "sometimes"}, {}, "broken_tlv"),
        ({"colour": "red"}, {}, "colour"),
        ({}, {"pan": "4999990000000016"}, "applications[0].pan"),  # Luhn
        ({}, {"pan": "49999900000000A5"}, "applications[0].pan"),
        ({}, {"expiry": "3012"}, "applications[0].expiry"),
        ({}, {"expiry": "301332"}, "applications[0].expiry"),
        ({}, {"country": "392"}, "applications[0].country"),
        ({}, {"service_code": "2O1"}, "applications[0].service_code"),
        ({}, {"aid": "A000"}, "applications[0].aid"),
        ({}, {"aid": "A0000000031010Z"}, "applications[0].aid"),
        ({}, {"label": ""}, "applications[0].label"),
        ({}, {"label": "ＳＩＭ"}, "applications[0].label"),
        ({}, {"priority": 0}, "applications[0].priority"),
        ({}, {"pdol": "9F1A025F2A"}, "applications[0].pdol"),  # cut short
        ({}, {"gpo_format": 3}, "applications[0].gpo_format"),
        ({}, {"blocked": 1}, "applications[0].blocked"),
        ({}, {"lable": "SIM"}, "applications[0].lable"),  # typo
        ({}, {"label": None}, "applications[0].label"),
    ],
)
def test_bad_profile_files_name_the_file_and_field(tmp_path, top, app, field):
    path = tmp_path / "bad.toml"
    top_fields = {k: v for k, v in {**GOOD_TOP, **top}.items() if v is not None}
    app_fields = {k: v for k, v in {**GOOD_APP, **app}.items() if v is not None}
    path.write_text(toml_text(top_fields, [app_fields]))
    with pytest.raises(ValueError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert f"'{field}'" in str(err.value)


def test_bad_profile_files_without_applications_or_toml(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text(toml_text(GOOD_TOP, []))
    with pytest.raises(ValueError, match=r"empty\.toml.*'applications'"):
        load_profile(path)
    path.write_text(toml_text(GOOD_TOP, [GOOD_APP, GOOD_APP]))
    with pytest.raises(ValueError, match=r"'applications\[1\]\.aid'.*twice"):
        load_profile(path)
    path.write_text("atr = \n")
    with pytest.raises(ValueError, match=r"empty\.toml: not valid TOML"):
        load_profile(path)
    with pytest.raises(ValueError, match="unknown card profile 'nosuch'.*domestic_debit"):
        load_profile("nosuch")
    with pytest.raises(FileNotFoundError):
        load_profile(tmp_path / "missing.toml")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


def test_the_card_does_not_use_the_driver_code():
    """Only the declared-fields checker is shared, and it uses nothing but the standard library."""
    import devices.fields

    card_modules = sorted(Path(vc.__file__).parent.glob("*.py"))
    assert {p.stem for p in card_modules} >= {"__init__", "profiles", "model", "connection", "cli"}
    for path in card_modules:
        for name in _imports(path):
            assert name == "devices.fields" or not name.startswith(("devices", "agent", "fsm")), (path, name)
    for path in Path(devices.fields.__file__).parent.glob("*.py"):
        assert all(
            not n.startswith(("devices", "agent", "fsm", "hw_mocks")) or n.startswith("devices.fields")
            for n in _imports(path)
        ), path


# --------------------------------------------------------------------------
# Every profile through the fake vpcd


@pytest.mark.parametrize("name", sorted(EXPECTED_PANS))
def test_atr_of_every_profile(plug, name):
    profile = load_profile(name)
    card, conn = plug(name, read_atr=False)
    conn.power_on()
    if profile.mute:
        assert conn.atr() == b""
        assert conn.closed()
    else:
        assert conn.atr() == profile.atr
        assert vc.atr_problem(profile.atr) is None
        conn.send(b"\x00")  # power off, reset: no reply
        conn.send(b"\x02")
        assert conn.atr() == profile.atr  # and the card is still there
        assert card.inserted


@pytest.mark.parametrize("name", READABLE)
def test_whole_emv_read_of_every_readable_profile(plug, name):
    (app,) = load_profile(name).applications
    card, conn = plug(name)
    out = emv_read(conn)
    assert out["aid"] == app.aid
    assert out["select_sw"] == 0x9000
    assert out["label"] == app.label
    assert out["gpo_sw"] == 0x9000
    assert out["gpo_format"] == app.gpo_format
    assert out["afl"] == bytes.fromhex("10010200")
    assert out["aip"] == bytes.fromhex("1800")
    pan = out["5A"].hex().upper().rstrip("F")
    assert pan == app.pan
    assert out["5F24"].hex() == app.expiry
    assert out["5F28"].hex() == app.country
    assert out["5F30"].hex() == "0" + app.service_code
    track2 = out["57"].hex().upper().rstrip("F")
    assert track2 == f"{app.pan}D{app.expiry[:4]}{app.service_code}0000000000"
    assert card.inserted


def test_blocked_app_answers_6283_with_fci_and_refuses_gpo(plug):
    card, conn = plug("blocked_app")
    out = emv_read(conn)
    assert out["aid"] == VISA
    assert out["select_sw"] == 0x6283
    assert out["label"] == "SIM DEBIT"
    assert out["gpo_sw"] == 0x6985


def test_broken_tlv_records_really_are_malformed(plug):
    card, conn = plug("broken_tlv")
    fci, sw = transmit(conn, select(PSE))
    directory, sw = transmit(conn, read_record(1, 1))
    assert sw == 0x9000
    parse_tlv(directory)  # the directory is fine
    fci, sw = transmit(conn, select(VISA))
    assert sw == 0x9000
    parse_tlv(fci)
    answer, sw = transmit(conn, gpo(b""))
    assert sw == 0x9000
    parse_tlv(answer)
    for rec in (1, 2):
        record, sw = transmit(conn, read_record(2, rec))
        assert sw == 0x9000
        with pytest.raises(ValueError, match="runs past the data"):
            parse_tlv(record)


@pytest.mark.parametrize(
    "kind, apdus",
    [
        ("fci", [select(VISA)]),
        ("directory", [select(PSE), read_record(1, 1)]),
        ("gpo", [select(VISA), gpo(b"")]),
    ],
)
def test_broken_tlv_can_hit_other_answers(kind, apdus):
    profile = load_profile("overseas_credit")
    app = vc.Application(**{**profile.applications[0].__dict__, "aid": VISA})
    model = CardModel(vc.Profile(**{**profile.__dict__, "broken_tlv": kind, "applications": (app,)}))
    for apdu in apdus:
        data, sw = split(model.process(apdu))
    assert sw == 0x9000
    with pytest.raises(ValueError, match="runs past the data"):
        parse_tlv(data)


# --------------------------------------------------------------------------
# Commands in detail


def test_select_pse_and_directory(plug):
    card, conn = plug("domestic_debit")
    fci, sw = split(conn.apdu(select(PSE)))
    assert sw == 0x9000
    ((tag, value),) = parse_tlv(fci)
    assert tag == "6F"
    assert parse_tlv(value) == [("84", PSE), ("A5", bytes.fromhex("880101"))]
    record, sw = split(conn.apdu(read_record(1, 1)))
    assert sw == 0x9000
    ((tag, value),) = parse_tlv(record)
    assert tag == "70"
    ((tag, entry),) = parse_tlv(value)
    assert tag == "61"
    assert parse_tlv(entry) == [("4F", VISA), ("50", b"SIM DEBIT"), ("87", b"\x01")]
    assert split(conn.apdu(read_record(1, 2))) == (b"", 0x6A83)
    # Without Le (case 1) the record still comes.
    assert split(conn.apdu(read_record(1, 1)[:4]))[0] == record


def test_no_pse_answers_6a82_and_the_aid_still_selects(plug):
    card, conn = plug("no_pse")
    assert split(conn.apdu(select(PSE))) == (b"", 0x6A82)
    assert split(conn.apdu(read_record(1, 1))) == (b"", 0x6A82)
    fci, sw = split(conn.apdu(select(VISA)))
    assert sw == 0x9000
    assert tlv_dict(fci)["84"] == VISA


def test_select_aid_fci_with_pdol(plug):
    card, conn = plug("domestic_debit")
    fci, sw = split(conn.apdu(select(VISA)))
    assert sw == 0x9000
    ((tag, value),) = parse_tlv(fci)
    assert tag == "6F"
    (t84, aid), (ta5, proprietary) = parse_tlv(value)
    assert (t84, aid, ta5) == ("84", VISA, "A5")
    assert parse_tlv(proprietary) == [
        ("50", b"SIM DEBIT"),
        ("87", b"\x01"),
        ("9F38", bytes.fromhex("9F1A025F2A029A039C019F3704")),
    ]
    assert parse_dol(tlv_dict(fci)["9F38"]) == [("9F1A", 2), ("5F2A", 2), ("9A", 3), ("9C", 1), ("9F37", 4)]


def test_select_aid_without_pdol_and_unknown_and_partial(plug):
    card, conn = plug("overseas_credit")
    fci, sw = split(conn.apdu(select(MASTERCARD)))
    assert sw == 0x9000
    assert "9F38" not in tlv_dict(fci)
    assert split(conn.apdu(select(VISA))) == (b"", 0x6A82)
    fci, sw = split(conn.apdu(select(MASTERCARD[:5])))  # partial selection
    assert sw == 0x9000 and tlv_dict(fci)["84"] == MASTERCARD
    assert split(conn.apdu(bytes.fromhex("00A40402") + bytes([5]) + MASTERCARD[:5] + b"\x00")) == (
        b"",
        0x6A82,
    )  # no next occurrence
    assert split(conn.apdu(bytes.fromhex("00A40000023F0000"))) == (b"", 0x6A86)


def test_gpo_format_1_and_pdol_length(plug):
    card, conn = plug("domestic_debit")
    assert split(conn.apdu(gpo(bytes(12)))) == (b"", 0x6985)  # nothing selected
    conn.apdu(select(VISA))
    for wrong in (b"", bytes(11), bytes(13)):
        assert split(conn.apdu(gpo(wrong))) == (b"", 0x6700)
    no_83 = bytes.fromhex("80A800000E820C") + bytes(12) + b"\x00"
    assert split(conn.apdu(no_83)) == (b"", 0x6700)
    lying = bytes.fromhex("80A800000E830B") + bytes(12) + b"\x00"  # 83 length != data
    assert split(conn.apdu(lying)) == (b"", 0x6700)
    answer, sw = split(conn.apdu(gpo(bytes(12))))
    assert sw == 0x9000
    assert parse_tlv(answer) == [("80", bytes.fromhex("180010010200"))]


def test_gpo_format_2(plug):
    card, conn = plug("overseas_credit")
    conn.apdu(select(MASTERCARD))
    assert split(conn.apdu(gpo(b"\x00")))[1] == 0x6700
    answer, sw = split(conn.apdu(gpo(b"")))
    assert sw == 0x9000
    ((tag, value),) = parse_tlv(answer)
    assert tag == "77"
    assert parse_tlv(value) == [("82", bytes.fromhex("1800")), ("94", bytes.fromhex("10010200"))]


def test_read_record_content_and_errors(plug):
    card, conn = plug("domestic_debit")
    assert split(conn.apdu(read_record(2, 1))) == (b"", 0x6A82)  # no application selected
    conn.apdu(select(VISA))
    record1, sw = split(conn.apdu(read_record(2, 1)))
    assert sw == 0x9000
    ((tag, value),) = parse_tlv(record1)
    assert tag == "70"
    assert parse_tlv(value) == [("57", bytes.fromhex("4999990000000015D30122010000000000"))]
    record2, sw = split(conn.apdu(read_record(2, 2)))
    assert sw == 0x9000
    ((tag, value),) = parse_tlv(record2)
    assert tag == "70"
    assert parse_tlv(value) == [
        ("5A", bytes.fromhex("4999990000000015")),
        ("5F24", bytes.fromhex("301231")),
        ("5F28", bytes.fromhex("0392")),
        ("5F30", bytes.fromhex("0201")),
    ]
    assert split(conn.apdu(read_record(2, 3))) == (b"", 0x6A83)
    assert split(conn.apdu(read_record(1, 1))) == (b"", 0x6A82)  # PSE no longer selected
    assert split(conn.apdu(read_record(3, 1))) == (b"", 0x6A82)
    assert split(conn.apdu(read_record(2, 0))) == (b"", 0x6A86)
    assert split(conn.apdu(bytes.fromhex("00B2011000"))) == (b"", 0x6A86)  # P2 low bits 000
    assert split(conn.apdu(bytes.fromhex("00B20114010000"))) == (b"", 0x6700)  # data on a read


def test_odd_length_pan_is_f_padded():
    profile = load_profile("domestic_debit")
    app = vc.Application(**{**profile.applications[0].__dict__, "pan": "4999990000000000001"})
    assert luhn(app.pan)
    model = CardModel(vc.Profile(**{**profile.__dict__, "applications": (app,)}))
    model.process(select(VISA))
    record1, _ = split(model.process(read_record(2, 1)))
    record2, _ = split(model.process(read_record(2, 2)))
    assert tlv_dict(record2)["5A"].hex().upper() == "4999990000000000001F"
    assert tlv_dict(record1)["57"].hex().upper() == "4999990000000000001D30122010000000000F"


def test_wrong_le_answers_6cxx(plug):
    card, conn = plug("domestic_debit")
    conn.apdu(select(VISA))
    full, sw = split(conn.apdu(read_record(2, 2)))
    assert sw == 0x9000
    assert split(conn.apdu(read_record(2, 2, le=5))) == (b"", 0x6C00 | len(full))
    assert split(conn.apdu(read_record(2, 2, le=len(full)))) == (full, 0x9000)
    assert split(conn.apdu(read_record(2, 2, le=0xF0))) == (full, 0x9000)  # longer Le is fine
    fci, _ = split(conn.apdu(select(VISA)))
    assert split(conn.apdu(select(VISA)[:-1] + b"\x10")) == (b"", 0x6C00 | len(fci))


def test_chunked_61xx_and_get_response(plug):
    card, conn = plug("chunked_61xx")
    whole = CardModel(load_profile("domestic_debit")).process(select(PSE))[:-2]
    assert len(whole) > 16
    data, sw = split(conn.apdu(select(PSE)))
    assert (data, sw) == (b"", 0x6100 | len(whole))  # 61xx, no data
    got = b""
    while sw >> 8 == 0x61:
        part, sw = split(conn.apdu(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])))
        assert 0 < len(part) <= 16
        got += part
    assert sw == 0x9000
    assert got == whole
    # Le 00 in GET RESPONSE still gives at most 16 bytes; a smaller Le fewer.
    conn.apdu(select(PSE))
    part, sw = split(conn.apdu(bytes.fromhex("00C0000000")))
    assert len(part) == 16 and sw == 0x6100 | (len(whole) - 16)
    part, sw = split(conn.apdu(bytes.fromhex("00C0000003")))
    assert len(part) == 3 and sw == 0x6100 | (len(whole) - 19)
    # Another command discards what was waiting.
    conn.apdu(read_record(1, 1))
    assert split(conn.apdu(read_record(1, 2))) == (b"", 0x6A83)
    assert split(conn.apdu(bytes.fromhex("00C0000010"))) == (b"", 0x6985)
    # Short answers come whole.
    assert split(conn.apdu(read_record(1, 9))) == (b"", 0x6A83)
    out = emv_read(conn)
    assert out["5A"].hex().upper() == "4999990000000072"


def test_unknown_ins_wrong_cla_and_bad_apdus(plug):
    card, conn = plug("domestic_debit")
    assert split(conn.apdu(bytes.fromhex("00CA9F1700"))) == (b"", 0x6D00)  # GET DATA
    assert split(conn.apdu(bytes.fromhex("80A404000E") + PSE + b"\x00")) == (b"", 0x6E00)
    assert split(conn.apdu(bytes.fromhex("00A8000002830000"))) == (b"", 0x6E00)
    assert split(conn.apdu(bytes.fromhex("FFB2010C00"))) == (b"", 0x6E00)
    assert split(conn.apdu(bytes.fromhex("00A404000E") + PSE[:5])) == (b"", 0x6700)  # Lc lies
    assert split(conn.apdu(bytes.fromhex("00A4"))) == (b"", 0x6700)  # 2 bytes
    assert split(conn.apdu(bytes.fromhex("00A40400000005"))) == (b"", 0x6700)  # extended
    assert card.inserted


def test_power_off_and_reset_clear_the_selection(plug):
    card, conn = plug("domestic_debit")
    for control in (b"\x02", b"\x00", b"\x01"):
        conn.apdu(select(VISA))
        assert split(conn.apdu(read_record(2, 1)))[1] == 0x9000
        conn.send(control)
        assert split(conn.apdu(read_record(2, 1))) == (b"", 0x6A82)


# --------------------------------------------------------------------------
# Insertion, removal, faults of the card


def test_pulled_out_after_three_apdus(plug):
    card, conn = plug("pulled_out")
    assert split(conn.apdu(select(PSE)))[1] == 0x9000
    assert split(conn.apdu(read_record(1, 1)))[1] == 0x9000
    assert split(conn.apdu(select(VISA)))[1] == 0x9000
    assert conn.closed()
    assert card.wait_closed(TIMEOUT)
    assert not card.inserted
    assert card.close_reason == vc.PULLED_OUT
    assert card.apdus == 3
    assert card.log == (0xA4, 0xB2, 0xA4)


def test_mute_card_answers_the_atr_request_empty_and_leaves(vpcd, plug):
    card, conn = plug("mute", read_atr=False)
    assert card.inserted
    conn.power_on()
    conn.send(b"\x04")
    assert conn.recv() == b""  # zero-length reply: vpcd drops it
    assert conn.closed()
    assert card.wait_closed(TIMEOUT)
    assert card.close_reason == vc.MUTE
    with pytest.raises(TimeoutError):  # and it does not reconnect
        vpcd.accept(timeout=0.3)


def test_remove_closes_and_insert_reconnects(vpcd, plug):
    card, conn = plug("domestic_debit")
    conn.apdu(select(VISA))
    assert card.apdus == 1
    with pytest.raises(RuntimeError, match="already inserted"):
        card.insert()
    card.remove()
    assert not card.inserted
    assert card.close_reason == vc.REMOVED
    assert conn.closed()
    card.remove()  # removing twice is harmless
    card.insert()
    assert card.inserted and card.close_reason is None
    conn2 = vpcd.accept()
    conn2.power_on()
    assert conn2.atr() == card.profile.atr
    assert card.apdus == 0 and card.log == ()
    assert split(conn2.apdu(read_record(2, 1))) == (b"", 0x6A82)  # a fresh card
    # A card pulled out by its profile can be inserted again too.
    pulled, pconn = plug("pulled_out")
    for _ in range(3):
        pconn.apdu(select(PSE))
    assert pconn.closed() and pulled.wait_closed(TIMEOUT)
    pulled.insert()
    assert vpcd.accept().atr() == pulled.profile.atr


def test_context_manager(vpcd):
    with VirtualCard("overseas_credit", port=vpcd.port) as card:
        conn = vpcd.accept()
        assert card.inserted
        assert conn.atr() == card.profile.atr
    assert not card.inserted
    assert conn.closed()


def test_insert_without_vpcd_raises_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    card = VirtualCard("domestic_debit", port=port)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}.*vpcd"):
        card.insert()
    assert not card.inserted
    card.remove()


def test_log_holds_ins_bytes_only_and_no_pan_is_logged(plug, caplog):
    caplog.set_level(logging.DEBUG, logger="hw_mocks.virtual_card")
    card, conn = plug("domestic_debit")
    emv_read(conn)
    assert card.log == (0xA4, 0xB2, 0xB2, 0xA4, 0xA8, 0xB2, 0xB2)
    assert card.apdus == 7
    assert "4999990000000015" not in caplog.text
    assert "499999" not in caplog.text


GARBAGE = {
    "zero length": b"\x00\x00",
    "huge length": b"\xff\xff" + b"\x00" * 10,
    "truncated then closed": b"\x00\x10\x00\xa4\x04",
    "half a length then closed": b"\x00",
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_from_vpcd_closes_cleanly(vpcd, plug, caplog, garbage):
    card, conn = plug("domestic_debit")
    conn.sock.sendall(garbage)
    if garbage in (GARBAGE["truncated then closed"], GARBAGE["half a length then closed"]):
        conn.sock.shutdown(socket.SHUT_WR)
    assert conn.closed()
    assert card.wait_closed(TIMEOUT)
    assert not card._thread.is_alive()
    assert card.close_reason == vc.BAD_INPUT
    assert "bad input from vpcd" in caplog.text
    card.insert()  # still usable
    assert vpcd.accept().atr() == card.profile.atr


def test_a_stalled_message_times_out(vpcd, plug, caplog, monkeypatch):
    monkeypatch.setattr(vc.connection, "MESSAGE_TIMEOUT", 0.3)  # read where the connection reads it
    card, conn = plug("domestic_debit")
    conn.sock.sendall(b"\x00\x10\x00\xa4")  # and then nothing
    assert conn.closed()
    assert card.wait_closed(TIMEOUT)
    assert card.close_reason == vc.BAD_INPUT
    assert "incomplete" in caplog.text


def test_vpcd_closing_ends_the_serving_thread(plug):
    card, conn = plug("domestic_debit")
    conn.close()
    assert card.wait_closed(TIMEOUT)
    assert card.close_reason == vc.VPCD_CLOSED


def test_unknown_control_byte_is_ignored(plug, caplog):
    card, conn = plug("domestic_debit")
    conn.send(b"\x07")
    assert conn.atr() == card.profile.atr
    assert "unknown vpcd control byte 07" in caplog.text
    assert card.inserted


def test_main_serves_until_vpcd_drops_the_card(vpcd, capsys):
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("rc", vc.main(["expired", "--port", str(vpcd.port)])), daemon=True
    )
    thread.start()
    conn = vpcd.accept()
    assert conn.atr() == load_profile("expired").atr
    conn.close()
    thread.join(TIMEOUT)
    assert result == {"rc": 0}
    assert "card out: vpcd closed" in capsys.readouterr().out
    assert vc.main(["nosuch"]) == 1
