"""Screen texts: each screen's title and lines in one language, its fields filled in as words.

A language file has ``[screens.<id>]`` (``title``, ``lines``) for every screen of
:data:`fsm.screens.SCREENS`, ``[functions]`` and ``[reasons]`` (labels), and in ``[meta]``
its own ``name`` and its ``money`` format. A line's ``{field}`` names one of the screen's
fields; a line whose field is not given (or has no label) is left out, and a line naming a
list field is repeated once per item. The text shown is the title and the lines, one per
text line.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from devices.fields import Field, FieldError, check_table, fields
from fsm.screens import REASONS, SCREENS
from fsm.service import FUNCTIONS

MONEY_FIELDS = ("amount", "balance")


def _no_newline(text: str) -> str | None:
    return "must be one line (no line breaks)" if "\n" in text else None


LINE = Field("line", str, description="a line of the screen", length=(1, 200), check=_no_newline)


def screen_fields(screen: str) -> dict[str, Field]:
    """The fields of ``[screens.<screen>]``; a line may only name the screen's own fields."""
    allowed = set(SCREENS[screen])

    def known_fields(lines: list[str]) -> str | None:
        for line in lines:
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(line) if name is not None}
            except ValueError as exc:
                return f"{line!r}: {exc}"
            unknown = sorted(names - allowed)
            if unknown:
                return f"{line!r} names {unknown[0]!r}, not a field of this screen ({', '.join(allowed) or 'none'})"
        return None

    return fields(
        Field("title", str, description="the heading", length=(1, 200), check=_no_newline),
        Field("lines", list, [], "the lines under the heading", length=(0, 12), items=LINE, check=known_fields),
    )


FUNCTION_FIELDS = fields(*(Field(name, str, description=f"the label of {name}", length=(1, 200)) for name in FUNCTIONS))
REASON_FIELDS = fields(*(Field(name, str, description=f"the words for {name}", length=(1, 200)) for name in REASONS))


@dataclass(frozen=True)
class Screen:
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ScreenTexts:
    """One language's screens and labels."""

    screens: dict[str, Screen]
    functions: dict[str, str]
    reasons: dict[str, str]
    money: str  # e.g. "{n}円": n is the amount with thousands separators


def load_screen_texts(data: dict, where: Callable[[str, str], Exception]) -> ScreenTexts:
    """The screen tables of a language file; ``where(field, problem)`` makes the error."""

    def table(raw: object, spec: dict[str, Field], name: str) -> dict:
        try:
            return check_table(raw, spec, name)
        except FieldError as exc:
            raise where(exc.field, "missing field" if exc.reason == "missing" else exc.problem) from None

    raw_screens = data.get("screens", {})
    if not isinstance(raw_screens, dict):
        raise where("screens", "must be a table")
    screens = {}
    for screen in SCREENS:
        if screen not in raw_screens:
            raise where(f"screens.{screen}", "missing screen")
        values = table(raw_screens[screen], screen_fields(screen), f"screens.{screen}")
        screens[screen] = Screen(values["title"], tuple(values["lines"]))
    extra = sorted(set(raw_screens) - set(SCREENS))
    if extra:
        raise where(f"screens.{extra[0]}", "not a screen of the state machine")
    functions = table(data.get("functions", {}), FUNCTION_FIELDS, "functions")
    reasons = table(data.get("reasons", {}), REASON_FIELDS, "reasons")
    return ScreenTexts(screens, functions, reasons, data["meta"]["money"])


def screen_text(texts: ScreenTexts, screen: str, fields: Mapping[str, object], names: Mapping[str, str]) -> str:
    """The screen as the customer reads it: the title, then its lines, one per text line.

    ``names``: each language's own name (for the ``languages`` field)."""
    shown = texts.screens[screen]
    words = {name: _words(texts, name, value, names) for name, value in fields.items()}
    out = [shown.title]
    for line in shown.lines:
        named = [name for _, name, _, _ in string.Formatter().parse(line) if name]
        if any(words.get(name) is None for name in named):
            continue  # a field not given, or one with no words for its value
        items = next((words[name] for name in named if isinstance(words[name], list)), None)
        if isinstance(items, list):
            list_field = next(name for name in named if words[name] is items)
            out += [line.format_map({**words, list_field: item}) for item in items]
        else:
            out.append(line.format_map(words))
    return "\n".join(out)


def _words(texts: ScreenTexts, name: str, value: object, names: Mapping[str, str]) -> str | list[str] | None:
    """A field's value as the customer reads it; None: nothing to show."""
    if value is None:
        return None
    if name in MONEY_FIELDS and isinstance(value, int):
        return texts.money.format(n=f"{value:,}")
    if name == "options" and isinstance(value, list | tuple):
        return [texts.functions[v] for v in value if v in texts.functions]
    if name == "languages" and isinstance(value, list | tuple):
        return " / ".join(names[v] for v in value if v in names) or None
    if name == "function":
        return texts.functions.get(str(value))
    if name == "reason":
        return texts.reasons.get(str(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None  # never Python's own text of a value
