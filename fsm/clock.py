"""Injectable clocks and a timer scheduler.

Every timer in the firmware goes through a :class:`Scheduler` bound to a clock.
The real clock follows ``time.monotonic``; the virtual clock only moves when the
event loop advances it, so a 60-second timeout passes instantly in tests.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    """What a :class:`Scheduler` and the firmware read the time from."""

    virtual: bool

    def now(self) -> float: ...
    def utcnow(self) -> datetime: ...


class RealClock:
    """Wall-clock time for kiosks and `atm run`."""

    virtual = False

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that moves only when told to (tests, demos, benchmarks)."""

    virtual = True

    def __init__(self, start: float = 0.0, epoch: datetime | None = None) -> None:
        self._t = start
        self._epoch = epoch or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> float:
        return self._t

    def utcnow(self) -> datetime:
        return self._epoch + timedelta(seconds=self._t)

    def advance_to(self, t: float) -> None:
        if t > self._t:
            self._t = t

    def advance(self, seconds: float) -> None:
        self._t += seconds


class Timer:
    """Handle for a scheduled call; ``cancel()`` is idempotent."""

    __slots__ = ("deadline", "callback", "args", "cancelled")

    def __init__(self, deadline: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """A heap of timers on one clock. Only the event-loop thread touches it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.on_error: Callable[[Exception, str], None] | None = None  # contains callback errors
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self.worst_lateness = 0.0  # seconds the latest-run timer started after its deadline

    def take_worst_lateness(self) -> float:
        """The worst lateness since the last call (the loop's worst recent delay), then 0."""
        worst, self.worst_lateness = self.worst_lateness, 0.0
        return worst

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        timer = Timer(self.clock.now() + delay, callback, args)
        heapq.heappush(self._heap, (timer.deadline, next(self._order), timer))
        return timer

    def next_deadline(self) -> float | None:
        """Deadline of the earliest live timer, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, limit: int | None = None) -> int:
        """Run the timers whose deadline has passed (at most ``limit``); return how many ran."""
        ran = 0
        now = self.clock.now()
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or ran < limit):
            _, _, timer = heapq.heappop(heap)
            if not timer.cancelled:
                timer.cancelled = True
                ran += 1
                self.worst_lateness = max(self.worst_lateness, self.clock.now() - timer.deadline)
                if self.on_error is None:
                    timer.callback(*timer.args)
                    continue
                try:
                    timer.callback(*timer.args)
                except Exception as exc:
                    self.on_error(exc, f"timer {getattr(timer.callback, '__name__', timer.callback)}")
        return ran

    def clear(self) -> None:
        for _, _, timer in self._heap:
            timer.cancelled = True
        self._heap.clear()
