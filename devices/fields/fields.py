"""One way to declare and check the keys of a table (TOML, JSON).

A :class:`Field` names a key, its type, its default, its bounds or choices and
what it means. :func:`check_table` checks a table against its fields and raises
one :class:`FieldError` naming the first bad field, e.g.
``timeouts.idle_help: -3 is outside 0.01..86400 (seconds without input before
the help video)``. Unknown keys are errors; every number has bounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()  # optional, and left out when not given
TYPE_WORDS = {str: "str", int: "int", float: "int or float", bool: "bool", list: "array", dict: "table"}
MAX_TEXT = 4096  # characters of a text field unless it says otherwise


class FieldError(ValueError):
    """One bad field: ``str()`` is ``"<field>: <problem>"``.

    ``reason`` is ``"unknown"``, ``"missing"`` or ``"bad"``.
    """

    def __init__(self, field: str, problem: str, reason: str = "bad"):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem, self.reason = field, problem, reason


@dataclass(frozen=True)
class Field:
    """One key of a table.

    ``type`` is ``str``, ``int``, ``float`` (an int is fine too), ``bool``,
    ``list`` or ``dict``. Numbers need ``low``/``high``; text and arrays have
    a ``length`` range. ``pattern`` (a regex the whole text matches) and
    ``check`` (value -> problem or None) say more; ``items`` checks each
    element of an array. ``description`` is what the field means, for people.
    """

    name: str
    type: type
    default: Any = REQUIRED
    description: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    length: tuple[int, int] = (0, MAX_TEXT)
    pattern: str | None = None
    check: Callable[[Any], str | None] | None = None
    items: Field | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPE_WORDS:
            raise TypeError(f"field {self.name}: unsupported type {self.type!r}")
        if self.type in (int, float) and not self.choices and (self.low is None or self.high is None):
            raise TypeError(f"field {self.name}: a number needs low and high bounds")

    def _explain(self, problem: str) -> str:
        return f"{problem} ({self.description})" if self.description else problem

    def value(self, raw: Any, where: str) -> Any:
        """``raw`` checked (an int becomes a float for a float field); FieldError if bad."""
        kind = self.type
        ok = isinstance(raw, (int, float) if kind is float else kind)
        if not ok or (isinstance(raw, bool) and kind is not bool):
            raise FieldError(
                where, self._explain(f"must be {TYPE_WORDS[kind]}, got {type(raw).__name__} {_short(raw)}")
            )
        if self.choices and raw not in self.choices:
            raise FieldError(
                where, self._explain(f"must be one of {', '.join(map(str, self.choices))}, got {_short(raw)}")
            )
        if (
            kind in (int, float)
            and self.low is not None
            and not ((isinstance(raw, int) or math.isfinite(raw)) and self.low <= raw <= self.high)
        ):
            raise FieldError(where, self._explain(f"{_short(raw)} is outside {_num(self.low)}..{_num(self.high)}"))
        if kind is float:
            raw = float(raw)
        if kind in (str, list):
            lo, hi = self.length
            if not lo <= len(raw) <= hi:
                raise FieldError(where, self._explain(_length_problem(raw, lo, hi)))
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise FieldError(where, f"must be {self.description or 'like ' + self.pattern}, got {_short(raw)}")
        if self.items is not None:
            raw = [self._item(self.items, item, i, where) for i, item in enumerate(raw)]
        if self.check is not None:
            problem = self.check(raw)
            if problem:
                raise FieldError(where, problem)
        return raw

    @staticmethod
    def _item(items: Field, item: Any, index: int, where: str) -> Any:
        try:
            return items.value(item, where)
        except FieldError as exc:
            raise FieldError(where, f"element {index}: {exc.problem}") from None


def fields(*declared: Field) -> dict[str, Field]:
    """Fields by name, in the declared order."""
    return {f.name: f for f in declared}


def check_table(raw: Any, spec: dict[str, Field], where: str = "", noun: str = "field") -> dict[str, Any]:
    """The table's values, defaults filled in; FieldError for the first bad key.

    ``where`` prefixes the field names (``"timeouts"`` gives
    ``timeouts.idle_help``); ``noun`` names what a key is in messages.
    """

    def name(key: object) -> str:
        return f"{where}.{key}" if where else str(key)

    if not isinstance(raw, dict):
        raise FieldError(where or "-", f"must be a table, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in set(raw) - set(spec))
    if unknown:
        raise FieldError(name(unknown[0]), f"unknown {noun} (known: {', '.join(spec) or 'none'})", "unknown")
    out = {}
    for key, field in spec.items():
        if key in raw:
            out[key] = field.value(raw[key], name(key))
        elif field.default is REQUIRED:
            raise FieldError(name(key), field._explain(f"missing {noun}"), "missing")
        elif field.default is ABSENT:
            continue
        else:
            default = field.default
            out[key] = float(default) if field.type is float and isinstance(default, int) else default
    return out


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "a number too large to print"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _length_problem(raw: Sized, lo: int, hi: int) -> str:
    unit = "characters" if isinstance(raw, str) else "items"
    if lo == 1 and len(raw) == 0:
        return "must not be empty"
    want = f"{lo}" if lo == hi else f"{lo}..{hi}"
    return f"must be {want} {unit}, got {len(raw)}"
