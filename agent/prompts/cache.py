"""The cache of rendered prompt WAVs, keyed by (text, voice, rate).

:class:`PromptCache` renders the speech once, off the latency path, in a child
process (``agent.render_speech``) with a time-out; ``clip()`` then only looks
up files. A prompt that is not rendered gives ``None`` and the caller shows
text. Each louder (prompt, language, volume) a pattern plays is its own WAV,
derived from the rendered one by ``scale_wav`` when the cache is warmed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from agent.prompts.catalogue import Catalogue
from agent.prompts.wav import scale_wav, wav_duration, write_chime
from devices.speaker import Clip

# The directory holding the ``agent`` package, for the renderer's import path
# when the agent runs from a source tree that is not installed.
_IMPORT_ROOT = Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atm-agent" / "prompts"


def cache_key(text: str, voice: str, rate: int) -> str:
    blob = json.dumps([text, voice, rate], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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

    def __init__(self, directory: str | os.PathLike | None, catalogue: Catalogue, timeout: float = 60.0):
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
        wanted: set[tuple[str, str, float]] = set()
        for name in self.catalogue.patterns:
            for step in self.catalogue.pattern(name).steps():
                if _percent(step.volume) != 100:
                    wanted.update((step.prompt, lang, step.volume) for lang in self.catalogue.languages)
        return sorted(wanted, key=lambda v: (v[1], v[0], v[2]))

    def chime_volumes(self) -> list[float]:
        """Volumes other than 1.0 at which a pattern plays the chime."""
        return sorted(
            {
                step.volume
                for name in self.catalogue.patterns
                for step in self.catalogue.pattern(name).steps()
                if step.chime and _percent(step.volume) != 100
            }
        )

    def missing(self) -> list[str]:
        """Names of every prompt (and louder copy) without a valid WAV."""
        names = [name for name, pid, lang in self._entries() if wav_duration(self.path(pid, lang)) is None]
        names += [
            _variant_name(f"{lang}/{pid}", vol)
            for pid, lang, vol in self.variants()
            if wav_duration(self.path(pid, lang, vol)) is None
        ]
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
            jobs.setdefault(
                out, {"text": self.catalogue.speech(pid, lang), "voice": meta.voice, "rate": meta.rate, "out": out}
            )
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
        todo = [
            (_variant_name("chime", vol), self.chime_path(), self.chime_path(vol), vol) for vol in self.chime_volumes()
        ]
        todo += [
            (_variant_name(f"{lang}/{pid}", vol), self.path(pid, lang), self.path(pid, lang, vol), vol)
            for pid, lang, vol in self.variants()
        ]
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
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_IMPORT_ROOT), env.get("PYTHONPATH")]))
        errors: dict[str, str] = {}
        try:
            proc = subprocess.run(
                list(self.command), input=json.dumps(jobs).encode(), capture_output=True, timeout=self.timeout, env=env
            )
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
            assert duration is not None  # a chime just written is a non-empty WAV
            clip = self._chimes[pct] = Clip("chime", "", str(path), duration)
        return clip

    def forget(self) -> None:
        """Drop the memoised lookups (e.g. after another process warmed)."""
        self._clips.clear()
        self._chimes.clear()
