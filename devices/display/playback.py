"""Video playback on the window thread: the frame schedule and the record of each frame shown."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cv2

    from devices.display.text import Image


class FrameShown(tuple[float, int, int | None, float]):
    """One frame on the real window: ``(t, index, left, due)`` — when it was shown
    (monotonic), its index in the file, the countdown on it (None: none) and when it was due."""

    __slots__ = ()

    def __new__(cls, t: float, index: int, left: int | None, due: float) -> FrameShown:
        return tuple.__new__(cls, (t, index, left, due))

    @property
    def t(self) -> float:
        return self[0]

    @property  # the field shadows tuple.index(), as a (t, index, left, due) record should
    def index(self) -> int:  # type: ignore[override]
        return self[1]

    @property
    def left(self) -> int | None:
        return self[2]

    @property
    def due(self) -> float:
        return self[3]


class Playback:
    """The video being played on the window thread; frame ``k`` (counted from the start,
    across loops) is due at ``t0 + k / fps`` — an absolute schedule, so nothing drifts."""

    def __init__(
        self, cap: cv2.VideoCapture, path: str, loop: bool, language: str, cancel_at: float | None, fps: float, seq: int
    ):
        self.cap, self.path, self.loop, self.language, self.cancel_at = cap, path, loop, language, cancel_at
        self.fps, self.seq = fps, seq
        self.t0 = time.monotonic()
        self.k = 0  # frames shown or dropped so far
        self.index = 0  # index in the file of the next frame
        self.shown = 0
        self.dropped = 0

    @property
    def due(self) -> float:
        return self.t0 + self.k / self.fps

    def _grab(self) -> bool:
        """Grab the next frame, back to the first when the file ends and the video loops."""
        import cv2

        ok = self.cap.grab()
        if not ok and self.loop and self.index > 0:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.index = 0
            ok = self.cap.grab()
        return ok

    def _step(self) -> int:
        """Count the frame just grabbed; its index in the file."""
        index, self.index, self.k = self.index, self.index + 1, self.k + 1
        return index

    def skip(self) -> bool:
        """Step over the next frame without decoding it (looping if asked); False at the end."""
        if not self._grab():
            return False
        self._step()
        return True

    def advance(self) -> tuple[int, Image] | None:
        """Step to the next frame (looping if asked): ``(index, image)``, or None at the end."""
        if not self._grab():
            return None
        ok, image = self.cap.retrieve()
        if not ok:
            return None
        return self._step(), image
