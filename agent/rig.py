"""Rig files: which backend drives each device of one ATM.

A rig is a TOML file with a ``[rig]`` table (``name``, ``description``) and a
``[devices]`` table naming a locator for every device kind, e.g.
``dispenser = "lcdm2000:///dev/ttyUSB0?baud=9600"``. The rigs shipped in the
``rigs`` package are named by a bare name: ``sim`` (the default) runs the real
serial drivers on emulators, ``pcsc`` reads the chip through pcscd and
``pi-kiosk`` is the example for real devices. Anything else is a file path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent import resources
from devices.fields import Field, FieldError, TomlFileError, check_table, fields
from devices.fields import read_toml as _read_toml
from devices.registry import DEVICE_KINDS, Locator, LocatorError, backend_class

DEFAULT_RIG = resources.rig_path(resources.DEFAULT_RIG_NAME)


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


def locator_problem(kind: str, text: str) -> str | None:
    """Why ``text`` is no locator of a known ``kind`` backend, or None."""
    try:
        backend_class(kind, Locator.parse(text))
    except LocatorError as exc:
        return str(exc)
    return None


def check_locator(kind: str, text, where: str) -> str:
    if not isinstance(text, str):
        raise RigError(f"{where}: must be a locator string like 'sim://', got {text!r}")
    problem = locator_problem(kind, text)
    if problem:
        raise RigError(f"{where}: {problem}")
    return text


def locator_field(kind: str, default=None) -> Field:
    """The field naming the backend of one device kind."""
    extra = {} if default is None else {"default": default}
    return Field(
        kind,
        str,
        description="a backend locator like 'sim://'; every device needs one",
        length=(1, 1024),
        check=lambda text: locator_problem(kind, text),
        **extra,
    )


RIG_TABLES = fields(
    Field("rig", dict, {}, "the rig's name and description"),
    Field("devices", dict, description="a table naming a locator per device"),
)
RIG_META = fields(
    Field("name", str, "", "a short name for the rig", length=(0, 64)),
    Field("description", str, "", "what the rig is for", length=(0, 1000)),
)
RIG_DEVICES = fields(*(locator_field(kind) for kind in DEVICE_KINDS))


def read_toml(path: Path, error: type[Exception], what: str) -> dict:
    """Parse a TOML file; any problem is ``error`` naming the file."""
    try:
        return _read_toml(path, what)
    except TomlFileError as exc:
        raise error(str(exc)) from None


def find_rig(text: str, base_dir: Path | None = None) -> Path:
    """The rig file ``text`` names: a shipped rig's bare name, else a path
    (relative to ``base_dir`` when given, else to the working directory)."""
    if resources.RIG_NAME.fullmatch(text):
        try:
            return resources.rig_path(text)
        except KeyError:
            raise RigError(
                f"{text}: no such shipped rig (shipped: {', '.join(resources.shipped_rigs())}; or give a file path)"
            ) from None
    path = Path(text)
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def load_rig(path: str | Path) -> Rig:
    """Read and check a rig file: every device named, every backend known."""
    path = Path(path)
    raw = read_toml(path, RigError, "rig file")
    try:
        tables = check_table(raw, RIG_TABLES, noun="table")
        meta = check_table(tables["rig"], RIG_META, "rig")
        devices = check_table(tables["devices"], RIG_DEVICES, "devices", noun="device")
    except FieldError as exc:
        raise RigError(f"{path}: {exc}") from None
    return Rig(meta["name"] or path.stem, str(path), devices, meta["description"])
