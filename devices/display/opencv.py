"""The OpenCV display: a real window, served by one thread for the life of the process."""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, TypeAlias

from devices.base import DeviceContext, Severity
from devices.display.interface import MAX_SIZE, MIN_SIZE, Display
from devices.display.playback import FrameShown, Playback
from devices.display.text import screen_canvas
from devices.display.video import resolve_video, seconds_left, video_canvas
from devices.display.xserver import x_display_problem, x_screen_size
from devices.locator import Locator

if TYPE_CHECKING:
    from devices.display.text import Image

# What callers ask of the window thread: (kind, arguments...).
ScreenRequest: TypeAlias = tuple[Literal["screen"], str, str, Mapping[str, object]]
PlayRequest: TypeAlias = tuple[Literal["play"], str, bool, str, float | None, int]
Request: TypeAlias = (
    ScreenRequest | PlayRequest | tuple[Literal["stop"]] | tuple[Literal["recreate"]] | tuple[Literal["close"]]
)

_gui_lock = threading.Lock()
_gui_jobs: queue.SimpleQueue[OpenCVDisplay] = queue.SimpleQueue()
_gui_thread: threading.Thread | None = None
_gui_window = False  # the window exists (only the GUI thread touches this)


def _gui_worker() -> None:
    """Serves one OpenCV display after the other, in one window. HighGUI's toolkit (Qt here)
    is bound to the thread that first used it: a window opened later from another thread
    never shows."""
    while True:
        display = _gui_jobs.get()
        try:
            display._run()
        except Exception as exc:  # a window must not take the thread down with it
            display.raise_fault("window_failed", f"the window thread failed: {exc!r}", Severity.ERROR)
        finally:
            display._playing.clear()
            display._finished.set()


class OpenCVDisplay(Display):
    """A real window through OpenCV HighGUI (``opencv://?fullscreen=1&width=1280&height=720``).

    One thread owns the window: every cv2 GUI call happens there, and callers
    only queue requests, so ``show`` and ``play_video`` never block. That thread
    and its window live as long as the process and serve one open display at a
    time (a display opened while another is open waits for it to close; a closed
    one leaves the window blank). The thread
    waits on the request queue (at most ``SLICE`` seconds, then pumps the GUI
    events), so a stop takes effect within milliseconds. Video frames are decoded
    on that thread and shown on an absolute schedule at the file's frame rate; a
    frame whose successor is already due is skipped and counted in ``frames_dropped``.
    """

    WINDOW = "ATM"
    SLICE = 0.01  # longest wait on the request queue before the GUI events are pumped
    REFRESH = 0.25  # the screen (not the video) is drawn again this often

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.fullscreen = self.loc.flag("fullscreen")
        self.size = (
            self.loc.number("width", int, MIN_SIZE[0], MAX_SIZE[0], 1280),
            self.loc.number("height", int, MIN_SIZE[1], MAX_SIZE[1], 720),
        )
        self._requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._finished = threading.Event()
        self._serving = False
        self._playing = threading.Event()
        self._seq = 0
        self.frames_shown = 0
        self.frames_dropped = 0
        self.shown: collections.deque[FrameShown] = collections.deque(maxlen=1000)  # recent frames shown
        self.screen_shown_at = 0.0  # monotonic time the window last went back to the screen

    def open(self) -> None:
        super().open()
        problem = x_display_problem(os.environ.get("DISPLAY", ""))
        if problem:
            # Qt aborts the whole process when it cannot reach the X server: refuse politely.
            self.raise_fault("no_display", problem, Severity.ERROR)
            return
        global _gui_thread
        with _gui_lock:
            if _gui_thread is None:
                _gui_thread = threading.Thread(target=_gui_worker, name="display", daemon=True)
                _gui_thread.start()
        self._finished.clear()
        self._serving = True
        _gui_jobs.put(self)

    def show(self, screen: str, text: str, **fields: object) -> None:
        self._requests.put(("screen", screen, text, fields))
        self.emit("screen", screen=screen, text=text, fields=fields)

    def play_video(
        self, path: str, loop: bool = True, language: str | None = None, cancel_at: float | None = None
    ) -> None:
        path, language = resolve_video(path, language)
        self._seq += 1
        self._playing.set()
        self._requests.put(("play", path, loop, language, cancel_at, self._seq))

    def stop_video(self) -> None:
        self._playing.clear()
        self._requests.put(("stop",))

    def recreate_window(self) -> None:
        """Replace the window with a new one. For a window that stays blank: HighGUI's Qt
        sometimes misses the X server's MapNotify for a new window when no window manager
        runs, and then never paints it (seen under load on Xvfb)."""
        self._requests.put(("recreate",))

    @property
    def canvas_size(self) -> tuple[int, int] | None:
        return self.size  # a fullscreen window's is the screen's once the window is open

    @property
    def video_playing(self) -> bool:
        return self._playing.is_set()

    def close(self) -> None:
        if self._serving:
            self._requests.put(("close",))
            self._finished.wait(timeout=3)
            self._serving = False
        super().close()

    # -- the window thread --------------------------------------------------
    def _canvas(self, screen: str, text: str, fields: Mapping[str, object]) -> Image:
        return screen_canvas(self.size, text)

    def _start(self, path: str, loop: bool, language: str, cancel_at: float | None, seq: int) -> Playback | None:
        import cv2

        cap = cv2.VideoCapture(path)
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0
        if fps <= 0:
            cap.release()
            self.raise_fault("video_missing", f"cannot play {path}", Severity.WARNING)
            self._ended(seq)
            self.emit("video_stopped", path=path, frames=0, dropped=0)
            return None
        self.clear_fault("video_missing")
        self.emit("video_started", path=path, language=language)
        return Playback(cap, path, loop, language, cancel_at, fps, seq)

    def _end(self, video: Playback) -> None:
        video.cap.release()
        self.emit("video_stopped", path=video.path, frames=video.shown, dropped=video.dropped)

    def _ended(self, seq: int) -> None:
        """The window thread ended play ``seq`` by itself: no longer playing, unless a newer
        play was asked for meanwhile."""
        if seq == self._seq:
            self._playing.clear()

    def _frame(self, video: Playback) -> bool:
        """Show the frame that is due now, skipping those whose time has passed; False at the end."""
        import cv2

        late = int((time.monotonic() - video.t0) * video.fps) - video.k  # whole frames behind
        for _ in range(max(0, late)):
            if not video.skip():
                return False
            video.dropped += 1
            self.frames_dropped += 1
        due = video.due
        step = video.advance()
        if step is None:
            return False
        index, image = step
        left = seconds_left(video.cancel_at, self.clock_now())
        cv2.imshow(self.WINDOW, video_canvas(image, self.size, video.language, left))
        video.shown += 1
        self.frames_shown += 1
        self.shown.append(FrameShown(time.monotonic(), index, left, due))
        return True

    def _window(self, recreate: bool = False) -> None:
        """Make the window ready for this display (window thread only)."""
        global _gui_window
        import cv2

        if recreate and _gui_window:
            cv2.destroyWindow(self.WINDOW)
            cv2.waitKey(5)
            _gui_window = False
        if not _gui_window:  # one window for the life of the process (see "close" below)
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
            _gui_window = True
            for _ in range(10):  # let the toolkit see the window mapped before it is resized
                cv2.waitKey(5)
        elif not self.fullscreen:
            cv2.setWindowProperty(self.WINDOW, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_NORMAL)
        if self.fullscreen:
            # Draw at the screen's size and cover it even when no window manager honours
            # the fullscreen request (a bare X kiosk); otherwise width x height, scaled.
            screen_size = x_screen_size(os.environ.get("DISPLAY", ""))
            if screen_size:
                self.size = screen_size
                cv2.moveWindow(self.WINDOW, 0, 0)
            cv2.resizeWindow(self.WINDOW, *self.size)
            cv2.setWindowProperty(self.WINDOW, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        else:
            cv2.resizeWindow(self.WINDOW, *self.size)

    def _run(self) -> None:
        import cv2
        import numpy as np

        try:
            self._window()
        except cv2.error as exc:
            self.raise_fault("no_display", f"cannot open a window: {exc}", Severity.ERROR)
            return
        screen = self._canvas("welcome", "", {})
        video: Playback | None = None
        redraw, refresh_at = True, 0.0
        while True:
            if redraw:
                timeout = 0.0
            elif video is not None:
                timeout = min(max(video.due - time.monotonic(), 0.0), self.SLICE)
            else:
                timeout = self.SLICE
            try:
                request = self._requests.get(timeout=timeout) if timeout > 0 else self._requests.get_nowait()
            except queue.Empty:
                request = None
            while request is not None:
                if request[0] == "close":
                    if video is not None:
                        self._end(video)
                    # The window stays (blank) for the next display of this process: a
                    # second top-level window of HighGUI's Qt sometimes never paints.
                    cv2.imshow(self.WINDOW, np.zeros((self.size[1], self.size[0], 3), np.uint8))
                    cv2.waitKey(1)
                    return
                if request[0] == "recreate":
                    self._window(recreate=True)
                    redraw = video is None
                elif request[0] == "screen":
                    screen = self._canvas(*request[1:])
                    redraw = video is None  # else shown when the video stops
                elif request[0] == "play":
                    if video is not None:
                        self._end(video)
                    video = self._start(*request[1:])
                    redraw = video is None
                elif request[0] == "stop" and video is not None:
                    self._end(video)
                    video, redraw = None, True
                try:
                    request = self._requests.get_nowait()
                except queue.Empty:
                    request = None
            if video is not None and time.monotonic() >= video.due and not self._frame(video):
                # the end of a video that does not loop, or a broken file
                self._end(video)
                self._ended(video.seq)
                video, redraw = None, True
            if video is None and (redraw or time.monotonic() >= refresh_at):
                # Shown again now and then: a window that is still being mapped or resized
                # can drop the first image and stay black until the next one.
                cv2.imshow(self.WINDOW, screen)
                cv2.waitKey(1)
                refresh_at = time.monotonic() + self.REFRESH
                if redraw:
                    self.screen_shown_at = time.monotonic()
                redraw = False
            else:
                cv2.waitKey(1)
