"""Voice prompt catalogue and the cache of rendered WAV files.

The catalogue (``assets/prompts/<lang>.toml`` plus ``patterns.toml``) is data.
:class:`PromptCache` renders the speech once, off the latency path, in a child
process (``agent.render_speech``) with a timeout; ``clip()`` then only looks up
files. A prompt that is not rendered gives ``None`` and the caller shows text.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import time
import tomllib
import wave
from dataclasses import dataclass, field
from pathlib import Path

from devices.speaker import Clip

PROMPT_IDS = (
    "forgotten_card", "forgotten_card_deposit", "forgotten_cash", "take_card", "take_cash",
    "transfer_caution", "card_retained", "cash_retracted", "operator_help", "welcome",
    "enter_pin", "wrong_pin", "out_of_service", "declined",
    "card_expired", "card_blocked", "card_unreadable",
)
PATTERN_NAMES = ("forgotten_card", "forgotten_card_deposit", "forgotten_cash")
PATTERNS_FILE = "patterns.toml"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "prompts"
_ROOT = Path(__file__).resolve().parent.parent


class PromptError(ValueError):
    """A catalogue file is malformed; names the file and the field."""

    def __init__(self, file: str, field: str, problem: str):
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem


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


@dataclass(frozen=True)
class Pattern:
    """How a prompt repeats: ``repeats`` plays, ``interval`` s between starts."""

    name: str
    prompt: str
    chime: bool
    interval: float
    repeats: int


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise PromptError(path.name, "-", f"not valid TOML: {exc}") from None


def _get(table: dict, key: str, kinds: tuple, file: str, where: str):
    """Fetch ``table[key]`` checking its type (bool is not a number here)."""
    name = f"{where}.{key}" if where else key
    if key not in table:
        raise PromptError(file, name, "missing field")
    value = table[key]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise PromptError(file, name, f"must be {want}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise PromptError(file, name, "must not be empty")
    return value


def _no_extra(table: dict, allowed: set, file: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise PromptError(file, f"{where}.{key}" if where else key, "unknown field")


def _load_language(path: Path) -> Language:
    data, file = _read_toml(path), path.name
    meta = _get(data, "meta", (dict,), file, "")
    _no_extra(meta, {"language", "voice", "rate"}, file, "meta")
    lang = _get(meta, "language", (str,), file, "meta")
    if lang != path.stem:
        raise PromptError(file, "meta.language", f"{lang!r} does not match the file name")
    voice = _get(meta, "voice", (str,), file, "meta")
    rate = _get(meta, "rate", (int,), file, "meta")
    if not 50 <= rate <= 500:
        raise PromptError(file, "meta.rate", f"{rate} is outside 50..500 words per minute")
    prompts = {}
    for pid, table in data.items():
        if pid == "meta":
            continue
        if not isinstance(table, dict):
            raise PromptError(file, pid, f"must be a table, got {type(table).__name__}")
        _no_extra(table, {"display", "speech"}, file, pid)
        prompts[pid] = Prompt(_get(table, "display", (str,), file, pid),
                              _get(table, "speech", (str,), file, pid))
    for pid in PROMPT_IDS:
        if pid not in prompts:
            raise PromptError(file, pid, "missing prompt")
    return Language(lang, voice, rate, prompts)


def _load_patterns(path: Path, prompt_ids: set) -> dict[str, Pattern]:
    data, file = _read_toml(path), path.name
    patterns = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise PromptError(file, name, f"must be a table, got {type(table).__name__}")
        _no_extra(table, {"prompt", "chime", "interval", "repeats"}, file, name)
        prompt = _get(table, "prompt", (str,), file, name)
        if prompt not in prompt_ids:
            raise PromptError(file, f"{name}.prompt", f"unknown prompt id {prompt!r}")
        chime = _get(table, "chime", (bool,), file, name)
        interval = float(_get(table, "interval", (int, float), file, name))
        if not 0 < interval < 3600:
            raise PromptError(file, f"{name}.interval", f"{interval} must be > 0 seconds")
        repeats = _get(table, "repeats", (int,), file, name)
        if repeats < 1:
            raise PromptError(file, f"{name}.repeats", f"{repeats} must be >= 1")
        patterns[name] = Pattern(name, prompt, chime, interval, repeats)
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
    def load(cls, directory: str | os.PathLike = ASSETS_DIR) -> "Catalogue":
        directory = Path(directory)
        languages = {}
        for path in sorted(directory.glob("*.toml")):
            if path.name != PATTERNS_FILE:
                lang = _load_language(path)
                languages[lang.language] = lang
        if not languages:
            raise PromptError(str(directory), "-", "no language catalogue (<lang>.toml)")
        ids = set.intersection(*(set(lang.prompts) for lang in languages.values()))
        for lang in languages.values():
            extra = sorted(set(lang.prompts) - ids)
            if extra:
                raise PromptError(f"{lang.language}.toml", extra[0],
                                  "prompt missing from other languages")
        patterns_path = directory / PATTERNS_FILE
        if not patterns_path.exists():
            raise PromptError(PATTERNS_FILE, "-", f"missing in {directory}")
        return cls(languages, _load_patterns(patterns_path, ids))

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

    @property
    def patterns(self) -> list[str]:
        return sorted(self._patterns)


# --- the WAV cache ------------------------------------------------------------

def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atm-agent" / "prompts"


def cache_key(text: str, voice: str, rate: int) -> str:
    blob = json.dumps([text, voice, rate], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def wav_duration(path: str | os.PathLike) -> float | None:
    """Seconds of audio in a WAV file, or None if missing, broken or empty."""
    try:
        with wave.open(str(path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
    except (OSError, EOFError, wave.Error):
        return None
    return frames / rate if frames > 0 and rate > 0 else None


def write_chime(path: str | os.PathLike, rate: int = 22050) -> None:
    """Write a two-tone "pin-pon" chime (E6 then C6, decaying), atomically."""
    samples = []
    for freq, length in ((1318.5, 0.35), (1046.5, 0.6)):
        n = int(rate * length)
        for i in range(n):
            t = i / rate
            env = min(1.0, t / 0.005) * math.exp(-t * 5.0)
            tone = math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(4 * math.pi * freq * t)
            samples.append(int(32767 * 0.35 * env * tone))
    tmp = f"{path}.{os.getpid()}.tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    os.replace(tmp, path)


@dataclass
class WarmReport:
    """What ``warm()`` did; names are ``"<lang>/<prompt_id>"``."""

    rendered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cached: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class PromptCache:
    """WAV files named ``<sha256(text, voice, rate)>.wav`` in ``directory``."""

    command = (sys.executable, "-m", "agent.render_speech")

    def __init__(self, directory: str | os.PathLike | None, catalogue: Catalogue,
                 timeout: float = 60.0):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.catalogue = catalogue
        self.timeout = timeout
        self._clips: dict[tuple[str, str], Clip | None] = {}
        self._chime: Clip | None = None

    def path(self, prompt_id: str, lang: str) -> Path:
        meta = self.catalogue.language(lang)
        key = cache_key(self.catalogue.speech(prompt_id, lang), meta.voice, meta.rate)
        return self.directory / f"{key}.wav"

    def _entries(self):
        for lang in self.catalogue.languages:
            for pid in self.catalogue.prompt_ids:
                yield f"{lang}/{pid}", pid, lang

    def missing(self) -> list[str]:
        """``"<lang>/<prompt_id>"`` of every prompt without a valid WAV."""
        return [name for name, pid, lang in self._entries()
                if wav_duration(self.path(pid, lang)) is None]

    def warm(self) -> WarmReport:
        """Render every missing prompt in one child process; never raises."""
        start = time.monotonic()
        report = WarmReport()
        self._clips.clear()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.chime()
        except OSError as exc:
            reason = f"cannot write the cache {self.directory}: {exc.strerror or exc}"
            report.failed["chime"] = reason
            for name, pid, lang in self._entries():
                if wav_duration(self.path(pid, lang)) is None:
                    report.failed[name] = reason
                else:
                    report.cached += 1
            report.seconds = time.monotonic() - start
            return report  # rendering into an unusable directory would only wait for the time-out
        jobs: dict[str, dict] = {}
        names: dict[str, list[str]] = {}
        for name, pid, lang in self._entries():
            out = str(self.path(pid, lang))
            if wav_duration(out) is not None:
                report.cached += 1
                continue
            meta = self.catalogue.language(lang)
            jobs.setdefault(out, {"text": self.catalogue.speech(pid, lang),
                                  "voice": meta.voice, "rate": meta.rate, "out": out})
            names.setdefault(out, []).append(name)
        if jobs:
            results = self._run(list(jobs.values()))
            for out, entry_names in names.items():
                if wav_duration(out) is not None:
                    report.rendered.extend(entry_names)
                    continue
                for name in entry_names:
                    report.failed[name] = results.get(out) or "no WAV written"
                for tmp in Path(out).parent.glob(Path(out).name + ".*.tmp.wav"):
                    tmp.unlink(missing_ok=True)  # left by a killed renderer
        report.seconds = time.monotonic() - start
        return report

    def _run(self, jobs: list[dict]) -> dict[str, str]:
        """Run the renderer; return ``out -> error`` for jobs that failed."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        errors: dict[str, str] = {}
        try:
            proc = subprocess.run(list(self.command), input=json.dumps(jobs).encode(),
                                  capture_output=True, timeout=self.timeout, env=env)
            stdout, tail = proc.stdout, f"renderer exited with {proc.returncode}"
            if proc.returncode != 0:
                tail += ": " + proc.stderr.decode(errors="replace").strip()[-300:]
        except subprocess.TimeoutExpired as exc:
            stdout, tail = exc.stdout or b"", f"renderer timed out after {self.timeout:g} s"
        except OSError as exc:
            stdout, tail = b"", f"renderer failed to start: {exc}"
        seen = set()
        for line in stdout.decode(errors="replace").splitlines():
            try:
                result = json.loads(line)
                out = result["out"]
            except (ValueError, TypeError, KeyError):
                continue
            seen.add(out)
            if not result.get("ok"):
                errors[out] = str(result.get("error") or "render failed")
        for job in jobs:
            if job["out"] not in seen:
                errors[job["out"]] = tail
        return errors

    def clip(self, prompt_id: str, lang: str) -> Clip | None:
        """The rendered prompt, or None (show the text instead).

        Memoised, misses too, until ``warm()`` or ``forget()``.
        """
        key = (prompt_id, lang)
        try:
            return self._clips[key]
        except KeyError:
            pass
        if prompt_id == "chime":
            return self.chime()
        try:
            path = self.path(prompt_id, lang)
        except KeyError:
            return None
        duration = wav_duration(path)
        clip = Clip(prompt_id, lang, str(path), duration) if duration else None
        self._clips[key] = clip
        return clip

    def chime(self) -> Clip:
        """The two-tone chime (``prompt_id='chime'``), written on first use."""
        if self._chime is None:
            path = self.directory / "chime.wav"
            duration = wav_duration(path)
            if duration is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                write_chime(path)
                duration = wav_duration(path)
            self._chime = Clip("chime", "", str(path), duration)
        return self._chime

    def forget(self) -> None:
        """Drop the memoised lookups (e.g. after another process warmed)."""
        self._clips.clear()
        self._chime = None
