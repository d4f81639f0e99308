"""Configuration: one TOML file, every field declared and checked.

An error is a :class:`ConfigError` whose message names the field, e.g.
``timeouts.idle_help: -3 is outside 0.01..86400 (seconds without input before
the help video)``. Unknown sections and keys are errors too, so a typo never
becomes a silent default; every number is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.rig import RigError, find_rig, is_simulated, load_rig, locator_field, read_toml
from devices.dispenser import Cassette
from devices.fields import Field, FieldError, check_table, fields
from devices.registry import DEVICE_KINDS, Locator, LocatorError

DAY = 86_400
MAX_NOTES = 1_000_000  # notes in one cassette (real ones hold a few thousand)
MAX_CASSETTES = 8


class ConfigError(ValueError):
    """A configuration problem; the message names the field."""


def _seconds(name: str, default: float, meaning: str) -> Field:
    return Field(name, float, default, f"seconds {meaning}", low=0.01, high=DAY)


def _hex_key(text: str) -> bytes | None:
    try:
        key = bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        return None
    return key if len(key) >= 16 else None


def _broker_problem(url: str) -> str | None:
    """Why ``url`` is no broker URL the link can use (host, port 1-65535, nothing else), or None."""
    from agent.mqtt.brokers import parse_broker_url

    try:
        parse_broker_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def host_problem(text: str) -> str | None:
    """Why ``text`` names no known bank host backend, or None."""
    from agent.host import HOSTS

    try:
        scheme = Locator.parse(text).scheme
    except LocatorError as exc:
        return str(exc)
    return None if scheme in HOSTS else f"unknown bank host {scheme!r} (known: {', '.join(sorted(HOSTS))})"


def _path(name: str, default: str, meaning: str) -> Field:
    return Field(name, str, default, meaning, length=(0, 4096))


ATM_ID = r"[A-Za-z0-9_-]{1,64}"
SECTIONS: dict[str, dict[str, Field]] = {
    "atm": fields(
        Field("id", str, "atm-0001", "1-64 letters, digits, '-' or '_'", pattern=ATM_ID),
        Field(
            "languages",
            list,
            ["ja", "en", "zh", "ko"],
            "the prompt languages, the default first",
            length=(1, 16),
            items=Field("language", str, description="a 2-letter language code", pattern=r"[a-z]{2}"),
        ),
        Field("currency", str, "JPY", "a 3-letter ISO 4217 code", pattern=r"[A-Z]{3}"),
        Field(
            "host",
            str,
            "sim://",
            "the bank host's locator (sim:// is the simulated bank)",
            length=(1, 1024),
            check=host_problem,
        ),
    ),
    "timeouts": fields(
        _seconds("idle_help", 15.0, "without input before the help video"),
        _seconds("idle_cancel", 45.0, "without input before the session is cancelled"),
        _seconds("host", 10.0, "to wait for the bank host"),
        _seconds("card_take", 30.0, "before a card left at the gate is captured"),
        _seconds("cash_take", 30.0, "before cash left at the shutter is retracted"),
        _seconds("leave_debounce", 1.0, "the customer must be gone before a prompt"),
        _seconds("selftest_retry", 60.0, "between self-tests of faulty devices"),
        _seconds("status_poll", 5.0, "between status polls of every device while no customer is served"),
    ),
    "session": fields(
        Field("pin_attempts", int, 3, "wrong PINs before the card is retained", low=1, high=10),
        Field("max_withdrawal", int, 500_000, "the largest withdrawal, in currency units", low=1, high=10**10),
        Field("magstripe_fallback", bool, True, "read the stripe when the chip fails"),
    ),
    "telemetry": fields(
        Field(
            "brokers",
            list,
            [],
            "broker URLs, primary first",
            length=(0, 8),
            items=Field("broker", str, length=(1, 1024), check=_broker_problem),
        ),
        _seconds("cash_interval", 300.0, "between periodic cash reports"),
        Field("heartbeat_interval", float, 60.0, "seconds between heartbeats", low=5, high=3600),
        Field("keepalive", int, 10, "MQTT keepalive in seconds", low=5, high=600),
        _seconds("failback_after", 30.0, "the primary must answer again before going back to it"),
        Field(
            "ack_deadline",
            float,
            2.0,
            "seconds a PUBLISH or PINGREQ may wait for its answer before the broker counts as gone",
            low=0.2,
            high=60,
        ),
        _path("outbox", "", "the outbox file ('' for next to the journal)"),
        Field("outbox_max_mb", int, 64, "the outbox's size bound in MB", low=1, high=100_000),
        Field(
            "outbox_max_age",
            float,
            7 * DAY * 1.0,
            "seconds the outbox keeps a message (90 days at most)",
            low=60,
            high=90 * DAY,
        ),
        _path("tls_ca", "", "the CA file that signed the brokers' certificates"),
        _path("tls_cert", "", "this ATM's client certificate file"),
        _path("tls_key", "", "this ATM's private key file"),
    ),
    "journal": fields(
        Field(
            "path",
            str,
            "",
            "a file path, ':memory:', or '' for the default (atm run: var/<atm id>/journal.db in a source tree,"
            " /var/lib/atm/journal.db once installed; in memory elsewhere)",
            length=(0, 4096),
        ),
        Field(
            "checkpoint_rows",
            int,
            500,
            "rows between two signed checkpoints of the hash chain, at most",
            low=1,
            high=1_000_000,
        ),
        Field(
            "checkpoint_seconds",
            float,
            60.0,
            "seconds a written row waits for its signed checkpoint, at most (checked as rows are written)",
            low=1,
            high=DAY,
        ),
    ),
    "security": fields(
        Field(
            "card_key",
            str,
            "6174 6d2d 6465 6d6f 2d6b 6579 2d6f 6e6c 792d 6e6f 742d 7365 6372 6574",
            "the card token secret",
            length=(1, 1024),
            check=lambda v: None if _hex_key(v) else "must be at least 16 bytes written in hex",
        ),
        _path(
            "signing_key",
            "",
            "the Ed25519 key file that signs the journal's checkpoints ('' for <journal>-signing.key;"
            " made with mode 0600 when absent)",
        ),
    ),
    "evidence": fields(
        _path(
            "folder",
            "",
            "the camera's evidence images ('' for evidence/ next to the journal; none with an in-memory journal)",
        ),
        Field("keep_days", int, 90, "days an evidence image is kept", low=1, high=3650),
        Field("max_mb", int, 1024, "the evidence images' bound in MB (oldest go first)", low=1, high=1_000_000),
    ),
    "control": fields(
        _path(
            "socket",
            "",
            "the control API's Unix socket ('' for $RUNTIME_DIRECTORY/control.sock under systemd,"
            " else control.sock next to the journal; none with an in-memory journal)",
        ),
        Field(
            "group",
            str,
            "",
            "the Unix group whose members may use the control socket ('' for this user and root only)",
            length=(0, 32),
            pattern=r"([a-z_][a-z0-9_-]*)?",
        ),
    ),
    "speech": fields(
        _path("cache_dir", "", "the WAV cache directory ('' for the default)"),
        _seconds("render_timeout", 60.0, "the speech renderer may take"),
    ),
    "rig": fields(
        _path("file", "", "a shipped rig's name or a rig file, relative to this file ('' for none)"),
    ),
    "devices": fields(*(locator_field(kind, "sim://") for kind in DEVICE_KINDS)),
}

CASSETTE_FIELDS = fields(
    Field("id", str, description="a short name: 1-64 letters, digits, '-' or '_'", pattern=ATM_ID),
    Field("denomination", int, description="the note's value", low=1, high=1_000_000),
    Field("count", int, description="notes in the cassette", low=0, high=MAX_NOTES),
    Field("low", int, 0, "at or below this many notes the cassette is low", low=0, high=MAX_NOTES),
    Field("empty", int, 0, "at or below this many notes the cassette is empty", low=0, high=MAX_NOTES),
)
DEFAULT_CASSETTES = [
    {"id": "A", "denomination": 10000, "count": 500, "low": 50},
    {"id": "B", "denomination": 1000, "count": 1000, "low": 100},
]
DEMO_KEY = SECTIONS["security"]["card_key"].default


SOURCE_TREE = Path(__file__).resolve().parent.parent  # the checkout, when run from one
INSTALLED_JOURNAL = Path("/var/lib/atm/journal.db")


def default_journal_path(atm_id: str) -> Path:
    """Where ``atm run`` keeps its journal when none is configured (ours): in a source tree
    ``var/<atm id>/journal.db``, one per ATM id, so trying another config never mixes two
    ATMs' counts and outboxes (the caller makes the folder); ``/var/lib/atm/journal.db``
    once installed, where one ATM runs."""
    if (SOURCE_TREE / "setup.cfg").is_file() and (SOURCE_TREE / "agent").is_dir():
        return SOURCE_TREE / "var" / atm_id / "journal.db"
    return INSTALLED_JOURNAL


def missing_folder(path: str) -> str | None:
    """Why the database file ``path`` cannot be made (its folder is missing), or None; never
    made silently, as a typo would then start a fresh journal with fresh counts."""
    if path in ("", ":memory:"):
        return None
    folder = Path(path).parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist (make it, or name another file)"
    return None


def uses_demo_key(cfg: Config) -> bool:
    return cfg.card_key == _hex_key(DEMO_KEY)


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
    control: dict[str, Any] = field(default_factory=lambda: {"socket": "", "group": ""})
    source: str = "<defaults>"
    rig: str = ""  # the rig file the devices came from ('' for none)
    host: str = "sim://"  # the bank host backend
    signing_key: str = ""  # the checkpoints' key file ('' for next to the journal)
    checkpoints: dict[str, Any] = field(default_factory=lambda: {"rows": 500, "seconds": 60.0})
    evidence: dict[str, Any] = field(default_factory=lambda: {"folder": "", "keep_days": 90, "max_mb": 1024})


def _cassettes(raw: Any) -> list[Cassette]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CASSETTES:
        raise ConfigError(f"cassettes: must be an array of 1 to {MAX_CASSETTES} tables ([[cassettes]])")
    result, seen = [], set()
    for i, item in enumerate(raw):
        values = check_table(item, CASSETTE_FIELDS, f"cassettes[{i}]")
        if values["id"] in seen:
            raise ConfigError(f"cassettes[{i}].id: duplicate cassette id {values['id']!r}")
        seen.add(values["id"])
        if values["empty"] > values["low"]:
            raise ConfigError(f"cassettes[{i}].empty: must not be above low ({values['low']})")
        result.append(Cassette(**values))
    return result


def _devices(given: dict, rig_file: str, base_dir: Path | None) -> tuple[dict[str, str], str]:
    """The rig's devices (or all ``sim://``), with the ``[devices]`` entries on top."""
    devices = {kind: "sim://" for kind in DEVICE_KINDS}
    if rig_file:
        try:
            path = find_rig(rig_file, base_dir)
            rig = load_rig(path)
        except RigError as exc:
            raise ConfigError(f"rig.file: {exc}") from None
        devices, rig_file = dict(rig.devices), str(path)
    devices.update(given)
    return devices, rig_file


def from_dict(raw: dict, source: str = "<dict>", base_dir: Path | None = None, rig: str | None = None) -> Config:
    """Validate a parsed TOML document. ``rig`` (a name or path) replaces the document's rig file."""
    try:
        return _from_dict(raw, source, base_dir, rig)
    except FieldError as exc:
        raise ConfigError(str(exc)) from None


def _from_dict(raw: dict, source: str, base_dir: Path | None, rig: str | None) -> Config:
    known = [*SECTIONS, "cassettes"]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section (known: {', '.join(known)})")
    s = {name: check_table(raw.get(name, {}), spec, name) for name, spec in SECTIONS.items()}
    given = {kind: s["devices"][kind] for kind in raw.get("devices", {})}
    devices, rig_file = _devices(given, s["rig"]["file"] if rig is None else rig, base_dir if rig is None else None)
    if s["security"]["card_key"] == DEMO_KEY and not all(is_simulated(devices[k]) for k in ("card_reader", "chip")):
        raise ConfigError(
            "security.card_key: the public demo key cannot be used with real card"
            " readers; set a secret of at least 16 bytes"
        )
    tel = s["telemetry"]
    if any(u.startswith("mqtts://") for u in tel["brokers"]) and not tel["tls_ca"]:
        raise ConfigError("telemetry.tls_ca: an mqtts:// broker needs the CA file to verify it")
    if bool(tel["tls_cert"]) != bool(tel["tls_key"]):
        raise ConfigError("telemetry.tls_key: give tls_cert and tls_key together (mutual TLS)")
    t = s["timeouts"]
    if t["idle_cancel"] <= t["idle_help"]:
        raise ConfigError("timeouts.idle_cancel: must be longer than timeouts.idle_help")
    card_key = _hex_key(s["security"]["card_key"])
    assert card_key is not None  # the field's check accepted it
    return Config(
        atm_id=s["atm"]["id"],
        languages=s["atm"]["languages"],
        currency=s["atm"]["currency"],
        devices=devices,
        cassettes=_cassettes(raw.get("cassettes", DEFAULT_CASSETTES)),
        timeouts=t,
        session=s["session"],
        telemetry=s["telemetry"],
        journal_path=s["journal"]["path"],
        card_key=card_key,
        speech=s["speech"],
        control=s["control"],
        source=source,
        rig=rig_file,
        host=s["atm"]["host"],
        signing_key=s["security"]["signing_key"],
        checkpoints={"rows": s["journal"]["checkpoint_rows"], "seconds": s["journal"]["checkpoint_seconds"]},
        evidence=s["evidence"],
    )


def load(path: str | Path | None, rig: str | None = None) -> Config:
    """Load and validate a TOML file; ``None`` gives the built-in defaults.
    ``rig`` (a shipped rig's name or a rig file) replaces the rig the file names."""
    if path is None:
        return from_dict({}, "<defaults>", rig=rig)
    path = Path(path)
    raw = read_toml(path, ConfigError, "config file")
    try:
        return from_dict(raw, str(path), path.parent, rig)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
