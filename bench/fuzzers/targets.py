"""Fuzz targets: an input generator, the code it attacks and the one error type allowed.

:func:`run_target` feeds a target's inputs and keeps every other exception
that escaped, with the input's number, as an :class:`Escape`.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import config as configmod
from agent.config import ConfigError
from agent.rig import RigError, load_rig
from bench.fuzzers import documents, frames
from devices import emv, tlv
from devices import ict3q8_codec as ict
from devices import lcdm_codec as lcdm
from devices.serial_link import ProtocolError

KEY = b"0123456789abcdef"


@dataclass(frozen=True)
class Target:
    name: str
    make: Callable[[random.Random], Any]  # one input
    attack: Callable[[Any], object]  # feeds it to the code
    allowed: tuple[type[BaseException], ...]  # the documented error type


@dataclass
class Escape:
    target: str
    index: int
    error: str  # "TypeName: message"
    input: str  # a short repr


@dataclass
class Result:
    target: str
    inputs: int = 0
    refused: int = 0  # inputs that raised the documented error
    seconds: float = 0.0
    escapes: list[Escape] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _every(allowed: type[BaseException], *calls: Callable[[], object]) -> None:
    """Run every call on the same input, whatever the one before raised (a refusal by the
    first must not spare the second); then raise the first documented error, if any."""
    refused: BaseException | None = None
    for call in calls:
        try:
            call()
        except allowed as exc:
            refused = refused or exc
    if refused is not None:
        raise refused


def _lcdm(data: bytes) -> None:
    _every(ProtocolError, lambda: lcdm.split_replies(data), lambda: lcdm.decode_reply(data))


def _lcdm_host(data: bytes) -> None:
    lcdm.decode_command(data)


def _lcdm_encode(plan: object) -> None:
    _every(
        ProtocolError,
        lambda: lcdm.dispense_command(plan, test=False),  # type: ignore[arg-type]
        lambda: lcdm.dispense_command(plan, test=True),  # type: ignore[arg-type]
    )


def _ict(data: bytes) -> None:
    _every(ProtocolError, lambda: ict.split_replies(data), lambda: ict.decode_reply(data))


def _ict_host(data: bytes) -> None:
    ict.decode_command(data)


def _tlv(data: bytes) -> None:
    def parse_and_find() -> None:
        tlv.find_all(tlv.parse(data), 0x5A)

    _every(tlv.TlvError, parse_and_find, lambda: tlv.parse_dol(data))


def _emv(transmit: frames.Transmit) -> None:
    emv.read_card(transmit, KEY, [frames.AID], "250101")


class _Files:
    """Writes each document to one scratch file (the loaders read paths)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="atm-fuzz-")
        self.path = Path(self.dir) / "fuzz.toml"

    def write(self, data: bytes) -> Path:
        self.path.write_bytes(data)
        return self.path

    def close(self) -> None:
        if self.path.exists():
            self.path.unlink()
        os.rmdir(self.dir)


_FILES: _Files | None = None


def _file(data: bytes) -> Path:
    global _FILES
    if _FILES is None:
        _FILES = _Files()
    return _FILES.write(data)


def _config(data: bytes) -> None:
    configmod.load(_file(data))


def _rig(data: bytes) -> None:
    load_rig(_file(data))


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("lcdm-reply", frames.lcdm_device_bytes, _lcdm, (ProtocolError,)),
        Target("lcdm-command", frames.lcdm_host_bytes, _lcdm_host, (ProtocolError,)),
        Target("lcdm-dispense", frames.lcdm_dispense_plan, _lcdm_encode, (ProtocolError,)),
        Target("ict3q8-reply", frames.ict_device_bytes, _ict, (ProtocolError,)),
        Target("ict3q8-command", frames.ict_host_bytes, _ict_host, (ProtocolError,)),
        Target("tlv", frames.tlv_bytes, _tlv, (tlv.TlvError,)),
        Target("emv-card", frames.emv_card, _emv, (emv.ChipReadError,)),
        Target("config", documents.config_file, _config, (ConfigError,)),
        Target("rig", documents.rig_file, _rig, (RigError,)),
    )
}


def run_target(
    target: Target, seed: int = 1, count: int | None = None, seconds: float | None = None, keep: int = 5
) -> Result:
    """Feed ``count`` inputs, or as many as fit in ``seconds``; keep the first ``keep`` escapes."""
    rng = random.Random(f"{target.name}:{seed}")
    result = Result(target.name)
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else None
    while (count is None or result.inputs < count) and (deadline is None or time.perf_counter() < deadline):
        item = target.make(rng)
        result.inputs += 1
        try:
            target.attack(item)
        except target.allowed:
            result.refused += 1
        except Exception as exc:  # the escapes this campaign is looking for
            if len(result.escapes) < keep:
                text = repr(item)
                result.escapes.append(
                    Escape(target.name, result.inputs, f"{type(exc).__name__}: {exc}"[:300], text[:300])
                )
            else:
                result.escapes.append(Escape(target.name, result.inputs, type(exc).__name__, ""))
    result.seconds = time.perf_counter() - start
    return result
