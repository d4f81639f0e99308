"""Rig files: which backend drives each device of one ATM.

A rig is a TOML file with a ``[rig]`` table (``name``, ``description``) and a
``[devices]`` table naming a locator for every device kind, e.g.
``dispenser = "lcdm2000:///dev/ttyUSB0?baud=9600"``. ``rigs/sim.toml`` (the
default) runs the real serial drivers on emulators; ``rigs/pi-kiosk.toml``
is the example for real devices.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from devices.registry import DEVICE_KINDS, Locator, LocatorError, backend_class

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RIG = ROOT / "rigs" / "sim.toml"


class RigError(ValueError):
    """A rig file problem; the message names the file and the field."""


@dataclass(frozen=True)
class Rig:
    name: str
    path: str
    devices: dict[str, str]
    description: str = ""


def scheme(locator: str) -> str:
    return Locator.parse(locator).scheme


def is_simulated(locator: str) -> bool:
    """In-process simulation or emulator: no real device, no real card."""
    s = scheme(locator)
    return s in ("sim", "trace") or s.endswith("+emu")


def is_emulated(locator: str) -> bool:
    """A real driver on an emulator that can inject faults."""
    return scheme(locator).endswith("+emu")


def check_locator(kind: str, text, where: str) -> str:
    if not isinstance(text, str):
        raise RigError(f"{where}: must be a locator string like 'sim://', got {text!r}")
    try:
        backend_class(kind, Locator.parse(text))
    except LocatorError as exc:
        raise RigError(f"{where}: {exc}") from None
    return text


def read_toml(path: Path, error: type[Exception], what: str) -> dict:
    """Parse a TOML file; any problem is ``error`` naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None


def load_rig(path: str | Path) -> Rig:
    """Read and check a rig file: every device named, every backend known."""
    path = Path(path)
    raw = read_toml(path, RigError, "rig file")
    unknown = sorted(set(raw) - {"rig", "devices"})
    if unknown:
        raise RigError(f"{path}: {unknown[0]}: unknown table (known: rig, devices)")
    meta, devices = raw.get("rig", {}), raw.get("devices")
    if not isinstance(meta, dict) or set(meta) - {"name", "description"}:
        raise RigError(f"{path}: rig: a table with only 'name' and 'description'")
    if not isinstance(devices, dict):
        raise RigError(f"{path}: devices: missing (a table naming a locator per device)")
    unknown = sorted(set(devices) - set(DEVICE_KINDS))
    if unknown:
        raise RigError(f"{path}: devices.{unknown[0]}: unknown device (known: {', '.join(DEVICE_KINDS)})")
    missing = [k for k in DEVICE_KINDS if k not in devices]
    if missing:
        raise RigError(f"{path}: devices.{missing[0]}: missing (every device needs a locator; 'sim://' simulates)")
    checked = {k: check_locator(k, devices[k], f"{path}: devices.{k}") for k in DEVICE_KINDS}
    return Rig(str(meta.get("name", path.stem)), str(path), checked, str(meta.get("description", "")))
