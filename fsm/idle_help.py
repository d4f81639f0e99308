"""Idle help: the help video after a quiet spell, and the cancel after a longer one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fsm.clock import Scheduler, Timer


class IdleHelp:
    """The idle-help and idle-cancel timers of a state that waits for the customer.

    Both are measured from the last input. Input only moves ``last_input``; a
    timer that fires early for that reason re-arms itself for the rest (one
    timer, not one per key).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        timeouts: dict[str, float],
        display: Any,
        help_video: str,
        journal_step: Callable[..., None],
        language: Callable[[], str],
        timed_out: Callable[[], None],
        topic: Callable[[], str] = lambda: "general",
        video_for: Callable[[str, str], str] | None = None,
    ) -> None:
        """``topic()``: the help topic of the state now; ``video_for(topic, language)``: the
        file to play (without it, ``help_video`` whatever the state)."""
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.t = timeouts
        self.display = display
        self.help_video = help_video
        self.journal_step = journal_step  # step(name, **data) in the current session
        self.language = language
        self.timed_out = timed_out
        self.topic = topic
        self.video_for = video_for
        self.last_input = 0.0
        self.video_on = False
        self._timers: list[Timer] = []

    def arm(self) -> None:
        """Start both timers, from now."""
        self.disarm()
        self.last_input = self.clock.now()
        self._timers = [
            self.scheduler.call_later(self.t["idle_help"], self._due, "idle_help"),
            self.scheduler.call_later(self.t["idle_cancel"], self._due, "idle_cancel"),
        ]

    def disarm(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        self.stop_video("state_left")

    def activity(self) -> None:
        """The customer did something: stop the video, measure from now."""
        self.stop_video("input")
        self.last_input = self.clock.now()
        timers = self._timers
        if timers and timers[0].cancelled:  # help already shown: show it again if idle again
            timers[0] = self.scheduler.call_later(self.t["idle_help"], self._due, "idle_help")

    def _due(self, which: str) -> None:
        remaining = self.last_input + self.t[which] - self.clock.now()
        if remaining > 1e-9:
            slot = 0 if which == "idle_help" else 1
            self._timers[slot] = self.scheduler.call_later(remaining, self._due, which)
        elif which == "idle_help":
            self._show()
        else:
            self.timed_out()

    def _show(self) -> None:
        if self.help_video and self.display.usable:
            language, topic = self.language(), self.topic()
            path = self.video_for(topic, language) if self.video_for is not None else self.help_video
            self.video_on = True
            self.journal_step("help_video", topic=topic)
            self.display.play_video(
                path, loop=True, language=language, cancel_at=self.last_input + self.t["idle_cancel"]
            )

    def stop_video(self, reason: str) -> None:
        if self.video_on:
            self.video_on = False
            self.journal_step("help_video_stopped", reason=reason)
            self.display.stop_video()

    def video_stopped(self) -> None:
        """The display says the video ended by itself."""
        self.video_on = False
