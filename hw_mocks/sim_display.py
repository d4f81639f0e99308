"""``sim://`` display: headless, records the screens and the video frames shown.

A video is "shown" on the scheduler's clock at its native frame rate: frame ``k``
(counted from the start, across loops) at ``start + k / fps``, recorded in
``frames_shown`` as ``(time, index in the file)``. That schedule is known in
advance, so nothing runs per frame: the records are written when someone looks
(``frames_shown``), when the video stops, and at the end of each pass through
the file (one timer per pass, which also ends a video that does not loop). By
default nothing is decoded — only the frame rate and count are read, once per
file — so scenario runs on a virtual clock stay cheap.

``sim://?decode=1`` also decodes each frame as it is recorded (sequentially, one
at a time, on the caller's thread), draws the overlays the real window draws, and
keeps the last ``keep`` images (default 8) in ``frames`` as ``(time, index, image)``;
``width`` and ``height`` set the canvas (default: the video's own size).
"""

from __future__ import annotations

import collections
import math
import os

import cv2

from devices.base import DeviceContext, Severity
from devices.display import MAX_SIZE, MIN_SIZE, Display, resolve_video, seconds_left, video_canvas
from devices.locator import Locator
from hw_mocks.history import History

_PROBES: dict[tuple, tuple[float, int, int, int] | None] = {}


def probe(path: str) -> tuple[float, int, int, int] | None:
    """``(fps, frame count, width, height)`` of a video, or None; read once per file version."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _PROBES:
        cap = cv2.VideoCapture(path)
        info = None
        if cap.isOpened():
            fps, count = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if fps > 0 and count <= 0:  # no count in the container: count the frames once
                count = 0
                while cap.grab():
                    count += 1
            if fps > 0 and count > 0:
                info = (fps, count, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        cap.release()
        _PROBES[key] = info
    return _PROBES[key]


class _Play:
    __slots__ = (
        "path",
        "language",
        "loop",
        "cancel_at",
        "t0",
        "fps",
        "count",
        "size",
        "next_k",
        "shown",
        "cap",
        "cap_index",
    )

    def __init__(self, path, language, loop, cancel_at, t0, fps, count, size):
        self.path, self.language, self.loop, self.cancel_at = path, language, loop, cancel_at
        self.t0, self.fps, self.count, self.size = t0, fps, count, size
        self.next_k = 0  # the next frame to record
        self.shown = 0
        self.cap = None  # decode=1 only
        self.cap_index = 0  # index of the frame the capture reads next

    def time_of(self, k: int) -> float:
        return self.t0 + k / self.fps

    def last_due(self, now: float) -> int:
        """The last frame due at ``now`` (-1: none yet)."""
        k = math.floor((now - self.t0) * self.fps + 1e-9)
        return k if self.loop else min(k, self.count - 1)


class SimDisplay(Display):
    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        self.screens: list[dict] = History()
        self._frames_shown: History[tuple[float, int]] = History()
        self.frame_count = 0  # every frame recorded, including those History trimmed
        loc = self.loc
        self.decode = loc.flag("decode")
        self._keep = loc.number("keep", int, 1, 10_000, 8)
        self.frames: collections.deque = collections.deque(maxlen=self._keep)
        if loc.has("width") != loc.has("height"):
            raise loc.error("options width= and height= go together")
        w = loc.number("width", int, MIN_SIZE[0], MAX_SIZE[0], 0)
        h = loc.number("height", int, MIN_SIZE[1], MAX_SIZE[1], 0)
        self.size = (w, h) if w and h else None
        self._play: _Play | None = None
        self._timer = None

    def _now(self) -> float:
        return self.ctx.scheduler.clock.now() if self.ctx.scheduler is not None else 0.0

    def show(self, screen: str, text: str, **fields) -> None:
        self.screens.append({"t": self._now(), "screen": screen, "text": text, "fields": fields})
        self.emit("screen", screen=screen, text=text, fields=fields)

    def play_video(
        self, path: str, loop: bool = True, language: str | None = None, cancel_at: float | None = None
    ) -> None:
        if self.ctx.scheduler is None:
            raise RuntimeError("SimDisplay needs a scheduler to play video")
        self.stop_video()
        path, language = resolve_video(path, language)
        info = probe(path)
        if info is None:
            self.raise_fault("video_missing", f"cannot play {path}", Severity.WARNING)
            return
        self.clear_fault("video_missing")
        fps, count, w, h = info
        play = self._play = _Play(path, language, loop, cancel_at, self._now(), fps, count, self.size or (w, h))
        self.emit("video_started", path=path, language=language)
        self._record(play)
        self._arm(play, 1)

    def _arm(self, play: _Play, passes: int) -> None:
        """A timer at the end of pass ``passes`` through the file."""
        self._timer = self.ctx.scheduler.call_later(
            max(0.0, play.time_of(passes * play.count) - self._now()), self._pass_done, passes
        )

    def _pass_done(self, passes: int) -> None:
        play = self._play
        assert play is not None  # stop_video cancels this timer
        self._timer = None
        self._record(play)
        if play.loop:
            self._arm(play, passes + 1)
        else:
            self.stop_video()

    def _record(self, play: _Play) -> None:
        """Write the records of the frames due by now."""
        last = play.last_due(self._now())
        first = play.next_k
        if last < first:
            return
        n = last - first + 1
        play.shown += n
        self.frame_count += n
        cap = self._frames_shown.cap
        if n > 2 * cap:  # only the newest ones would be kept anyway
            first = last - cap + 1
        append, fps, t0, count = self._frames_shown.append, play.fps, play.t0, play.count
        first_kept = last - self._keep if self.decode else last
        for k in range(first, last + 1):
            t = t0 + k / fps
            append((t, k % count))
            if k > first_kept:
                self._decode(play, k, t)
        play.next_k = last + 1

    def _decode(self, play: _Play, k: int, t: float) -> None:
        """Decode frame ``k`` (the capture only moves forward, or back to the start) and
        keep it as shown: with the overlays, at the canvas size."""
        index = k % play.count
        if play.cap is None:
            play.cap = cv2.VideoCapture(play.path)
        if index < play.cap_index:
            play.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            play.cap_index = 0
        while play.cap_index < index:
            play.cap.grab()
            play.cap_index += 1
        ok, image = play.cap.read()
        play.cap_index += 1
        if ok:
            left = seconds_left(play.cancel_at, t)
            self.frames.append((t, index, video_canvas(image, play.size, play.language, left)))

    @property
    def frames_shown(self) -> list[tuple[float, int]]:
        """``(time, index)`` of the frames shown (bounded: the newest 10,000 to 20,000)."""
        if self._play is not None:
            self._record(self._play)
        return self._frames_shown

    def stop_video(self) -> None:
        play = self._play
        if play is None:
            return
        self._record(play)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if play.cap is not None:
            play.cap.release()
        self._play = None
        self.emit("video_stopped", path=play.path, frames=play.shown)

    @property
    def canvas_size(self) -> tuple[int, int] | None:
        return self.size

    @property
    def video_playing(self) -> bool:
        return self._play is not None

    @property
    def video_language(self) -> str | None:
        return self._play.language if self._play is not None else None

    def close(self) -> None:
        self.stop_video()
        super().close()
