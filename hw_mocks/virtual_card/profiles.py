"""Card profiles of the virtual EMV card, read from TOML and checked.

One TOML file per profile in ``hw_mocks/emv_profiles/``; the file's stem is
the profile's name (``load_profile("domestic_debit")``). Hex fields may
contain spaces. Unknown keys are errors (they are usually typos).

Top level:

``description`` (string, optional)
    What the profile is for.
``atr`` (hex, required)
    The Answer To Reset, 2..33 bytes. It is checked: TS ``3B``/``3F``, the
    interface bytes that T0/TDi announce, the historical bytes, and TCK when
    a protocol other than T=0 is indicated.
``pse`` (bool, required)
    Whether the card has the Payment System Environment ``1PAY.SYS.DDF01``
    (with its directory in SFI 1). Without it, SELECT PSE answers ``6A82``
    and the terminal has to try its list of known AIDs.
``mute`` (bool, default false)
    A card that is physically in the reader but whose chip does not answer.
    The card connects (so the card is "inserted"), but answers the first
    get-ATR request with a zero-length payload; vpcd then drops the
    connection and pcscd reports no card in the reader. The card does not
    reconnect. Seen from the ATM: the motorised reader holds a card, but
    PC/SC finds no chip to talk to. pcscd is never left waiting.
``chunk`` (int 0..256, default 0)
    0: every answer comes whole. N > 0: an answer longer than N data bytes
    comes as ``61xx`` (xx = bytes waiting, ``00`` meaning 256) without data,
    and each GET RESPONSE returns at most N bytes (fewer if its Le asks for
    fewer), then ``61xx`` again while data remains, then the command's own
    status word (``9000`` or ``6283``).
``pull_out_after`` (int >= 0, default 0)
    0: never. N > 0: the card is pulled out (socket closed) right after it
    has answered its N-th command APDU of an insertion (GET RESPONSE counts;
    controls do not).
``broken_tlv`` (string, default ``"none"``)
    Which answer carries a malformed TLV: ``"none"``, ``"fci"`` (the FCI of
    SELECT AID), ``"directory"`` (the PSE directory record), ``"record"``
    (the application records) or ``"gpo"`` (the GET PROCESSING OPTIONS
    answer). The outermost template's length then claims 16 bytes more
    than the data holds, so a parser runs past the end of the data.

``[[applications]]`` (at least one), each with:

``aid`` (hex, 5..16 bytes), ``label`` (printable ASCII, 1..16 characters),
``priority`` (int 1..15), ``pan`` (12..19 digits, Luhn-valid), ``expiry``
(``YYMMDD``), ``service_code`` (3 digits), ``country`` (ISO 3166 numeric as
4 digits, ``"0392"`` is Japan), ``pdol`` (hex DOL, optional: tag + 1-byte
length pairs), ``gpo_format`` (1 or 2, default 1), ``blocked`` (bool,
default false).
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from devices.fields import Field, FieldError, TomlFileError, check_table, fields, read_toml

# The profiles shipped with the package, next to this package.
PROFILES_DIR = Path(__file__).parent.with_name("emv_profiles")
BROKEN_TLV_CHOICES = ("none", "fci", "directory", "record", "gpo")


@dataclass(frozen=True)
class Application:
    aid: bytes
    label: str
    priority: int
    pan: str
    expiry: str  # YYMMDD
    service_code: str  # 3 digits
    country: str  # ISO 3166 numeric, 4 digits
    pdol: bytes = b""
    gpo_format: int = 1
    blocked: bool = False

    @property
    def pdol_length(self) -> int:
        """Total length of the data the PDOL asks for."""
        return sum(length for _tag, length in _parse_dol(self.pdol))


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    atr: bytes
    pse: bool
    applications: tuple[Application, ...]
    description: str = ""
    mute: bool = False
    chunk: int = 0
    pull_out_after: int = 0
    broken_tlv: str = "none"


def _hex_problem(text: str) -> str | None:
    try:
        bytes.fromhex(text)
    except ValueError:
        return f"is not hex: {text!r}"
    return None


def _aid_problem(text: str) -> str | None:
    problem = _hex_problem(text)
    if problem is None and not 5 <= len(bytes.fromhex(text)) <= 16:
        return f"must be 5..16 bytes, not {len(bytes.fromhex(text))}"
    return problem


def _atr_field_problem(text: str) -> str | None:
    return _hex_problem(text) or atr_problem(bytes.fromhex(text))


def _pdol_problem(text: str) -> str | None:
    problem = _hex_problem(text)
    if problem is None:
        try:
            _parse_dol(bytes.fromhex(text))
        except ValueError as e:
            return str(e)
    return problem


def _expiry_problem(text: str) -> str | None:
    if not (1 <= int(text[2:4]) <= 12 and 1 <= int(text[4:6]) <= 31):
        return f"must be YYMMDD, not {text!r}"
    return None


def _digits(name: str, low: int, high: int, meaning: str, check=None) -> Field:
    want = f"{low}" if low == high else f"{low}..{high}"
    return Field(name, str, description=f"{want} digits: {meaning}", pattern=rf"[0-9]{{{low},{high}}}", check=check)


PROFILE_FIELDS = fields(
    Field("description", str, "", "what the card is for", length=(0, 1000)),
    Field("atr", str, description="the Answer To Reset in hex", length=(1, 200), check=_atr_field_problem),
    Field("pse", bool, description="the card answers SELECT 1PAY.SYS.DDF01"),
    Field("mute", bool, False, "the card never answers"),
    Field("chunk", int, 0, "answer in 61xx chunks of this many bytes (0: whole)", low=0, high=256),
    Field("pull_out_after", int, 0, "the card is pulled out after this many APDUs (0: never)", low=0, high=1_000_000),
    Field("broken_tlv", str, "none", "which answer has a broken TLV", choices=BROKEN_TLV_CHOICES),
    Field("applications", list, description="the [[applications]] tables", length=(0, 16)),
)
APPLICATION_FIELDS = fields(
    Field("aid", str, description="the application id in hex", length=(1, 64), check=_aid_problem),
    Field("label", str, description="1..16 printable ASCII characters", pattern=r"[\x20-\x7e]{1,16}"),
    Field("priority", int, description="the application priority", low=1, high=15),
    _digits(
        "pan",
        12,
        19,
        "the card number (Luhn)",
        check=lambda pan: None if luhn_valid(pan) else f"{pan} fails the Luhn check",
    ),
    _digits("expiry", 6, 6, "YYMMDD", check=_expiry_problem),
    _digits("service_code", 3, 3, "the service code"),
    _digits("country", 4, 4, "the ISO 3166 numeric issuer country"),
    Field("pdol", str, "", "the PDOL in hex", length=(0, 512), check=_pdol_problem),
    Field("gpo_format", int, 1, "the GET PROCESSING OPTIONS answer format", choices=(1, 2)),
    Field("blocked", bool, False, "the application is blocked"),
)


def profile_names() -> list[str]:
    """The names of the profiles in PROFILES_DIR, sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load and check a profile: a name from PROFILES_DIR or a TOML file's path.

    Raises ValueError naming the file and the field for any bad content, and
    for an unknown profile name; FileNotFoundError for a missing path.
    """
    text = os.fspath(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_-]+", text):
        path = PROFILES_DIR / f"{text}.toml"
        if not path.is_file():
            raise ValueError(f"unknown card profile {text!r}; known: {', '.join(profile_names())}")
    else:
        path = Path(text)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such card profile", str(path))
    try:
        data = read_toml(path, "card profile")
    except TomlFileError as e:
        raise ValueError(str(e)) from None
    try:
        return _check_profile(path, data)
    except FieldError as e:
        raise ValueError(f"{path}: field {e.field!r}: {e.problem}") from None


def _check_profile(path: Path, data: dict) -> Profile:
    top = check_table(data, PROFILE_FIELDS)
    if not top["applications"]:
        raise FieldError("applications", "needs at least one [[applications]] table")
    apps = tuple(_check_application(table, i) for i, table in enumerate(top["applications"]))
    aids = [app.aid for app in apps]
    for i, aid in enumerate(aids):
        if aid in aids[:i]:
            raise FieldError(f"applications[{i}].aid", f"{aid.hex().upper()} is there twice")
    return Profile(
        name=path.stem,
        path=path,
        atr=bytes.fromhex(top["atr"]),
        pse=top["pse"],
        applications=apps,
        description=top["description"],
        mute=top["mute"],
        chunk=top["chunk"],
        pull_out_after=top["pull_out_after"],
        broken_tlv=top["broken_tlv"],
    )


def _check_application(table, i: int) -> Application:
    if not isinstance(table, dict):
        raise FieldError(f"applications[{i}]", "must be a table ([[applications]])")
    v = check_table(table, APPLICATION_FIELDS, f"applications[{i}]")
    return Application(
        aid=bytes.fromhex(v["aid"]),
        label=v["label"],
        priority=v["priority"],
        pan=v["pan"],
        expiry=v["expiry"],
        service_code=v["service_code"],
        country=v["country"],
        pdol=bytes.fromhex(v["pdol"]),
        gpo_format=v["gpo_format"],
        blocked=v["blocked"],
    )


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def atr_problem(atr: bytes) -> str | None:
    """What is wrong with an ATR's structure, or None (ISO 7816-3)."""
    if not 2 <= len(atr) <= 33:
        return f"must be 2..33 bytes, not {len(atr)}"
    if atr[0] not in (0x3B, 0x3F):
        return f"TS must be 3B or 3F, not {atr[0]:02X}"
    y, historical = atr[1] >> 4, atr[1] & 0x0F
    i, protocols = 2, set()
    while True:
        i += bin(y & 0x7).count("1")  # TAi, TBi, TCi
        if not y & 0x8:
            break
        if i >= len(atr):
            return "ends inside the interface bytes"
        protocols.add(atr[i] & 0x0F)
        y = atr[i] >> 4
        i += 1
    end = i + historical
    needs_tck = bool(protocols - {0})
    if len(atr) != end + needs_tck:
        return f"T0 and TDi announce {end + needs_tck} bytes{' with TCK' if needs_tck else ''}, the ATR has {len(atr)}"
    if needs_tck:
        check = 0
        for b in atr[1:]:
            check ^= b
        if check:
            return "TCK does not match (XOR of T0..TCK must be 00)"
    return None


def _parse_dol(dol: bytes) -> list[tuple[bytes, int]]:
    """A DOL's (tag, length) pairs; ValueError when it is cut short."""
    out, i = [], 0
    while i < len(dol):
        start = i
        if dol[i] & 0x1F == 0x1F:  # multi-byte tag
            i += 1
            while i < len(dol) and dol[i] & 0x80:
                i += 1
        i += 1
        if i >= len(dol):
            raise ValueError(f"DOL ends inside the entry at byte {start}")
        out.append((dol[start:i], dol[i]))
        i += 1
    return out
