"""Display interface: screens of text and the help video.

The help video comes in one file per language (``help_<lang>.mp4`` next to ``help.mp4``,
the Japanese default). While it plays, every frame carries two overlays drawn by
:func:`video_canvas`: the "call an operator" hint in the video's language and, when the
caller gave a cancel time, a countdown to it read from the device context's clock.
"""
from __future__ import annotations

import abc
import collections
import math
import os
import queue
import re
import socket
import threading
import time
from functools import lru_cache
from pathlib import Path

from devices.base import Device, Severity

DEFAULT_VIDEO_LANGUAGE = "ja"   # help.mp4 is the Japanese video
MIN_SIZE, MAX_SIZE = (160, 120), (7680, 4320)   # window sizes a locator may ask for (pixels)
# Overlay texts, per language of the video: the operator hint and the countdown.
VIDEO_TEXTS = {
    "ja": {"hint": "係員をお呼びの際は、呼出ボタンを押すか受話器をお取りください",
           "countdown": "あと{n}秒で取引を中止します"},
    "en": {"hint": "To call an operator, press CALL or pick up the phone",
           "countdown": "Cancelled in {n} s"},
    "zh": {"hint": "如需帮助，请按呼叫键或拿起电话联系工作人员",
           "countdown": "{n}秒后取消交易"},
    "ko": {"hint": "상담원을 부르시려면 호출 버튼을 누르거나 수화기를 드십시오",
           "countdown": "{n}초 후 거래가 취소됩니다"},
}
_LANG_SUFFIX = re.compile(r"(.+)_([a-z]{2,3})")


def resolve_video(path: str, language: str | None = None) -> tuple[str, str]:
    """The file to play for ``language`` and the language it is in.

    ``help.mp4`` with ``language="en"`` plays ``help_en.mp4`` when it exists; otherwise the
    given file plays, in the language its name ends with (``_ko``) or the default one."""
    p = Path(path)
    m = _LANG_SUFFIX.fullmatch(p.stem)
    own = m.group(2) if m and m.group(2) in VIDEO_TEXTS else None
    if language and language != own:
        base = m.group(1) if own else p.stem
        candidate = p.with_name(f"{base}_{language}{p.suffix}")
        if candidate.is_file():
            return str(candidate), language
    return str(path), own or DEFAULT_VIDEO_LANGUAGE


def seconds_left(cancel_at: float | None, now: float) -> int | None:
    """Whole seconds shown by the countdown (rounded up, never below 0); None: no countdown."""
    if cancel_at is None:
        return None
    return max(0, math.ceil(cancel_at - now - 1e-9))


@lru_cache(maxsize=None)
def _face():
    import cv2
    return cv2.FontFace("sans")


@lru_cache(maxsize=64)
def _fit(text: str, size: int, width: int, weight: int) -> tuple[int, int]:
    """(font size, text width): the largest size <= ``size`` whose text fits in ``width``."""
    import cv2
    while True:
        w = cv2.getTextSize((width, 100), text, (0, 0), _face(), size, weight)[2]
        if w <= width or size <= 8:
            return size, w
        size -= 1


def overlay_boxes(size: tuple[int, int], language: str, left: int | None) -> dict:
    """Where the overlays go on a canvas of ``size`` (x, y, w, h): ``hint`` and ``countdown``."""
    w, h = size
    band = max(24, round(h * 0.1))
    boxes = {"hint": (0, h - band, w, band)}
    if left is not None:
        texts = VIDEO_TEXTS.get(language, VIDEO_TEXTS["en"])
        fs, tw = _fit(texts["countdown"].format(n=left), max(10, round(h * 0.05)), w // 2, 600)
        bw, bh = tw + 2 * round(h * 0.03), round(fs * 1.6)
        boxes["countdown"] = (w - bw - round(h * 0.03), round(h * 0.03), bw, bh)
    return boxes


def video_canvas(frame, size: tuple[int, int], language: str, left: int | None):
    """The help-video frame as shown: scaled to ``size`` (letterboxed), with the operator
    hint along the bottom and, when ``left`` is not None, the countdown top right."""
    import cv2
    import numpy as np
    w, h = size
    fh, fw = frame.shape[:2]
    if (fw, fh) == (w, h):
        img = frame.copy()
    else:
        scale = min(w / fw, h / fh)
        sw, sh = max(1, round(fw * scale)), max(1, round(fh * scale))
        img = np.zeros((h, w, 3), np.uint8)
        x0, y0 = (w - sw) // 2, (h - sh) // 2
        img[y0:y0 + sh, x0:x0 + sw] = cv2.resize(
            frame, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    texts = VIDEO_TEXTS.get(language, VIDEO_TEXTS["en"])
    boxes = overlay_boxes(size, language, left)
    x, y, bw, bh = boxes["hint"]
    band = img[y:y + bh, x:x + bw]
    band[:] = (band.astype(np.uint16) * 3 // 10).astype(np.uint8)   # darken what lies under it
    fs, tw = _fit(texts["hint"], max(10, round(bh * 0.42)), bw - 2 * round(h * 0.03), 500)
    cv2.putText(img, texts["hint"], ((w - tw) // 2, y + (bh + fs * 7 // 10) // 2),
                (255, 255, 255), _face(), fs, 500)
    if left is not None:
        x, y, bw, bh = boxes["countdown"]
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (40, 40, 200), -1, cv2.LINE_AA)
        label = texts["countdown"].format(n=left)
        fs, tw = _fit(label, max(10, round(h * 0.05)), w // 2, 600)
        cv2.putText(img, label, (x + (bw - tw) // 2, y + (bh + fs * 7 // 10) // 2),
                    (255, 255, 255), _face(), fs, 600)
    return img


class Display(Device):
    kind = "display"

    @abc.abstractmethod
    def show(self, screen: str, text: str, **fields) -> None:
        """Show a screen; ``fields`` carry values the screen displays.

        Emits ``screen`` (screen, text, fields) so the journal of events, and a
        simulated customer, know what is on the screen."""

    @abc.abstractmethod
    def play_video(self, path: str, loop: bool = True, language: str | None = None,
                   cancel_at: float | None = None) -> None:
        """Start the video at once; never blocks the caller.

        ``language`` picks ``<stem>_<language>.mp4`` next to ``path`` when there is one and
        sets the language of the overlays; ``cancel_at`` (a time on the context's clock)
        adds the "cancelled in N s" countdown. Emits ``video_started`` / ``video_stopped``."""

    def show_video(self, path: str, language: str | None = None, cancel_at: float | None = None,
                   loop: bool = True) -> None:
        self.play_video(path, loop=loop, language=language, cancel_at=cancel_at)

    @abc.abstractmethod
    def stop_video(self) -> None:
        """Stop the video at once and show the screen again."""

    @property
    @abc.abstractmethod
    def video_playing(self) -> bool:
        """Whether a video is playing."""

    def clock_now(self) -> float:
        """Now on the context's clock (what ``cancel_at`` is measured on)."""
        sched = self.ctx.scheduler
        return sched.clock.now() if sched is not None else time.monotonic()


def x_display_problem(display: str) -> str:
    """Why no window can open on ``display`` (e.g. ":0"), or "" when its X server answers."""
    if not display:
        return "no DISPLAY to open a window on"
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return f"DISPLAY {display!r} is not of the form [host]:number"
    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(f"/tmp/.X11-unix/X{number}")
        else:
            socket.create_connection((host, 6000 + int(number)), timeout=1).close()
    except OSError as exc:
        return f"the X server of DISPLAY {display!r} does not answer: {exc.strerror or exc}"
    return ""


def _x_cookie(number: str) -> tuple[bytes, bytes]:
    """(auth name, auth data) for local display ``number`` from $XAUTHORITY, or empty ones."""
    path = os.environ.get("XAUTHORITY") or os.path.expanduser("~/.Xauthority")
    try:
        data = Path(path).read_bytes()
    except OSError:
        return b"", b""
    host, pos = socket.gethostname().encode(), 0
    found = (b"", b"")
    while pos + 2 <= len(data):
        family = int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
        fields = []
        for _ in range(4):
            n = int.from_bytes(data[pos:pos + 2], "big")
            fields.append(data[pos + 2:pos + 2 + n])
            pos += 2 + n
        address, num, name, cookie = fields
        if num.decode(errors="replace") in (number, "") and (family == 65535 or address == host):
            found = (name, cookie)
            if num:
                break
    return found


def x_screen_size(display: str) -> tuple[int, int] | None:
    """Width and height in pixels of the first screen of a local X ``display``, or None.

    Reads the X11 connection setup reply (no client library needed), so a fullscreen window
    can cover the screen even with no window manager to honour a fullscreen request."""
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if host not in ("", "unix") or not number.isdigit():
        return None
    name, cookie = _x_cookie(number)
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    u16 = lambda n: n.to_bytes(2, "little")  # noqa: E731
    request = b"l\0" + u16(11) + u16(0) + u16(len(name)) + u16(len(cookie)) + b"\0\0" + pad(name) + pad(cookie)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(f"/tmp/.X11-unix/X{number}")
            sock.sendall(request)
            reply = b""
            while len(reply) < 8 or len(reply) < 8 + 4 * int.from_bytes(reply[6:8], "little"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    if reply[0] != 1:  # refused (authorization) or needs more authentication
        return None
    vendor_len, n_formats = int.from_bytes(reply[24:26], "little"), reply[29]
    screen = 40 + vendor_len + (-vendor_len % 4) + 8 * n_formats
    w = int.from_bytes(reply[screen + 20:screen + 22], "little")
    h = int.from_bytes(reply[screen + 22:screen + 24], "little")
    return (w, h) if w and h else None


class FrameShown(tuple):
    """One frame on the real window: ``(t, index, left, due)`` — when it was shown
    (monotonic), its index in the file, the countdown on it (None: none) and when it was due."""

    __slots__ = ()

    def __new__(cls, t: float, index: int, left: int | None, due: float):
        return tuple.__new__(cls, (t, index, left, due))

    t = property(lambda self: self[0])
    index = property(lambda self: self[1])
    left = property(lambda self: self[2])
    due = property(lambda self: self[3])


class _Playback:
    """The video being played on the window thread; frame ``k`` (counted from the start,
    across loops) is due at ``t0 + k / fps`` — an absolute schedule, so nothing drifts."""

    def __init__(self, cap, path: str, loop: bool, language: str, cancel_at, fps: float, seq: int):
        self.cap, self.path, self.loop, self.language, self.cancel_at = cap, path, loop, language, cancel_at
        self.fps, self.seq = fps, seq
        self.t0 = time.monotonic()
        self.k = 0          # frames shown or dropped so far
        self.index = 0      # index in the file of the next frame
        self.shown = 0
        self.dropped = 0

    @property
    def due(self) -> float:
        return self.t0 + self.k / self.fps

    def advance(self, decode: bool):
        """Step to the next frame (looping if asked): ``(index, image or None)``, or None at the end."""
        import cv2
        ok = self.cap.grab()
        if not ok and self.loop and self.index > 0:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.index = 0
            ok = self.cap.grab()
        if not ok:
            return None
        image = None
        if decode:
            ok, image = self.cap.retrieve()
            if not ok:
                return None
        index, self.index, self.k = self.index, self.index + 1, self.k + 1
        return index, image


_gui_lock = threading.Lock()
_gui_jobs: "queue.SimpleQueue" = queue.SimpleQueue()
_gui_thread: threading.Thread | None = None
_gui_window = False   # the window exists (only the GUI thread touches this)


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
    SLICE = 0.01     # longest wait on the request queue before the GUI events are pumped
    REFRESH = 0.25   # the screen (not the video) is drawn again this often

    def __init__(self, ctx=None, locator=None):
        super().__init__(ctx, locator)
        self.fullscreen = self.loc.flag("fullscreen")
        self.size = (self.loc.number("width", int, MIN_SIZE[0], MAX_SIZE[0], 1280),
                     self.loc.number("height", int, MIN_SIZE[1], MAX_SIZE[1], 720))
        self._requests: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self._finished = threading.Event()
        self._serving = False
        self._playing = threading.Event()
        self._seq = 0
        self.frames_shown = 0
        self.frames_dropped = 0
        self.shown: collections.deque = collections.deque(maxlen=1000)  # recent FrameShown records
        self.screen_shown_at = 0.0   # monotonic time the window last went back to the screen

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

    def show(self, screen: str, text: str, **fields) -> None:
        self._requests.put(("screen", screen, text, fields))
        self.emit("screen", screen=screen, text=text, fields=fields)

    def play_video(self, path: str, loop: bool = True, language: str | None = None,
                   cancel_at: float | None = None) -> None:
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
    def video_playing(self) -> bool:
        return self._playing.is_set()

    def close(self) -> None:
        if self._serving:
            self._requests.put(("close",))
            self._finished.wait(timeout=3)
            self._serving = False
        super().close()

    # -- the window thread --------------------------------------------------
    def _canvas(self, screen: str, text: str, fields: dict):
        import cv2
        import numpy as np
        w, h = self.size
        img = np.full((h, w, 3), (60, 40, 20), dtype=np.uint8)
        cv2.putText(img, screen.replace("_", " ").upper(), (40, 90), cv2.FONT_HERSHEY_SIMPLEX,
                    2.0, (255, 255, 255), 3, cv2.LINE_AA)
        lines = [text] if text else []  # OpenCV 5's built-in font draws kana and kanji too
        lines += [f"{k}: {v}" for k, v in fields.items()]
        for i, line in enumerate(lines[:10]):
            cv2.putText(img, str(line)[:60], (40, 170 + 50 * i), cv2.FONT_HERSHEY_SIMPLEX,
                        1.1, (230, 230, 230), 2, cv2.LINE_AA)
        return img

    def _start(self, path: str, loop: bool, language: str, cancel_at, seq: int):
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
        return _Playback(cap, path, loop, language, cancel_at, fps, seq)

    def _end(self, video: _Playback) -> None:
        video.cap.release()
        self.emit("video_stopped", path=video.path, frames=video.shown, dropped=video.dropped)

    def _ended(self, seq: int) -> None:
        """The window thread ended play ``seq`` by itself: no longer playing, unless a newer
        play was asked for meanwhile."""
        if seq == self._seq:
            self._playing.clear()

    def _frame(self, video: _Playback) -> bool:
        """Show the frame that is due now, skipping those whose time has passed; False at the end."""
        import cv2
        late = int((time.monotonic() - video.t0) * video.fps) - video.k  # whole frames behind
        for _ in range(max(0, late)):
            if video.advance(decode=False) is None:
                return False
            video.dropped += 1
            self.frames_dropped += 1
        due = video.due
        step = video.advance(decode=True)
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
        video: _Playback | None = None
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
                kind = request[0]
                if kind == "close":
                    if video is not None:
                        self._end(video)
                    # The window stays (blank) for the next display of this process: a
                    # second top-level window of HighGUI's Qt sometimes never paints.
                    cv2.imshow(self.WINDOW, np.zeros((self.size[1], self.size[0], 3), np.uint8))
                    cv2.waitKey(1)
                    return
                if kind == "recreate":
                    self._window(recreate=True)
                    redraw = video is None
                elif kind == "screen":
                    screen = self._canvas(*request[1:])
                    redraw = video is None  # else shown when the video stops
                elif kind == "play":
                    if video is not None:
                        self._end(video)
                    video = self._start(*request[1:])
                    redraw = video is None
                elif kind == "stop" and video is not None:
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
