"""Plays voice prompts and repeat patterns without blocking the state machine.

A pattern (from the prompt catalogue) says which prompt to repeat, how often,
whether a chime comes first and how it escalates: from a given repeat on it may
play other words, louder, with a chime. Repeats are timers on the scheduler, so
the state machine stays responsive and ``stop()`` silences the speaker at once.
When a prompt has no rendered audio, its text goes to the screen instead.

Every play is recorded as a ``prompt`` event with ``action="play"``, the
``prompt`` id actually played, ``language``, ``pattern`` (None for ``say``),
``repeat`` (from 1; 0 for ``say``), ``volume`` (the loudness played; see
:meth:`Prompter._play`), ``spoken`` and, for patterns, ``chime`` and
``escalated``.
"""

from __future__ import annotations

from typing import Any, Protocol

from devices.speaker import Clip
from fsm.clock import Scheduler, Timer
from fsm.ports import Out


class PromptStep(Protocol):
    """What one repeat of a pattern plays."""

    @property
    def prompt(self) -> str: ...
    @property
    def volume(self) -> float: ...
    @property
    def chime(self) -> bool: ...
    @property
    def escalated(self) -> bool: ...


class PromptPattern(Protocol):
    """A repeat pattern of the prompt catalogue."""

    @property
    def name(self) -> str: ...
    @property
    def interval(self) -> float: ...
    @property
    def repeats(self) -> int: ...
    def step(self, repeat: int) -> PromptStep: ...


class PromptLibrary(Protocol):
    """The prompts as the state machine asks for them (the agent's voice library)."""

    def clip(self, prompt_id: str, language: str, volume: float = 1.0) -> Clip | None: ...
    def chime(self, volume: float = 1.0) -> Clip | None: ...
    def pattern(self, name: str) -> PromptPattern: ...
    def display(self, prompt_id: str, language: str) -> str: ...
    def screen_text(self, screen: str, language: str, fields: dict[str, Any]) -> str: ...


class PromptSpeaker(Protocol):
    @property
    def usable(self) -> bool: ...
    @property
    def playing(self) -> bool: ...
    def play(self, clip: Clip) -> None: ...
    def stop(self) -> None: ...


class PromptDisplay(Protocol):
    def show(self, screen: str, text: str, **fields: Any) -> None: ...


class Prompter:
    def __init__(
        self, scheduler: Scheduler, speaker: PromptSpeaker, display: PromptDisplay, library: PromptLibrary, out: Out
    ) -> None:
        self.scheduler = scheduler
        self.speaker = speaker
        self.display = display
        # clip(id, lang[, volume]), chime([volume]), pattern(name), display(id, lang)
        self.library = library
        self.out = out  # out(type, **fields)
        self.active: str | None = None
        self._timers: list[Timer] = []
        self._plays = 0

    def say(self, prompt_id: str, language: str, volume: float = 1.0) -> None:
        """Play one prompt now (interrupting whatever plays)."""
        self._play(prompt_id, language, pattern=None, repeat=0, volume=volume)

    def start(self, pattern_name: str, language: str) -> None:
        """Start a repeat pattern unless it is already running."""
        if self.active == pattern_name:
            return
        self.stop("replaced")
        pattern = self.library.pattern(pattern_name)
        self.active = pattern_name
        self._plays = 0
        self._cycle(pattern, language)

    def _cycle(self, pattern: PromptPattern, language: str) -> None:
        if self.active != pattern.name:
            return
        self._plays += 1
        repeat = self._plays
        step = pattern.step(repeat)
        extra = {"chime": False, "escalated": step.escalated}
        delay = 0.0
        if step.chime:
            chime = self._chime(step.volume)
            if chime is not None and self.speaker.usable:
                self.speaker.play(chime)
                delay = chime.duration
                extra["chime"] = True
        if delay:
            self._timers.append(
                self.scheduler.call_later(
                    delay, self._play, step.prompt, language, pattern.name, repeat, step.volume, extra
                )
            )
        else:
            self._play(step.prompt, language, pattern.name, repeat, step.volume, extra)
        if repeat < pattern.repeats:
            self._timers.append(self.scheduler.call_later(pattern.interval, self._cycle, pattern, language))

    def _clip(self, prompt_id: str, language: str, volume: float) -> Clip | None:
        if volume == 1.0:  # the plain call, for libraries that know no volumes
            return self.library.clip(prompt_id, language)
        return self.library.clip(prompt_id, language, volume=volume)

    def _chime(self, volume: float) -> Clip | None:
        chime = self.library.chime(volume=volume) if volume != 1.0 else None
        return chime if chime is not None else self.library.chime()

    def _play(
        self,
        prompt_id: str,
        language: str,
        pattern: str | None,
        repeat: int,
        volume: float = 1.0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Play (or show) one prompt and record it.

        A louder copy that is missing from the cache falls back to the prompt at
        normal loudness (better than silence): the event then says
        ``volume=1.0`` and ``requested_volume``.
        """
        fields = dict(extra or {})
        clip = self._clip(prompt_id, language, volume)
        played = volume
        if clip is None and volume != 1.0:
            clip = self.library.clip(prompt_id, language)
            if clip is not None:
                played, fields["requested_volume"] = 1.0, volume
        spoken = clip is not None and self.speaker.usable
        if clip is not None and spoken:
            self.speaker.play(clip)
        else:
            self.display.show("prompt", self.library.display(prompt_id, language), prompt=prompt_id)
        self.out(
            "prompt",
            action="play",
            prompt=prompt_id,
            language=language,
            pattern=pattern,
            repeat=repeat,
            volume=played,
            spoken=spoken,
            **fields,
        )

    def stop(self, reason: str) -> None:
        """Silence the speaker and cancel pending repeats."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self.active is not None:
            self.out("prompt", action="stop", pattern=self.active, reason=reason)
            self.active = None
        if self.speaker.usable and self.speaker.playing:
            self.speaker.stop()
