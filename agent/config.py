"""Configuration: one TOML file, every field validated.

An error is a :class:`ConfigError` whose message names the field, e.g.
``timeouts.idle_help: must be a number > 0, got -3``. Unknown sections and
keys are errors too, so a typo never becomes a silent default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from devices.dispenser import Cassette
from agent.rig import RigError, check_locator, is_simulated, load_rig, read_toml
from devices.registry import DEVICE_KINDS


class ConfigError(ValueError):
    """A configuration problem; the message names the field."""


def _seconds(v) -> bool:
    """A time in seconds: finite, from 10 ms to a day."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.01 <= v <= 86_400


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LANG = re.compile(r"^[a-z]{2}$")

# section -> field -> (default, check, what the check wants)
Spec = dict[str, tuple[Any, Callable[[Any], bool], str]]
SECTIONS: dict[str, Spec] = {
    "atm": {
        "id": ("atm-0001", lambda v: isinstance(v, str) and bool(_ID.match(v)),
               "1-64 letters, digits, '-' or '_'"),
        "languages": (["ja", "en", "zh", "ko"], lambda v: isinstance(v, list) and v
                      and all(isinstance(x, str) and _LANG.match(x) for x in v),
                      "a non-empty list of 2-letter language codes"),
        "currency": ("JPY", lambda v: isinstance(v, str) and len(v) == 3 and v.isupper(),
                     "a 3-letter ISO 4217 code"),
    },
    "timeouts": {name: (default, _seconds, "a number of seconds from 0.01 to 86400") for name, default in {
        "idle_help": 15.0, "idle_cancel": 45.0, "host": 10.0, "card_take": 30.0,
        "cash_take": 30.0, "leave_debounce": 1.0, "selftest_retry": 60.0}.items()},
    "session": {
        "pin_attempts": (3, lambda v: _count(v) and v >= 1, "a whole number >= 1"),
        "max_withdrawal": (500_000, lambda v: _count(v) and v > 0, "a whole number > 0"),
        "magstripe_fallback": (True, lambda v: isinstance(v, bool), "true or false"),
    },
    "telemetry": {
        "brokers": ([], lambda v: isinstance(v, list) and all(
            isinstance(u, str) and u.startswith(("mqtt://", "mqtts://")) for u in v),
            "a list of mqtt:// or mqtts:// URLs"),
        "cash_interval": (300.0, _seconds, "a number of seconds from 0.01 to 86400"),
        "keepalive": (10, lambda v: _count(v) and 5 <= v <= 600, "a whole number from 5 to 600"),
        "failback_after": (30.0, _seconds, "a number of seconds from 0.01 to 86400"),
        "outbox": ("", lambda v: isinstance(v, str), "a file path ('' for next to the journal)"),
        "outbox_max_mb": (64, lambda v: _count(v) and 1 <= v <= 100_000, "a whole number of MB from 1 to 100000"),
        "outbox_max_age": (7 * 86_400.0, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                           and 60 <= v <= 90 * 86_400, "a number of seconds from 60 to 7776000 (90 days)"),
        "tls_ca": ("", lambda v: isinstance(v, str), "the CA file that signed the brokers' certificates"),
        "tls_cert": ("", lambda v: isinstance(v, str), "this ATM's client certificate file"),
        "tls_key": ("", lambda v: isinstance(v, str), "this ATM's private key file"),
    },
    "journal": {
        "path": (":memory:", lambda v: isinstance(v, str) and v != "", "a file path or ':memory:'"),
    },
    "security": {
        "card_key": ("6174 6d2d 6465 6d6f 2d6b 6579 2d6f 6e6c 792d 6e6f 742d 7365 6372 6574",
                     lambda v: isinstance(v, str) and _hex_key(v) is not None,
                     "at least 16 bytes written in hex"),
    },
    "speech": {
        "cache_dir": ("", lambda v: isinstance(v, str), "a directory path ('' for the default)"),
        "render_timeout": (60.0, _seconds, "a number of seconds from 0.01 to 86400"),
    },
    "rig": {
        "file": ("", lambda v: isinstance(v, str), "a rig file path, relative to this file ('' for none)"),
    },
    "devices": {kind: ("sim://", lambda v: isinstance(v, str), "a backend locator like 'sim://'")
                for kind in DEVICE_KINDS},
}

CASSETTE_FIELDS: Spec = {
    "id": (None, lambda v: isinstance(v, str) and bool(_ID.match(v)), "a short name"),
    "denomination": (None, lambda v: _count(v) and v > 0, "a whole number > 0"),
    "count": (None, _count, "a whole number >= 0"),
    "low": (0, _count, "a whole number >= 0"),
    "empty": (0, _count, "a whole number >= 0"),
}
DEFAULT_CASSETTES = [{"id": "A", "denomination": 10000, "count": 500, "low": 50},
                     {"id": "B", "denomination": 1000, "count": 1000, "low": 100}]


def _hex_key(text: str) -> bytes | None:
    try:
        key = bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        return None
    return key if len(key) >= 16 else None


def uses_demo_key(cfg: "Config") -> bool:
    return cfg.card_key == _hex_key(SECTIONS["security"]["card_key"][0])


@dataclass
class Config:
    atm_id: str
    languages: list[str]
    currency: str
    devices: dict[str, str]
    cassettes: list[Cassette]
    timeouts: dict[str, float]
    session: dict[str, Any]
    telemetry: dict[str, Any]
    journal_path: str
    card_key: bytes = field(repr=False)
    speech: dict[str, Any]
    source: str = "<defaults>"
    rig: str = ""                 # the rig file the devices came from ('' for none)
    host: str = "sim://"          # the bank host backend


def _section(name: str, raw: Any, spec: Spec) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: must be a table")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown field (known: {', '.join(spec)})")
    out = {}
    for key, (default, check, wants) in spec.items():
        if key not in raw:
            if default is None:
                raise ConfigError(f"{name}.{key}: missing")
            out[key] = default
            continue
        value = raw[key]
        if not check(value):
            raise ConfigError(f"{name}.{key}: must be {wants}, got {value!r}")
        out[key] = float(value) if isinstance(default, float) else value
    return out


def _cassettes(raw: Any) -> list[Cassette]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("cassettes: must be a non-empty array of tables ([[cassettes]])")
    result, seen = [], set()
    for i, item in enumerate(raw):
        values = _section(f"cassettes[{i}]", item, CASSETTE_FIELDS)
        if values["id"] in seen:
            raise ConfigError(f"cassettes[{i}].id: duplicate cassette id {values['id']!r}")
        seen.add(values["id"])
        if values["empty"] > values["low"]:
            raise ConfigError(f"cassettes[{i}].empty: must not be above low ({values['low']})")
        result.append(Cassette(**values))
    return result


def _devices(raw: dict, rig_file: str, base_dir: Path | None) -> tuple[dict[str, str], str]:
    """The rig's devices (or all ``sim://``), with ``[devices]`` entries on top."""
    devices = {kind: "sim://" for kind in DEVICE_KINDS}
    if rig_file:
        path = Path(rig_file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            rig = load_rig(path)
        except RigError as exc:
            raise ConfigError(f"rig.file: {exc}") from None
        devices, rig_file = dict(rig.devices), str(path)
    for kind, text in raw.get("devices", {}).items():
        try:
            devices[kind] = check_locator(kind, text, f"devices.{kind}")
        except RigError as exc:
            raise ConfigError(str(exc)) from None
    return devices, rig_file


def from_dict(raw: dict, source: str = "<dict>", base_dir: Path | None = None, rig: str | None = None) -> Config:
    """Validate a parsed TOML document. ``rig`` (a path) replaces the document's rig file."""
    unknown = sorted(set(raw) - set(SECTIONS) - {"cassettes"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section (known: {', '.join([*SECTIONS, 'cassettes'])})")
    s = {name: _section(name, raw.get(name, {}), spec) for name, spec in SECTIONS.items()}
    devices, rig_file = _devices(raw, s["rig"]["file"] if rig is None else rig, base_dir if rig is None else None)
    if (s["security"]["card_key"] == SECTIONS["security"]["card_key"][0]
            and not all(is_simulated(devices[k]) for k in ("card_reader", "chip"))):
        raise ConfigError("security.card_key: the public demo key cannot be used with real card"
                          " readers; set a secret of at least 16 bytes")
    tel = s["telemetry"]
    if any(u.startswith("mqtts://") for u in tel["brokers"]) and not tel["tls_ca"]:
        raise ConfigError("telemetry.tls_ca: an mqtts:// broker needs the CA file to verify it")
    if bool(tel["tls_cert"]) != bool(tel["tls_key"]):
        raise ConfigError("telemetry.tls_key: give tls_cert and tls_key together (mutual TLS)")
    t = s["timeouts"]
    if t["idle_cancel"] <= t["idle_help"]:
        raise ConfigError("timeouts.idle_cancel: must be longer than timeouts.idle_help")
    return Config(
        atm_id=s["atm"]["id"], languages=s["atm"]["languages"], currency=s["atm"]["currency"],
        devices=devices, cassettes=_cassettes(raw.get("cassettes", DEFAULT_CASSETTES)),
        timeouts=t, session=s["session"], telemetry=s["telemetry"],
        journal_path=s["journal"]["path"], card_key=_hex_key(s["security"]["card_key"]),
        speech=s["speech"], source=source, rig=rig_file)


def load(path: str | Path | None, rig: str | None = None) -> Config:
    """Load and validate a TOML file; ``None`` gives the built-in defaults.
    ``rig`` (a rig file) replaces the rig the file names."""
    if path is None:
        return from_dict({}, "<defaults>", rig=rig)
    path = Path(path)
    raw = read_toml(path, ConfigError, "config file")
    try:
        return from_dict(raw, str(path), path.parent, rig)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
