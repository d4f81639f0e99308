"""Plays voice prompts and repeat patterns without blocking the state machine.

A pattern (from the prompt catalogue) says which prompt to repeat, how often
and whether a chime comes first. Repeats are timers on the scheduler, so the
state machine stays responsive and ``stop()`` silences the speaker at once.
When a prompt has no rendered audio, its text goes to the screen instead.
"""
from __future__ import annotations


class Prompter:
    def __init__(self, scheduler, speaker, display, library, out):
        self.scheduler = scheduler
        self.speaker = speaker
        self.display = display
        self.library = library      # clip(id, lang), chime(), pattern(name), display(id, lang)
        self.out = out              # out(type, **fields)
        self.active: str | None = None
        self._timers: list = []
        self._plays = 0

    def say(self, prompt_id: str, language: str) -> None:
        """Play one prompt now (interrupting whatever plays)."""
        self._play(prompt_id, language, pattern=None, repeat=0)

    def start(self, pattern_name: str, language: str) -> None:
        """Start a repeat pattern unless it is already running."""
        if self.active == pattern_name:
            return
        self.stop("replaced")
        pattern = self.library.pattern(pattern_name)
        self.active = pattern_name
        self._plays = 0
        self._cycle(pattern, language)

    def _cycle(self, pattern, language: str) -> None:
        if self.active != pattern.name:
            return
        self._plays += 1
        delay = 0.0
        if pattern.chime:
            chime = self.library.chime()
            if chime is not None and self.speaker.usable:
                self.speaker.play(chime)
                delay = chime.duration
        if delay:
            self._timers.append(self.scheduler.call_later(
                delay, self._play, pattern.prompt, language, pattern.name, self._plays))
        else:
            self._play(pattern.prompt, language, pattern.name, self._plays)
        if self._plays < pattern.repeats:
            self._timers.append(self.scheduler.call_later(pattern.interval, self._cycle, pattern, language))

    def _play(self, prompt_id: str, language: str, pattern: str | None, repeat: int) -> None:
        clip = self.library.clip(prompt_id, language)
        spoken = clip is not None and self.speaker.usable
        if spoken:
            self.speaker.play(clip)
        else:
            self.display.show("prompt", self.library.display(prompt_id, language), prompt=prompt_id)
        self.out("prompt", action="play", prompt=prompt_id, language=language,
                 pattern=pattern, repeat=repeat, spoken=spoken)

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
