"""Voice prompt catalogue and the cache of rendered WAV files.

The catalogue (``assets/prompts/<lang>.toml`` plus ``patterns.toml``) is data.
:class:`PromptCache` renders the speech once, off the latency path, in a child
process (``agent.render_speech``) with a timeout; ``clip()`` then only looks up
files. A prompt that is not rendered gives ``None`` and the caller shows text.

Patterns may play louder (``volume``/``escalate_volume``). Each louder
(prompt, language, volume) is its own cached WAV, derived from the rendered one
by a gain with a soft limiter when the cache is warmed, so playing it is a
lookup like any other clip.
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
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from devices.speaker import Clip

PROMPT_IDS = (
    "forgotten_card", "forgotten_card_deposit", "forgotten_cash", "take_card", "take_cash",
    "transfer_caution", "card_retained", "cash_retracted", "operator_help", "welcome",
    "enter_pin", "wrong_pin", "out_of_service", "declined",
    "card_expired", "card_blocked", "card_unreadable",
    "forgotten_card_urgent", "forgotten_cash_urgent",
)
PATTERN_NAMES = ("forgotten_card", "forgotten_card_deposit", "forgotten_cash")
PATTERN_FIELDS = {"prompt", "chime", "interval", "repeats", "volume",
                  "escalate_after", "escalate_prompt", "escalate_volume", "escalate_chime"}
MIN_VOLUME, MAX_VOLUME = 0.1, 3.0   # gain on the rendered speech; 1.0 = as rendered
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
            return Step(self.escalate_prompt or self.prompt,
                        self.volume if self.escalate_volume is None else self.escalate_volume,
                        self.chime if self.escalate_chime is None else self.escalate_chime, True)
        return Step(self.prompt, self.volume, self.chime, False)

    def steps(self) -> list[Step]:
        """The distinct steps the pattern can play (normal first)."""
        steps = [self.step(1)]
        if self.escalate_after is not None:
            steps.append(self.step(self.escalate_after))
        return steps


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


def _volume(table: dict, key: str, file: str, where: str) -> float:
    name = f"{where}.{key}"
    value = float(_get(table, key, (int, float), file, where))
    if not MIN_VOLUME <= value <= MAX_VOLUME:
        raise PromptError(file, name, f"{value:g} is outside {MIN_VOLUME:g}..{MAX_VOLUME:g}"
                          " (1.0 = as rendered)")
    if abs(value * 100 - round(value * 100)) > 1e-6:
        raise PromptError(file, name, f"{value!r} has more than two decimals")
    return round(value, 2)


def _prompt_ref(table: dict, key: str, prompt_ids: set, file: str, where: str) -> str:
    prompt = _get(table, key, (str,), file, where)
    if prompt not in prompt_ids:
        raise PromptError(file, f"{where}.{key}", f"unknown prompt id {prompt!r}")
    return prompt


def _load_patterns(path: Path, prompt_ids: set) -> dict[str, Pattern]:
    data, file = _read_toml(path), path.name
    patterns = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise PromptError(file, name, f"must be a table, got {type(table).__name__}")
        _no_extra(table, PATTERN_FIELDS, file, name)
        prompt = _prompt_ref(table, "prompt", prompt_ids, file, name)
        chime = _get(table, "chime", (bool,), file, name)
        interval = float(_get(table, "interval", (int, float), file, name))
        if not 0 < interval < 3600:
            raise PromptError(file, f"{name}.interval", f"{interval:g} must be > 0 and < 3600 seconds")
        repeats = _get(table, "repeats", (int,), file, name)
        if repeats < 1:
            raise PromptError(file, f"{name}.repeats", f"{repeats} must be >= 1")
        volume = _volume(table, "volume", file, name) if "volume" in table else 1.0
        after = e_prompt = e_volume = e_chime = None
        if "escalate_prompt" in table:
            e_prompt = _prompt_ref(table, "escalate_prompt", prompt_ids, file, name)
        if "escalate_volume" in table:
            e_volume = _volume(table, "escalate_volume", file, name)
        if "escalate_chime" in table:
            e_chime = _get(table, "escalate_chime", (bool,), file, name)
        given = [k for k in ("escalate_prompt", "escalate_volume", "escalate_chime") if k in table]
        if "escalate_after" in table:
            after = _get(table, "escalate_after", (int,), file, name)
            if not 2 <= after <= repeats:
                raise PromptError(file, f"{name}.escalate_after",
                                  f"{after} must be from 2 to repeats ({repeats})")
            if not given:
                raise PromptError(file, f"{name}.escalate_after", "needs escalate_prompt,"
                                  " escalate_volume or escalate_chime")
            if ((e_prompt or prompt), (volume if e_volume is None else e_volume),
                    (chime if e_chime is None else e_chime)) == (prompt, volume, chime):
                raise PromptError(file, f"{name}.{given[0]}",
                                  "the escalation plays the same as the normal repeats")
        elif given:
            raise PromptError(file, f"{name}.escalate_after", f"missing field (needed by {given[0]})")
        patterns[name] = Pattern(name, prompt, chime, interval, repeats, volume,
                                 after, e_prompt, e_volume, e_chime)
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


from fsm.language import COUNTRY_LANGUAGES, ISO_3166_NUMERIC, language_for_country  # noqa: E402,F401


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


LIMIT_KNEE = 0.7  # of full scale: above it, louder samples are bent softly below full scale


def _limit(value: float, knee: float, top: float) -> int:
    """Soft limiter: linear up to ``knee``, then a tanh curve that never reaches ``top``."""
    size = abs(value)
    if size > knee:
        size = knee + (top - knee) * math.tanh((size - knee) / (top - knee))
    return int(round(size if value >= 0 else -size))


def scale_wav(src: str | os.PathLike, dst: str | os.PathLike, gain: float) -> None:
    """Write ``src`` with its samples times ``gain`` to ``dst``, atomically.

    16-bit PCM only (what espeak-ng and the chime give). Peaks pushed past
    :data:`LIMIT_KNEE` are soft-limited rather than clipped, so a louder clip
    is louder (higher RMS) without harsh distortion.
    """
    with wave.open(str(src), "rb") as w:
        params = w.getparams()
        data = w.readframes(w.getnframes())
    if params.sampwidth != 2:
        raise wave.Error(f"{Path(src).name}: {8 * params.sampwidth}-bit audio, only 16-bit is supported")
    samples = array("h")
    samples.frombytes(data[:len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    top, knee = 32767.0, 32767.0 * LIMIT_KNEE
    scaled = array("h", (_limit(x * gain, knee, top) for x in samples))
    if sys.byteorder == "big":
        scaled.byteswap()
    tmp = f"{dst}.{os.getpid()}.tmp"
    try:
        with wave.open(tmp, "wb") as w:
            w.setparams(params)
            w.writeframes(scaled.tobytes())
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def wav_rms(path: str | os.PathLike) -> float:
    """Root mean square of a 16-bit WAV's samples (0 for an empty file)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise wave.Error("only 16-bit audio is supported")
        samples = array("h")
        samples.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0


def _percent(volume: float) -> int:
    return int(round(volume * 100))


def _variant_name(base: str, volume: float) -> str:
    return f"{base}@{volume:g}"


@dataclass
class WarmReport:
    """What ``warm()`` did; names are ``"<lang>/<prompt_id>"``.

    ``rendered``/``cached`` count speech; ``derived`` names the louder copies
    (``"<lang>/<prompt_id>@1.6"``, ``"chime@1.6"``) made this time. A louder
    copy of speech that failed to render is not listed again in ``failed``.
    """

    rendered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cached: int = 0
    seconds: float = 0.0
    derived: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class PromptCache:
    """WAV files named ``<sha256(text, voice, rate)>.wav`` in ``directory``.

    A louder copy (volume != 1.0) is ``<key>.v<percent>.wav`` next to it, and
    ``chime.v<percent>.wav`` for the chime.
    """

    command = (sys.executable, "-m", "agent.render_speech")

    def __init__(self, directory: str | os.PathLike | None, catalogue: Catalogue,
                 timeout: float = 60.0):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.catalogue = catalogue
        self.timeout = timeout
        self._clips: dict[tuple[str, str, int], Clip | None] = {}
        self._chimes: dict[int, Clip] = {}

    def path(self, prompt_id: str, lang: str, volume: float = 1.0) -> Path:
        meta = self.catalogue.language(lang)
        key = cache_key(self.catalogue.speech(prompt_id, lang), meta.voice, meta.rate)
        pct = _percent(volume)
        return self.directory / (f"{key}.wav" if pct == 100 else f"{key}.v{pct}.wav")

    def chime_path(self, volume: float = 1.0) -> Path:
        pct = _percent(volume)
        return self.directory / ("chime.wav" if pct == 100 else f"chime.v{pct}.wav")

    def _entries(self):
        for lang in self.catalogue.languages:
            for pid in self.catalogue.prompt_ids:
                yield f"{lang}/{pid}", pid, lang

    def variants(self) -> list[tuple[str, str, float]]:
        """``(prompt_id, lang, volume)`` of every louder/softer copy a pattern plays."""
        wanted = set()
        for name in self.catalogue.patterns:
            for step in self.catalogue.pattern(name).steps():
                if _percent(step.volume) != 100:
                    wanted.update((step.prompt, lang, step.volume) for lang in self.catalogue.languages)
        return sorted(wanted, key=lambda v: (v[1], v[0], v[2]))

    def chime_volumes(self) -> list[float]:
        """Volumes other than 1.0 at which a pattern plays the chime."""
        return sorted({step.volume for name in self.catalogue.patterns
                       for step in self.catalogue.pattern(name).steps()
                       if step.chime and _percent(step.volume) != 100})

    def missing(self) -> list[str]:
        """Names of every prompt (and louder copy) without a valid WAV."""
        names = [name for name, pid, lang in self._entries()
                 if wav_duration(self.path(pid, lang)) is None]
        names += [_variant_name(f"{lang}/{pid}", vol) for pid, lang, vol in self.variants()
                  if wav_duration(self.path(pid, lang, vol)) is None]
        return names

    def warm(self) -> WarmReport:
        """Render every missing prompt in one child process; never raises."""
        start = time.monotonic()
        report = WarmReport()
        self.forget()
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
        self._derive(report)
        report.seconds = time.monotonic() - start
        return report

    def _derive(self, report: WarmReport) -> None:
        """Make the missing louder copies from the rendered WAVs (and the chime)."""
        todo = [(_variant_name("chime", vol), self.chime_path(), self.chime_path(vol), vol)
                for vol in self.chime_volumes()]
        todo += [(_variant_name(f"{lang}/{pid}", vol), self.path(pid, lang), self.path(pid, lang, vol), vol)
                 for pid, lang, vol in self.variants()]
        for name, src, dst, vol in todo:
            if wav_duration(dst) is not None or wav_duration(src) is None:
                continue  # already there, or its speech failed (reported already)
            try:
                scale_wav(src, dst, vol)
            except (OSError, EOFError, wave.Error) as exc:
                report.failed[name] = f"cannot make the copy at volume {vol:g}: {exc}"
            else:
                report.derived.append(name)

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

    def clip(self, prompt_id: str, lang: str, volume: float = 1.0) -> Clip | None:
        """The rendered prompt at ``volume``, or None (show the text instead).

        A volume other than 1.0 is found only if a pattern plays it (the copy
        is made by ``warm()``). Memoised, misses too, until ``warm()`` or
        ``forget()``.
        """
        key = (prompt_id, lang, _percent(volume))
        try:
            return self._clips[key]
        except KeyError:
            pass
        if prompt_id == "chime":
            return self.chime(volume)
        try:
            path = self.path(prompt_id, lang, volume)
        except KeyError:
            return None
        duration = wav_duration(path)
        clip = Clip(prompt_id, lang, str(path), duration) if duration else None
        self._clips[key] = clip
        return clip

    def chime(self, volume: float = 1.0) -> Clip:
        """The two-tone chime (``prompt_id='chime'``), written on first use.

        At a volume other than 1.0, the louder copy (made by ``warm()``), or
        the normal chime if that copy cannot be written.
        """
        pct = _percent(volume)
        clip = self._chimes.get(pct)
        if clip is None:
            path = self.chime_path(volume)
            duration = wav_duration(path)
            if duration is None and pct != 100:
                try:  # warm() makes it; this is only for a cache nobody warmed
                    scale_wav(self.chime().path, path, volume)
                except (OSError, EOFError, wave.Error):
                    return self.chime()  # the normal chime rather than none
                duration = wav_duration(path)
            elif duration is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                write_chime(path)
                duration = wav_duration(path)
            clip = self._chimes[pct] = Clip("chime", "", str(path), duration)
        return clip

    def forget(self) -> None:
        """Drop the memoised lookups (e.g. after another process warmed)."""
        self._clips.clear()
        self._chimes.clear()
