"""Camera interface and the OpenCV backend (``opencv://0``)."""
from __future__ import annotations

from devices.base import Device, DeviceError, Severity


class Camera(Device):
    kind = "camera"

    def snapshot(self):
        """Return one BGR frame (numpy array); raise DeviceError when offline."""
        raise NotImplementedError


class OpenCVCamera(Camera):
    """A V4L2/USB camera through ``cv2.VideoCapture``; path is the index or device."""

    def open(self) -> None:
        import cv2
        source = self.params.get("device") or self.locator.split("://", 1)[-1] or "0"
        self._cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        super().open()
        if not self._cap.isOpened():
            self.raise_fault("offline", f"camera {source} did not open", Severity.WARNING)

    def snapshot(self):
        ok, frame = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            raise DeviceError(self.raise_fault("offline", "camera gave no frame", Severity.WARNING))
        return frame

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
        super().close()
