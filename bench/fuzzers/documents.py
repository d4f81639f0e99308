"""Malformed config and rig files, as bytes: bad encodings, deep nesting, huge
numbers, bad locators and broker URLs, wrong types, damaged TOML.

:data:`NAMED` holds the cases of issue 11 item 8 (and the questionable ones
accepted before) by name; :func:`config_file` and :func:`rig_file` make random
ones, each from a valid document with one kind of damage.
"""

from __future__ import annotations

import codecs
import random

from bench.fuzzers.mutate import mutate

KINDS = ("card_reader", "chip", "dispenser", "acceptor", "proximity", "keypad", "camera", "speaker", "display")
SECRET = '[security]\ncard_key = "00112233445566778899aabbccddeeff"\n'
HUGE = "100000000000000000000000"  # 10^23
BAD_LOCATORS = {
    "dispenser": (
        "lcdm2000+emu://?fault=meteor",
        "lcdm2000+emu://?upper=Z",
        "lcdm2000+emu://?baud=" + HUGE,
        "lcdm2000+emu://?baud=" + "9" * 5000,
        "lcdm2000+emu://?note_ms=nan",
        "lcdm2000+emu://?upper=A&lower=A",
        "lcdm2000+emu://?timing=maybe",
    ),
    "chip": ("pcsc://99", "pcsc://0?aids=A0", "pcsc://0?timeout=-1", "pcsc://" + "x" * 300),
    "proximity": (
        "gpiozero-pir://?pin=banana",
        "gpiozero-pir://?pin=99",
        "gpiozero-pir://?pin=" + "9" * 5000,
        "gpiozero-distance://?trigger=17&echo=27&enter=2&leave=1",
        "trace://?seed=-1",
    ),
    "keypad": ("sim://?%%%", "sim://?a=1&a=2", "sim://?=", "terminal://?x=1", "sim:/", "://"),
    "card_reader": ("ict3q8+emu://?retries=11", "ict3q8+emu://?parity=Z", "ict3q8+emu://?init=drop"),
    "display": ("sim://?keep=0", "sim://?width=640", "opencv://?width=" + HUGE),
    "camera": ("opencv://0?fps=x", "opencv://0?width=99999&height=1"),
}
BAD_BROKERS = (
    "mqtt://:::",
    "mqtt://localhost:99999",
    "mqtt://localhost:0",
    "mqtt://host:-1",
    "mqtt://user:pw@host",
    "mqtt://host/topic",
    "mqtt://",
    "http://host",
    "mqtt://host:" + HUGE,
)
BAD_VALUES = (HUGE, "-" + HUGE, "1e999", "-1", "0", "nan", "inf", '"x"', "true", "[]", "{}", "3.5", "1979-05-27")


def rig_text(name: str = '"fuzz"', **devices: str) -> str:
    lines = ["[rig]", f"name = {name}", "[devices]"] + [f'{k} = "{devices.get(k, "sim://")}"' for k in KINDS]
    return "\n".join(lines) + "\n"


def config_text(**sections: str) -> str:
    return "\n".join(f"[{name}]\n{body}" for name, body in sections.items()) + "\n"


def deep_arrays(depth: int) -> bytes:
    return ("x = " + "[" * depth + "]" * depth + "\n").encode()


def deep_tables(depth: int) -> bytes:
    return ("x = " + "{a = " * depth + "1" + "}" * depth + "\n").encode()


def _utf16(text: str, bom: bool) -> bytes:
    return (codecs.BOM_UTF16_LE if bom else b"") + text.encode("utf-16-le")


# name -> (kind, bytes): every case of issue 11 item 8, and the questionable ones
NAMED: dict[str, tuple[str, bytes]] = {
    "config latin-1": ("config", '[atm]\nid = "café"\n'.encode("latin-1")),
    "config utf-16": ("config", _utf16('[atm]\nid = "x"\n', True)),
    "config utf-16 without BOM": ("config", _utf16('[atm]\nid = "x"\n', False)),
    "rig latin-1": ("rig", rig_text('"café"').encode("latin-1")),
    "rig utf-16": ("rig", _utf16(rig_text(), True)),
    "config arrays 3000 deep": ("config", deep_arrays(3000)),
    "config tables 5000 deep": ("config", deep_tables(5000)),
    "rig tables 4000 deep": ("rig", rig_text().encode() + b"[more]\n" + deep_tables(4000)),
    "config fault=meteor": ("config", config_text(devices='dispenser = "lcdm2000+emu://?fault=meteor"').encode()),
    "config upper=Z": ("config", config_text(devices='dispenser = "lcdm2000+emu://?upper=Z"').encode()),
    "config pcsc://99": ("config", (config_text(devices='chip = "pcsc://99"') + SECRET).encode()),
    "rig pcsc://99": ("rig", rig_text(chip="pcsc://99").encode()),
    "config broker :::": ("config", config_text(telemetry='brokers = ["mqtt://:::"]').encode()),
    "config broker port 99999": ("config", config_text(telemetry='brokers = ["mqtt://localhost:99999"]').encode()),
    "config count 10^23": (
        "config",
        f'[[cassettes]]\nid = "A"\ndenomination = 1000\ncount = {HUGE}\n'.encode(),
    ),
    "config max_withdrawal 10^23": ("config", config_text(session=f"max_withdrawal = {HUGE}").encode()),
    "config pin=banana": ("config", config_text(devices='proximity = "gpiozero-pir://?pin=banana"').encode()),
    "rig pin=banana": ("rig", rig_text(proximity="gpiozero-pir://?pin=banana").encode()),
    "rig name = 5": ("rig", rig_text("5").encode()),
    "config sim://?%%%": ("config", config_text(devices='keypad = "sim://?%%%"').encode()),
    "rig sim://?%%%": ("rig", rig_text(keypad="sim://?%%%").encode()),
}

VALID_CONFIG = (
    config_text(
        atm='id = "atm-0042"\nlanguages = ["ja", "en"]\ncurrency = "JPY"',
        timeouts="idle_help = 15\nidle_cancel = 45\nhost = 10",
        session="pin_attempts = 3\nmax_withdrawal = 500000",
        telemetry="brokers = []\nkeepalive = 10\ncash_interval = 300",
        devices='dispenser = "sim://"\nkeypad = "sim://"',
    )
    + '[[cassettes]]\nid = "A"\ndenomination = 10000\ncount = 500\nlow = 50\n'
)


def _one_field(rng: random.Random) -> str:
    """A config that is valid but for one field."""
    section, key = rng.choice(
        (
            ("timeouts", "idle_help"),
            ("timeouts", "status_poll"),
            ("session", "pin_attempts"),
            ("session", "max_withdrawal"),
            ("telemetry", "keepalive"),
            ("telemetry", "ack_deadline"),
            ("telemetry", "outbox_max_mb"),
            ("atm", "id"),
            ("atm", "languages"),
            ("journal", "path"),
            ("rig", "file"),
            ("speech", "render_timeout"),
        )
    )
    return config_text(**{section: f"{key} = {rng.choice(BAD_VALUES)}"})


def _bad_cassettes(rng: random.Random) -> str:
    n = rng.choice((0, 1, 2, 9))
    field = rng.choice(("denomination", "count", "low", "empty", "id"))
    out = "cassettes = []\n" if n == 0 else ""
    for i in range(n):
        values = {"id": f'"{"A" if rng.random() < 0.3 else chr(65 + i)}"', "denomination": "1000", "count": "5"}
        if rng.random() < 0.6:
            values[field] = rng.choice(BAD_VALUES)
        out += "[[cassettes]]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    return out


def config_file(rng: random.Random) -> bytes:
    """One malformed (or, now and then, valid) config file."""
    how = rng.randrange(10)
    if how == 0:
        return rng.choice(list(NAMED.values()))[1]
    if how == 1:  # a bad locator
        kind = rng.choice(list(BAD_LOCATORS))
        return (config_text(devices=f'{kind} = "{rng.choice(BAD_LOCATORS[kind])}"') + SECRET).encode()
    if how == 2:
        return config_text(telemetry=f'brokers = ["{rng.choice(BAD_BROKERS)}"]').encode()
    if how == 3:
        return _one_field(rng).encode()
    if how == 4:
        return _bad_cassettes(rng).encode()
    if how == 5:  # nesting around the limit
        depth = rng.choice((31, 32, 33, 100, 3000))
        return rng.choice((deep_arrays, deep_tables))(depth)
    if how == 6:  # the text in another encoding
        codec = rng.choice(("utf-16", "utf-16-be", "utf-32", "latin-1", "cp932"))
        return (VALID_CONFIG + '\n# "café" 現金\n').encode(codec, "replace")
    if how == 7:  # unknown sections and keys, wrong types
        return rng.choice(("[atmm]\n", "[atm]\nidd = 1\n", "atm = 5\n", "[devices]\ntoaster = 'sim://'\n")).encode()
    return mutate(rng, VALID_CONFIG.encode(), rng.randint(1, 6))


def rig_file(rng: random.Random) -> bytes:
    """One malformed (or, now and then, valid) rig file."""
    how = rng.randrange(7)
    if how == 0:
        return rng.choice([data for kind, data in NAMED.values() if kind == "rig"])
    if how == 1:
        kind = rng.choice(list(BAD_LOCATORS))
        return rig_text(**{kind: rng.choice(BAD_LOCATORS[kind])}).encode()
    if how == 2:  # a device missing, an unknown one, a wrong type
        text = rig_text()
        return rng.choice(
            (
                text.replace('display = "sim://"\n', ""),
                text + 'printer = "sim://"\n',
                text.replace('"fuzz"', rng.choice(BAD_VALUES)),
                text.replace('camera = "sim://"', f"camera = {rng.choice(BAD_VALUES)}"),
                text.replace("[devices]", "[devices]\n[devices.x]"),
            )
        ).encode()
    if how == 3:
        return rig_text().encode() + b"[more]\n" + rng.choice((deep_arrays, deep_tables))(rng.choice((33, 500, 4000)))
    if how == 4:
        return rig_text().encode(rng.choice(("utf-16", "utf-16-le", "utf-32")))
    return mutate(rng, rig_text().encode(), rng.randint(1, 6))
