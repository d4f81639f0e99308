"""Display interface: screens of text and the help video."""
from __future__ import annotations

import os
import queue
import socket
import threading
import time

from devices.base import Device, Severity


class Display(Device):
    kind = "display"

    def show(self, screen: str, text: str, **fields) -> None:
        """Show a screen; ``fields`` carry values the screen displays.

        Emits ``screen`` (screen, text, fields) so the journal of events, and a
        simulated customer, know what is on the screen."""
        raise NotImplementedError

    def play_video(self, path: str, loop: bool = True) -> None:
        """Start the video at once; never blocks the caller."""
        raise NotImplementedError

    def stop_video(self) -> None:
        raise NotImplementedError

    @property
    def video_playing(self) -> bool:
        raise NotImplementedError


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


class OpenCVDisplay(Display):
    """A real window through OpenCV HighGUI (``opencv://?fullscreen=1``).

    One thread owns the window: every cv2 GUI call happens there, and callers
    only queue requests, so ``show`` and ``play_video`` never block.
    """

    WINDOW = "ATM"

    def __init__(self, ctx=None, locator=None):
        super().__init__(ctx, locator)
        self.fullscreen = self.params.get("fullscreen", "0") in ("1", "true", "yes")
        self.size = (int(self.params.get("width", 1280)), int(self.params.get("height", 720)))
        self._requests: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._playing = threading.Event()
        self.frames_shown = 0

    def open(self) -> None:
        super().open()
        problem = x_display_problem(os.environ.get("DISPLAY", ""))
        if problem:
            # Qt aborts the whole process when it cannot reach the X server: refuse politely.
            self.raise_fault("no_display", problem, Severity.ERROR)
            return
        self._thread = threading.Thread(target=self._run, name="display", daemon=True)
        self._thread.start()

    def show(self, screen: str, text: str, **fields) -> None:
        self._requests.put(("screen", screen, text, fields))
        self.emit("screen", screen=screen, text=text, fields=fields)

    def play_video(self, path: str, loop: bool = True) -> None:
        self._playing.set()
        self._requests.put(("play", path, loop))

    def stop_video(self) -> None:
        self._playing.clear()
        self._requests.put(("stop",))

    @property
    def video_playing(self) -> bool:
        return self._playing.is_set()

    def close(self) -> None:
        if self._thread is not None:
            self._requests.put(("close",))
            self._thread.join(timeout=3)
            self._thread = None
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

    def _run(self) -> None:
        import cv2
        try:
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
            if self.fullscreen:
                cv2.setWindowProperty(self.WINDOW, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
            else:
                cv2.resizeWindow(self.WINDOW, *self.size)
        except cv2.error as exc:
            self.raise_fault("no_display", f"cannot open a window: {exc}", Severity.ERROR)
            return
        cap, loop, period, play_started = None, True, 0.1, 0
        screen = self._canvas("welcome", "", {})
        next_frame = time.monotonic()
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                request = None
            if request is not None:
                kind = request[0]
                if kind == "close":
                    break
                if kind == "screen":
                    screen = self._canvas(*request[1:])
                elif kind == "play":
                    if cap is not None:
                        cap.release()
                    cap = cv2.VideoCapture(request[1])
                    loop = request[2]
                    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0
                    if fps <= 0:
                        self.raise_fault("video_missing", f"cannot play {request[1]}", Severity.WARNING)
                        cap = None
                        self._playing.clear()
                        self.emit("video_stopped", path=request[1], frames=0)
                    else:
                        self.emit("video_started", path=request[1])
                    if cap is not None:
                        period, next_frame = 1.0 / fps, time.monotonic()
                        play_started = self.frames_shown
                elif kind == "stop" and cap is not None:
                    cap.release()
                    cap = None
                    self.emit("video_stopped", frames=self.frames_shown - play_started)
                continue
            if cap is not None:
                ok, frame = cap.read()
                if not ok and loop:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = cap.read()
                if not ok:  # the end of a video that does not loop, or a broken file
                    cap.release()
                    cap = None
                    self._playing.clear()
                    self.emit("video_stopped", frames=self.frames_shown - play_started)
                    continue
                cv2.imshow(self.WINDOW, frame)
                self.frames_shown += 1
                next_frame += period
                cv2.waitKey(max(1, int((next_frame - time.monotonic()) * 1000)))
            else:
                cv2.imshow(self.WINDOW, screen)
                cv2.waitKey(30)
        if cap is not None:
            cap.release()
        cv2.destroyWindow(self.WINDOW)
        cv2.waitKey(1)
