"""The frame trace of a serial link: every frame both ways, kept in a ring, always on.

:class:`~devices.serial_link.SerialLink` hands it each write and each read. A write is
one frame (the drivers write whole frames); the device's bytes, read in pieces, are
cut into whole frames by the model's :class:`Framing`, so a reply read as SOH and then
the rest is one entry. Bytes that stop short of a frame are shown as incomplete when
the host writes next. An entry is ``{"seq", "time", "direction", "bytes", "hex",
"frame"}``: the wall time, ``host->device`` or ``device->host``, the frame's length,
its hex and its decoded fields, both as the framing shows them, so a framing hides what
must never leave the driver (track data) before the entry is kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.ring import Ring

HOST, DEVICE = "host->device", "device->host"
CAPACITY = 1000  # frames kept per device (ours): about a minute of idle polling
Shown = tuple[str, dict[str, Any]]  # (the hex shown, the decoded frame)


@dataclass(frozen=True)
class Framing:
    """How one model's frames are cut and shown.

    ``size(buffer)``: the length of the device's first frame in ``buffer`` (at least 1,
    and it may be more than is there yet), or 0 when more bytes are needed to tell.
    ``show(frame, from_device, complete)``: the hex and decoded fields an entry keeps.
    """

    size: Callable[[bytes], int]
    show: Callable[[bytes, bool, bool], Shown]


class FrameTrace:
    """The recent frames of one link (``ring``) and the device's bytes not yet a frame."""

    def __init__(self, framing: Framing, capacity: int = CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self.framing = framing
        self.ring = Ring(capacity)
        self.clock = clock
        self._pending = b""
        self._lock = threading.Lock()

    def sent(self, data: bytes) -> None:
        """The host wrote ``data``: what the device sent before is a frame by now, or never."""
        with self._lock:
            self._flush()
            self._keep(HOST, data, True)

    def received(self, data: bytes) -> None:
        """The device's bytes, kept once they make whole frames."""
        with self._lock:
            pending = self._pending + data
            while pending:
                size = self.framing.size(pending)
                if not 0 < size <= len(pending):
                    break
                self._keep(DEVICE, pending[:size], True)
                pending = pending[size:]
            self._pending = pending

    def flush(self) -> None:
        """Keep the device's bytes that are not a whole frame as one incomplete entry."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._keep(DEVICE, self._pending, False)
            self._pending = b""

    def _keep(self, direction: str, frame: bytes, complete: bool) -> None:
        try:
            text, fields = self.framing.show(frame, direction == DEVICE, complete)
        except Exception as exc:  # a framing's defect must never break the link; its bytes stay hidden
            text, fields = f"<{len(frame)} bytes not shown>", {"kind": "undecoded", "problem": type(exc).__name__}
        self.ring.add({"time": self.clock(), "direction": direction, "bytes": len(frame), "hex": text, "frame": fields})


def noise_size(buffer: bytes, starts: bytes) -> int:
    """Bytes up to the next one a frame may start with (after the first): line noise, as one entry."""
    for i in range(1, len(buffer)):
        if buffer[i] in starts:
            return i
    return len(buffer)
