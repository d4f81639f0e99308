"""Locator strings, ``scheme://path?key=value``, and typed readers for their options.

A backend reads every option it knows, once, with its type, bounds and default::

    baud = loc.number("baud", int, 300, 921_600, 9600)
    trace = loc.flag("trace")
    parity = loc.choice("parity", ("N", "E", "O"), "N")

Once the backend is built, :meth:`Locator.check_all_read` rejects any option no
reader asked for, so a typo is an error and never a silent default. Every
error is a :class:`LocatorError` of one line naming the device, the locator
and the option.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

N = TypeVar("N", int, float)

MAX_NUMBER_TEXT = 32  # characters of a number option; more is no number a backend takes
FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class LocatorError(ValueError):
    """A locator that names no known backend, is malformed, or has a bad option."""


class Locator:
    """A parsed locator and the options its backend has read so far.

    ``params`` are the options written in the locator; ``defaults`` are
    fallbacks a wrapping backend supplies (see :meth:`derive`), which count
    as neither known nor unknown.
    """

    def __init__(
        self,
        string: str,
        scheme: str,
        path: str,
        params: Mapping[str, str],
        device: str = "",
        defaults: Mapping[str, str] | None = None,
        asked: list[str] | None = None,
    ):
        self.string = string  # the locator as written
        self.scheme = scheme
        self.path = path
        self.params: Mapping[str, str] = dict(params)
        self.device = device
        self.defaults: Mapping[str, str] = dict(defaults or {})
        self._asked: list[str] = [] if asked is None else asked  # shared with derived locators

    @classmethod
    def parse(cls, text: object, device: str = "") -> Locator:
        """Split ``text``; ``device`` (e.g. ``devices.camera``) prefixes every error."""
        where = f"{device}: " if device else ""
        if not isinstance(text, str) or "://" not in text:
            raise LocatorError(f"{where}{text!r} is not a locator like 'sim://'")
        try:
            parts = urlsplit(text)
            pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True) if parts.query else []
        except ValueError as exc:
            raise LocatorError(f"{where}{text}: malformed ({exc}); options are key=value joined by &") from None
        if not parts.scheme:
            raise LocatorError(f"{where}{text!r} has no backend scheme")
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise LocatorError(f"{where}{text}: option {key!r} is given twice")
            params[key] = value
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        return cls(text, parts.scheme.lower(), path, params, device)

    @classmethod
    def empty(cls) -> Locator:
        """The locator of a backend built without one: no path, no options."""
        return cls("", "", "", {})

    def derive(self, path: str, defaults: Mapping[str, str]) -> Locator:
        """The same options on another ``path``, with more ``defaults``; what
        either locator reads counts as read for both."""
        return Locator(
            self.string, self.scheme, path, self.params, self.device, {**self.defaults, **defaults}, self._asked
        )

    # errors ---------------------------------------------------------------------------
    def error(self, problem: str) -> LocatorError:
        """A one-line error naming the device and the locator."""
        where = ": ".join(p for p in (self.device, self.string) if p)
        return LocatorError(f"{where}: {problem}" if where else problem)

    # readers ----------------------------------------------------------------------------
    def _raw(self, key: str) -> str | None:
        if key not in self._asked:
            self._asked.append(key)
        return self.params.get(key, self.defaults.get(key))

    def has(self, key: str) -> bool:
        """Whether the option is given (it counts as known)."""
        return self._raw(key) is not None

    def text(self, key: str, default: str = "") -> str:
        """The option as text, stripped of surrounding blanks."""
        raw = self._raw(key)
        return default if raw is None else raw.strip()

    def number(self, key: str, kind: type[N], low: N, high: N, default: N) -> N:
        """The option as ``kind`` (int or float) in ``low..high``."""
        raw = self._raw(key)
        if raw is None:
            return default
        if len(raw) > MAX_NUMBER_TEXT:
            raise self.error(f"option {key}= is {len(raw)} characters long, too long for a number")
        try:
            value = kind(raw)
        except ValueError:
            raise self.error(f"option {key}={raw!r} is not a {'whole ' if _is_float(raw) else ''}number") from None
        if not low <= value <= high:  # also rejects NaN
            raise self.error(f"option {key}={raw!r} is out of range {low:g}..{high:g}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """The option as yes/no: 1, true, yes, on or 0, false, no, off."""
        raw = self._raw(key)
        if raw is None:
            return default
        if raw.lower() not in FLAG_WORDS:
            raise self.error(f"option {key}={raw!r} is not a yes/no flag (1 or 0)")
        return FLAG_WORDS[raw.lower()]

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        """One of ``choices``, ignoring case; returns it as spelt in ``choices``."""
        raw = self._raw(key)
        if raw is None:
            return default
        for choice in choices:
            if raw.strip().lower() == choice.lower():
                return choice
        raise self.error(f"option {key}={raw!r} is not one of {', '.join(choices)}")

    def words(self, key: str, choices: Iterable[str]) -> tuple[str, ...]:
        """A comma-separated list, each word one of ``choices`` (empty when absent)."""
        known = tuple(choices)
        words = tuple(w.strip() for w in self.text(key).split(",") if w.strip())
        for word in words:
            if word not in known:
                raise self.error(f"option {key}={word!r} is not one of {', '.join(known)}")
        return words

    # the final check ----------------------------------------------------------------------
    @property
    def known(self) -> tuple[str, ...]:
        """The options read so far, in the order they were asked for."""
        return tuple(self._asked)

    def check_all_read(self) -> None:
        """Reject any option that no reader asked for."""
        unknown = [key for key in self.params if key not in self._asked]
        if unknown:
            known = f" (known: {', '.join(self._asked)})" if self._asked else " (this backend takes none)"
            raise self.error(f"unknown option {unknown[0]!r}{known}")

    def __repr__(self) -> str:
        return f"Locator({self.string!r})"
