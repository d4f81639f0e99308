"""What the serial drivers share around their link: opening, closing, polling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devices.base import Action, Device, Severity
from devices.serial_link import PortBusy, SerialLink

LINK_DOWN_POLL = 5.0  # seconds between polls of a device that does not answer
REOPEN_FIRST, REOPEN_MAX = 1.0, 60.0  # seconds between attempts to open a port that would not open


class SerialDevice(Device):
    """Base for a device that talks over ``self.link``; comes first in the bases, before the interface.

    A port that cannot be opened leaves the device offline with a ``port_unavailable``
    fault, or ``port_busy`` when another process holds it (the self-test tries again).
    ``poll_later`` runs a status poll on the device context's scheduler, so polls
    happen on the loop thread, one at a time.
    """

    link: SerialLink
    poll_interval: float
    _polling: Any = None  # the scheduler's timer handle
    _reopen_at = 0.0  # no attempt to open the port before this time
    _reopen_backoff = 0.0

    def open(self) -> None:
        try:
            self.link.open()
        except OSError as exc:
            busy = isinstance(exc, PortBusy)
            code = "port_busy" if busy else "port_unavailable"
            self.raise_fault(code, str(exc), Severity.ERROR, Action.CONFIGURATION if busy else Action.MAINTENANCE)
            self._back_off()
            return
        self.clear_faults(("port_unavailable", "port_busy"))
        self._reopen_backoff, self._reopen_at = 0.0, 0.0
        self.opened = True
        self.on_open()

    def on_open(self) -> None:
        """The first commands after the port opens; their faults are left for the self-test."""

    def _now(self) -> float | None:
        clock = getattr(self.ctx.scheduler, "clock", None)
        return clock.now() if clock is not None else None

    def _back_off(self) -> None:
        """The next attempt to open the port: 1 s later, doubling to a minute."""
        now = self._now()
        if now is not None:
            self._reopen_backoff = min(max(self._reopen_backoff * 2, REOPEN_FIRST), REOPEN_MAX)
            self._reopen_at = now + self._reopen_backoff

    def reopened(self) -> bool:
        """For the self-test and the polls: open the port again if it would not open, once
        its backoff has passed (on the scheduler's clock); True when it is open."""
        if not self.opened:
            now = self._now()
            if now is None or now >= self._reopen_at:
                self.open()
        return self.opened

    def close(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            self._polling = None
        self.link.close()
        super().close()

    def poll_later(self, poll: Callable[[], None]) -> None:
        """Run ``poll()`` after ``poll_interval`` unless one is already due. While the
        link is down the polls slow to one per ``LINK_DOWN_POLL`` seconds: each one
        waits out its time-outs on the loop thread."""
        scheduler = self.ctx.scheduler
        if scheduler is not None and self._polling is None:
            link_down = "no_response" in self.faults or "bad_reply" in self.faults
            interval = max(self.poll_interval, LINK_DOWN_POLL) if link_down else self.poll_interval
            self._polling = scheduler.call_later(interval, self._run_poll, poll)

    def _run_poll(self, poll: Callable[[], None]) -> None:
        self._polling = None
        if self.opened:
            poll()
