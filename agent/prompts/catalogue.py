"""The voice prompt catalogue: texts per language and the repeat patterns.

``<lang>.toml`` holds ``[meta]`` (language, voice, rate) and one table per
prompt (``display`` text, ``speech`` text); ``patterns.toml`` says how the
forgotten-item prompts repeat and escalate. Every field is declared below and
checked on load; an error is a :class:`PromptError` naming file and field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from agent import resources
from agent.errors import PromptError
from agent.prompts.screens import ScreenTexts, load_screen_texts, screen_text
from devices.fields import Field, FieldError, TomlFileError, check_table, fields, read_toml

PROMPT_IDS = (
    "forgotten_card",
    "forgotten_card_deposit",
    "forgotten_cash",
    "take_card",
    "take_cash",
    "transfer_caution",
    "card_retained",
    "cash_retracted",
    "operator_help",
    "welcome",
    "enter_pin",
    "wrong_pin",
    "out_of_service",
    "declined",
    "card_expired",
    "card_blocked",
    "card_unreadable",
    "forgotten_card_urgent",
    "forgotten_cash_urgent",
)
PATTERN_NAMES = ("forgotten_card", "forgotten_card_deposit", "forgotten_cash")
MIN_VOLUME, MAX_VOLUME = 0.1, 3.0  # gain on the rendered speech; 1.0 = as rendered
MAX_REPEATS = 100
PATTERNS_FILE = "patterns.toml"
ASSETS_DIR = resources.prompts_dir()


@dataclass(frozen=True)
class Prompt:
    display: str
    speech: str


@dataclass(frozen=True)
class Language:
    language: str
    voice: str
    rate: int
    prompts: dict[str, Prompt]
    name: str  # the language's own name, e.g. "日本語"
    screens: ScreenTexts


@dataclass(frozen=True)
class Step:
    """What one repeat of a pattern plays."""

    prompt: str
    volume: float
    chime: bool
    escalated: bool


@dataclass(frozen=True)
class Pattern:
    """How a prompt repeats: ``repeats`` plays, ``interval`` s between starts.

    From repeat ``escalate_after`` on (repeats count from 1) the pattern plays
    ``escalate_prompt`` at ``escalate_volume`` (each defaults to the normal
    one), with a chime first if ``escalate_chime`` (defaults to ``chime``).
    """

    name: str
    prompt: str
    chime: bool
    interval: float
    repeats: int
    volume: float = 1.0
    escalate_after: int | None = None
    escalate_prompt: str | None = None
    escalate_volume: float | None = None
    escalate_chime: bool | None = None

    def step(self, repeat: int) -> Step:
        """What repeat number ``repeat`` (1-based) plays."""
        if self.escalate_after is not None and repeat >= self.escalate_after:
            return Step(
                self.escalate_prompt or self.prompt,
                self.volume if self.escalate_volume is None else self.escalate_volume,
                self.chime if self.escalate_chime is None else self.escalate_chime,
                True,
            )
        return Step(self.prompt, self.volume, self.chime, False)

    def steps(self) -> list[Step]:
        """The distinct steps the pattern can play (normal first)."""
        steps = [self.step(1)]
        if self.escalate_after is not None:
            steps.append(self.step(self.escalate_after))
        return steps


# --- the declared fields ---------------------------------------------------------

META_FIELDS = fields(
    Field("language", str, description="the 2-letter code, as in the file name", length=(1, 16)),
    Field("voice", str, description="an espeak-ng voice", length=(1, 64)),
    Field("rate", int, description="words per minute", low=50, high=500),
    Field("name", str, description="the language's own name, on the menu", length=(1, 40)),
    Field("money", str, description="an amount of money, {n} the number", length=(3, 40), pattern=r".*\{n\}.*"),
)
SCREEN_TABLES = ("screens", "functions", "reasons")  # the screens' texts (agent/prompts/screens.py)
PROMPT_FIELDS = fields(
    Field("display", str, description="the text on the screen", length=(1, 1000)),
    Field("speech", str, description="the text spoken (kana for Japanese)", length=(1, 1000)),
)


def _two_decimals(value: float) -> str | None:
    if abs(value * 100 - round(value * 100)) > 1e-6:
        return f"{value!r} has more than two decimals"
    return None


def _volume(name: str) -> Field:
    return Field(name, float, None, "1.0 = as rendered", low=MIN_VOLUME, high=MAX_VOLUME, check=_two_decimals)


def pattern_fields(prompt_ids: set[str]) -> dict[str, Field]:
    """The fields of one pattern; prompt references must name one of ``prompt_ids``."""

    def known(prompt: str) -> str | None:
        return None if prompt in prompt_ids else f"unknown prompt id {prompt!r}"

    return fields(
        Field("prompt", str, description="the prompt id played", length=(1, 64), check=known),
        Field("chime", bool, description="a chime before each repeat"),
        Field("interval", float, description="seconds between the starts of two repeats", low=0.01, high=3599),
        Field("repeats", int, description="how many times the prompt plays", low=1, high=MAX_REPEATS),
        _volume("volume"),
        Field("escalate_after", int, None, "the first escalated repeat", low=0, high=MAX_REPEATS),
        Field("escalate_prompt", str, None, "the prompt id of the escalation", length=(1, 64), check=known),
        _volume("escalate_volume"),
        Field("escalate_chime", bool, None, "a chime before each escalated repeat"),
    )


# --- loading ---------------------------------------------------------------------


def _read(path, file: str) -> dict:
    try:
        return read_toml(path, "catalogue file")
    except TomlFileError as exc:
        raise PromptError(file, "-", exc.problem) from None


def _table(raw, spec: dict[str, Field], file: str, where: str) -> dict:
    try:
        return check_table(raw, spec, where)
    except FieldError as exc:
        problem = "missing field" if exc.reason == "missing" else exc.problem
        raise PromptError(file, exc.field, problem) from None


def _load_language(path) -> Language:
    file, stem = path.name, path.name[: -len(".toml")]
    data = _read(path, file)
    if "meta" not in data:
        raise PromptError(file, "meta", "missing field")
    meta = _table(data["meta"], META_FIELDS, file, "meta")
    if meta["language"] != stem:
        raise PromptError(file, "meta.language", f"{meta['language']!r} does not match the file name")
    prompts = {}
    for pid, table in data.items():
        if pid != "meta" and pid not in SCREEN_TABLES:
            values = _table(table, PROMPT_FIELDS, file, pid)
            prompts[pid] = Prompt(values["display"], values["speech"])
    for pid in PROMPT_IDS:
        if pid not in prompts:
            raise PromptError(file, pid, "missing prompt")
    screens = load_screen_texts({**data, "meta": meta}, lambda field, problem: PromptError(file, field, problem))
    return Language(meta["language"], meta["voice"], meta["rate"], prompts, meta["name"], screens)


def _load_pattern(name: str, table, spec: dict[str, Field], file: str) -> Pattern:
    v = _table(table, spec, file, name)
    volume = 1.0 if v["volume"] is None else round(v["volume"], 2)
    e_volume = None if v["escalate_volume"] is None else round(v["escalate_volume"], 2)
    after, e_prompt, e_chime = v["escalate_after"], v["escalate_prompt"], v["escalate_chime"]
    given = [k for k in ("escalate_prompt", "escalate_volume", "escalate_chime") if v[k] is not None]
    if after is not None:
        if not 2 <= after <= v["repeats"]:
            raise PromptError(file, f"{name}.escalate_after", f"{after} must be from 2 to repeats ({v['repeats']})")
        if not given:
            raise PromptError(
                file, f"{name}.escalate_after", "needs escalate_prompt, escalate_volume or escalate_chime"
            )
        if (
            (e_prompt or v["prompt"]),
            (volume if e_volume is None else e_volume),
            (v["chime"] if e_chime is None else e_chime),
        ) == (v["prompt"], volume, v["chime"]):
            raise PromptError(file, f"{name}.{given[0]}", "the escalation plays the same as the normal repeats")
    elif given:
        raise PromptError(file, f"{name}.escalate_after", f"missing field (needed by {given[0]})")
    return Pattern(
        name, v["prompt"], v["chime"], v["interval"], v["repeats"], volume, after, e_prompt, e_volume, e_chime
    )


def _load_patterns(path, prompt_ids: set) -> dict[str, Pattern]:
    file = path.name
    spec = pattern_fields(prompt_ids)
    patterns = {name: _load_pattern(name, table, spec, file) for name, table in _read(path, file).items()}
    for name in PATTERN_NAMES:
        if name not in patterns:
            raise PromptError(file, name, "missing pattern")
    return patterns


class Catalogue:
    """Prompts of every language and the repeat patterns, validated on load."""

    def __init__(self, languages: dict[str, Language], patterns: dict[str, Pattern]):
        self._languages = languages
        self._patterns = patterns

    @classmethod
    def load(cls, directory: str | os.PathLike | Traversable = ASSETS_DIR) -> Catalogue:
        """Load ``directory`` (a path, or a package resource like the shipped catalogue)."""
        if isinstance(directory, (str, os.PathLike)):
            directory = Path(directory)
        try:
            entries = sorted((e for e in directory.iterdir() if e.name.endswith(".toml")), key=lambda e: e.name)
        except OSError:
            entries = []
        languages = {}
        for path in entries:
            if path.name != PATTERNS_FILE:
                lang = _load_language(path)
                languages[lang.language] = lang
        if not languages:
            raise PromptError(str(directory), "-", "no language catalogue (<lang>.toml)")
        ids = set.intersection(*(set(lang.prompts) for lang in languages.values()))
        for lang in languages.values():
            extra = sorted(set(lang.prompts) - ids)
            if extra:
                raise PromptError(f"{lang.language}.toml", extra[0], "prompt missing from other languages")
        patterns = [e for e in entries if e.name == PATTERNS_FILE]
        if not patterns:
            raise PromptError(PATTERNS_FILE, "-", f"missing in {directory}")
        return cls(languages, _load_patterns(patterns[0], ids))

    @property
    def languages(self) -> list[str]:
        return sorted(self._languages)

    @property
    def prompt_ids(self) -> list[str]:
        return sorted(next(iter(self._languages.values())).prompts)

    def language(self, lang: str) -> Language:
        return self._languages[lang]

    def prompt(self, prompt_id: str, lang: str) -> Prompt:
        return self._languages[lang].prompts[prompt_id]

    def display(self, prompt_id: str, lang: str) -> str:
        return self.prompt(prompt_id, lang).display

    def speech(self, prompt_id: str, lang: str) -> str:
        return self.prompt(prompt_id, lang).speech

    def pattern(self, name: str) -> Pattern:
        return self._patterns[name]

    def screen_text(self, screen: str, lang: str, fields: dict[str, object]) -> str:
        """What ``screen`` says in ``lang`` with these fields: the title, then one line per line."""
        names = {code: language.name for code, language in self._languages.items()}
        return screen_text(self._languages[lang].screens, screen, fields, names)

    def function_label(self, function: str, lang: str) -> str:
        return self._languages[lang].screens.functions[function]

    @property
    def patterns(self) -> list[str]:
        return sorted(self._patterns)
