"""Read a TOML file so that any bad input is one clear line, not a traceback."""

from __future__ import annotations

import codecs
import os
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

MAX_SIZE = 1 << 20  # bytes: rig, config, catalogue and profile files are a few KB
MAX_DEPTH = 32  # tables and arrays inside each other


class TomlFileError(ValueError):
    """The file cannot be read as TOML: ``"<file>: <problem>"``."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file, self.problem = file, problem


def read_toml(path: str | os.PathLike[str] | Traversable, what: str = "file") -> dict[str, Any]:
    """The parsed document; TomlFileError naming ``path`` for any problem.

    ``what`` names the file in "no such ..." (e.g. ``"rig file"``). A UTF-8
    byte-order mark is allowed; UTF-16 and other non-UTF-8 text is refused.
    """
    where = str(path)
    try:
        with (path if isinstance(path, Traversable) else Path(path)).open("rb") as fh:
            data = fh.read(MAX_SIZE + 1)
    except FileNotFoundError:
        raise TomlFileError(where, f"no such {what}") from None
    except IsADirectoryError:
        raise TomlFileError(where, f"is a directory, not a {what}") from None
    except OSError as exc:
        raise TomlFileError(where, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SIZE:
        raise TomlFileError(where, f"larger than {MAX_SIZE // 1024} KiB, not a {what}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise TomlFileError(where, "is UTF-16 text; TOML files must be UTF-8")
    if b"\x00" in data:  # TOML allows no NUL; text full of them is UTF-16 or UTF-32 without a BOM
        if data.count(0) * 3 >= len(data):
            raise TomlFileError(where, "is UTF-16 text (no byte-order mark); TOML files must be UTF-8")
        line = data[: data.index(0)].count(b"\n") + 1
        raise TomlFileError(where, f"has a NUL byte on line {line}; not a {what}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TomlFileError(
            where, f"not UTF-8 text (byte {data[exc.start]:#04x} on line {line}); TOML files must be UTF-8"
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(where, f"not valid TOML: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise TomlFileError(where, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlFileError(where, f"nested more than {MAX_DEPTH} levels deep") from None
    if _depth(doc) > MAX_DEPTH:
        raise TomlFileError(where, f"nested more than {MAX_DEPTH} levels deep")
    return doc


def _depth(doc: dict[str, Any]) -> int:
    """How many tables and arrays are inside each other (no recursion)."""
    deepest = 0
    todo: list[tuple[dict[str, Any] | list[Any], int]] = [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        todo.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest
