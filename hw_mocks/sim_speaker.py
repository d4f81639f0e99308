"""``sim://`` speaker: a sink that records what was played and when."""

from __future__ import annotations

import time

from devices.base import DeviceContext
from devices.locator import Locator
from devices.speaker import Clip, Speaker
from hw_mocks.history import History


class SimSpeaker(Speaker):
    """Records plays in ``played`` and stop times in ``stopped``.

    A clip counts as playing until its duration has passed on the scheduler's
    clock (``time.monotonic`` without a scheduler) or ``stop()`` is called.
    Like a real speaker it emits no events: the prompter reports what it plays.
    """

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        self.played: list[dict] = History()
        self.stopped: list[float] = History()
        self.current: Clip | None = None
        self._ends_at = 0.0

    def _now(self) -> float:
        sched = self.ctx.scheduler
        return sched.clock.now() if sched is not None else 0.0

    def _clock(self) -> float:
        sched = self.ctx.scheduler
        return sched.clock.now() if sched is not None else time.monotonic()

    def play(self, clip: Clip) -> None:
        if self.playing:
            self.stop()
        self.current = clip
        self._ends_at = self._clock() + clip.duration
        self.played.append(
            {
                "t": self._now(),
                "prompt_id": clip.prompt_id,
                "language": clip.language,
                "path": clip.path,
                "duration": clip.duration,
            }
        )

    def stop(self) -> None:
        """Cut the current clip short; does nothing when idle."""
        if not self.playing:
            return
        self.current = None
        self.stopped.append(self._now())

    @property
    def playing(self) -> bool:
        return self.current is not None and self._clock() < self._ends_at

    def close(self) -> None:
        self.stop()
        super().close()
