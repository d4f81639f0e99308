"""Camera interface and the OpenCV backend (``opencv://0``)."""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devices.base import Device, DeviceContext, DeviceError, DeviceStatus, Severity
from devices.locator import Locator


@contextmanager
def _opencv_quiet(cv2: Any) -> Iterator[None]:
    """OpenCV's own log silenced for the block (it warns on stderr for every missing camera)."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class Camera(Device):
    kind = "camera"

    @abc.abstractmethod
    def snapshot(self) -> Any:
        """Return one BGR frame (numpy array); raise DeviceError when offline."""

    def jpeg_snapshot(self, quality: int = 85) -> tuple[bytes, int, int]:
        """One frame encoded as JPEG: its bytes, width and height (on the camera's queue)."""
        import cv2

        frame = self.snapshot()
        ok, data = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        if not ok:
            raise ValueError("OpenCV cannot encode this frame as JPEG")
        height, width = frame.shape[:2]
        return data.tobytes(), int(width), int(height)

    def save_snapshot(self, path: str) -> dict[str, Any]:
        """Write one frame to ``path``, a new PNG or JPEG file (by its suffix; an existing
        file is never replaced: OSError). Returns the path, its bytes, width and height."""
        import cv2

        frame = self.snapshot()
        ok, data = cv2.imencode(os.path.splitext(path)[1].lower(), frame)
        if not ok:
            raise ValueError(f"{path}: OpenCV cannot encode an image for this suffix")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)  # the customer area: not for all to see
        with os.fdopen(fd, "wb") as out:
            out.write(data.tobytes())
        height, width = frame.shape[:2]
        return {"path": path, "bytes": int(data.size), "width": int(width), "height": int(height)}


class OpenCVCamera(Camera):
    """A V4L2/USB camera through ``cv2.VideoCapture``.

    The path is the index or the device (``opencv://0``, ``opencv:///dev/video2``);
    options ``width`` and ``height`` ask the camera for a frame size (default: its own).
    """

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.source = self.loc.path or "0"
        if self.loc.has("width") != self.loc.has("height"):
            raise self.loc.error("options width= and height= go together")
        self.width = self.loc.number("width", int, 0, 7680, 0)
        self.height = self.loc.number("height", int, 0, 4320, 0)
        self._cap: Any = None

    def open(self) -> None:
        """Open the camera; one that does not open stays offline with an ``offline`` fault,
        and the self-test (and each status poll) tries again."""
        import cv2

        source = self.source
        with _opencv_quiet(cv2):  # its own warnings would say the same on stderr at every try
            cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
            if cap.isOpened() and self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if not cap.isOpened():
            cap.release()
            self.raise_fault("offline", f"camera {source} did not open", Severity.WARNING)
            return
        self._cap = cap
        self.clear_fault("offline")
        super().open()

    def self_test(self) -> DeviceStatus:
        if not self.opened:
            self.open()
        return self.status

    def snapshot(self) -> Any:
        ok, frame = self._cap.read() if self._cap is not None and self._cap.isOpened() else (False, None)
        if not ok:
            raise DeviceError(self.raise_fault("offline", "camera gave no frame", Severity.WARNING))
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()
