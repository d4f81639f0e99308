"""Camera interface and the OpenCV backend (``opencv://0``)."""

from __future__ import annotations

import abc
from typing import Any

from devices.base import Device, DeviceContext, DeviceError, Severity
from devices.locator import Locator


class Camera(Device):
    kind = "camera"

    @abc.abstractmethod
    def snapshot(self) -> Any:
        """Return one BGR frame (numpy array); raise DeviceError when offline."""


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
        import cv2

        source = self.source
        self._cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if self.width and self.height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        super().open()
        if not self._cap.isOpened():
            self.raise_fault("offline", f"camera {source} did not open", Severity.WARNING)

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
