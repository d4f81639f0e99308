"""``sim://`` display: headless, records the screens and the video frames shown.

Video playback really decodes the file with OpenCV, one frame per 1/fps
seconds on the scheduler's clock, so a virtual-clock test sees exactly which
frames a customer would have seen, and when.
"""
from __future__ import annotations

import cv2

from devices.base import Severity
from devices.display import Display
from hw_mocks.history import History


class SimDisplay(Display):
    def __init__(self, ctx=None, locator=None):
        super().__init__(ctx, locator)
        self.screens: list[dict] = History()
        self.frames_shown: list[tuple[float, int]] = History()
        self._cap = None
        self._timer = None
        self._index = 0
        self._loop = True
        self._period = 0.1
        self._path = ""
        self._play_started = 0

    def _now(self) -> float:
        return self.ctx.scheduler.clock.now() if self.ctx.scheduler is not None else 0.0

    def show(self, screen: str, text: str, **fields) -> None:
        self.screens.append({"t": self._now(), "screen": screen, "text": text, "fields": fields})
        self.emit("screen", screen=screen, text=text, fields=fields)

    def play_video(self, path: str, loop: bool = True) -> None:
        if self.ctx.scheduler is None:
            raise RuntimeError("SimDisplay needs a scheduler to play video")
        self.stop_video()
        cap = cv2.VideoCapture(path)
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0
        if not cap.isOpened() or fps <= 0:
            cap.release()
            self.raise_fault("video_missing", f"cannot play {path}", Severity.WARNING)
            return
        self.clear_fault("video_missing")
        self._cap, self._period, self._loop, self._path, self._index = cap, 1.0 / fps, loop, path, 0
        self._play_started = len(self.frames_shown)
        self.emit("video_started", path=path)
        self._tick()

    def _tick(self) -> None:
        ok = self._cap.grab()
        if not ok and self._loop and self._index:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._index = 0
            ok = self._cap.grab()
        if not ok:
            return self.stop_video()
        self.frames_shown.append((self._now(), self._index))
        self._index += 1
        self._timer = self.ctx.scheduler.call_later(self._period, self._tick)
        return None

    def stop_video(self) -> None:
        if self._cap is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._cap.release()
        self._cap = None
        self.emit("video_stopped", path=self._path, frames=len(self.frames_shown) - self._play_started)

    @property
    def video_playing(self) -> bool:
        return self._cap is not None

    def close(self) -> None:
        self.stop_video()
        super().close()
