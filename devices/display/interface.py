"""The Display interface: screens of text and the help video."""

from __future__ import annotations

import abc
import time

from devices.base import Device

MIN_SIZE, MAX_SIZE = (160, 120), (7680, 4320)  # window sizes a locator may ask for (pixels)


class Display(Device):
    kind = "display"

    @abc.abstractmethod
    def show(self, screen: str, text: str, **fields: object) -> None:
        """Show a screen: ``text`` is all the customer reads, its first line the title
        (the state machine writes the fields into it, in the customer's language);
        ``fields`` are the values behind it, for the record, never drawn as they are.

        Emits ``screen`` (screen, text, fields) so the journal of events, and a
        simulated customer, know what is on the screen."""

    @abc.abstractmethod
    def play_video(
        self, path: str, loop: bool = True, language: str | None = None, cancel_at: float | None = None
    ) -> None:
        """Start the video at once; never blocks the caller.

        ``language`` picks ``<stem>_<language>.mp4`` next to ``path`` when there is one and
        sets the language of the overlays; ``cancel_at`` (a time on the context's clock)
        adds the "cancelled in N s" countdown. Emits ``video_started`` / ``video_stopped``."""

    def show_video(
        self, path: str, language: str | None = None, cancel_at: float | None = None, loop: bool = True
    ) -> None:
        self.play_video(path, loop=loop, language=language, cancel_at=cancel_at)

    @abc.abstractmethod
    def stop_video(self) -> None:
        """Stop the video at once and show the screen again."""

    @property
    def canvas_size(self) -> tuple[int, int] | None:
        """(width, height) in pixels the display draws at; None: each video at its own size."""
        return None

    @property
    @abc.abstractmethod
    def video_playing(self) -> bool:
        """Whether a video is playing."""

    def clock_now(self) -> float:
        """Now on the context's clock (what ``cancel_at`` is measured on)."""
        sched = self.ctx.scheduler
        return sched.clock.now() if sched is not None else time.monotonic()
