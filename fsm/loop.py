"""The one thread that owns the state machine.

Device threads, device workers, the host and the network thread never touch
the machine: they ``post`` typed events (see :mod:`fsm.events`) to the
:class:`Inbox`, and the :class:`EventLoop` hands them one by one to the
dispatcher on its own thread, with the timers that fall due in between.

On the virtual clock the loop waits for the device workers to finish what
they run before it moves time on (``activity``), so a scenario gives the same
output on every run; on the real clock it never waits for a device.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from fsm.clock import Scheduler, VirtualClock

log = logging.getLogger(__name__)


class _Wake:
    """Wakes a blocked loop; dispatched to nobody."""


WAKE = _Wake()


class Activity(Protocol):
    """Work running outside the loop that the virtual clock must wait for."""

    @property
    def busy(self) -> int: ...

    def wait_idle(self, timeout: float | None = None) -> bool: ...


class Inbox:
    """The loop's thread-safe queue of events."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def post(self, event: object) -> None:
        """Thread-safe: queue an event for the state machine."""
        self._queue.put(event)

    def get(self, timeout: float | None = None) -> object:
        return self._queue.get(timeout=timeout)

    def get_nowait(self) -> object:
        return self._queue.get_nowait()

    def empty(self) -> bool:
        return self._queue.empty()


class EventLoop:
    """Runs posted events and due timers on a single thread."""

    def __init__(
        self,
        scheduler: Scheduler,
        inbox: Inbox,
        dispatch: Callable[[object], None],
        on_error: Callable[[Exception, str], None] | None = None,
        activity: Activity | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.inbox = inbox
        self.dispatch = dispatch
        self.on_error = on_error  # contains an error of one event or timer
        self.activity = activity
        self.failed: Exception | None = None
        self._stop = threading.Event()
        scheduler.on_error = self._error

    def _error(self, exc: Exception, where: str) -> None:
        """One event or timer failed: let the owner contain it; if that fails too, stop."""
        if self.on_error is None:
            raise exc
        try:
            self.on_error(exc, where)
        except Exception as second:
            log.critical("could not contain an error in %s (%r): %r; the event loop stops", where, exc, second)
            self.failed = second
            self._stop.set()

    def post(self, event: object) -> None:
        """Thread-safe: queue an event for the state machine."""
        self.inbox.post(event)

    def stop(self) -> None:
        self._stop.set()
        self.inbox.post(WAKE)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run_one(self, event: object) -> None:
        if event is WAKE:
            return
        try:
            self.dispatch(event)
        except Exception as exc:
            self._error(exc, f"event {type(event).__name__}")

    def _drain(self) -> None:
        inbox = self.inbox
        while not inbox.empty():  # this thread is the only consumer
            self._run_one(inbox.get_nowait())

    def _settle(self) -> None:
        """Virtual clock: run events one at a time, each after the devices' work has
        finished, until neither the inbox nor a device has anything left."""
        activity, inbox, stopped, run_one = self.activity, self.inbox, self._stop.is_set, self._run_one
        while not inbox.empty() or (activity is not None and activity.busy):
            if stopped():
                return
            if activity is not None and activity.busy:
                if not activity.wait_idle(timeout=1.0):
                    continue
                if inbox.empty():
                    return
            run_one(inbox.get_nowait())

    def run_until_idle(self, max_time: float | None = None) -> None:
        """Virtual clock: jump from deadline to deadline until nothing is left.

        Stops when no events, no device work and no timers remain, when
        ``stop()`` is called, or when the next deadline lies beyond ``max_time``.
        """
        clock = self.clock
        while not self._stop.is_set():
            self._settle()
            deadline = self.scheduler.next_deadline()
            if deadline is None or self._stop.is_set():
                return
            if max_time is not None and deadline > max_time:
                return
            if not isinstance(clock, VirtualClock):
                raise TypeError("only the virtual clock jumps to the next deadline")
            clock.advance_to(deadline)
            self.scheduler.run_due(limit=1)  # one at a time: each timer's device work settles first

    def run_forever(self) -> None:
        """Real clock: block on the inbox until the next timer is due."""
        clock = self.clock
        while not self._stop.is_set():
            self.scheduler.run_due()
            deadline = self.scheduler.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - clock.now())
            try:
                event: Any = self.inbox.get(timeout=timeout)
            except queue.Empty:
                continue
            self._run_one(event)
            self._drain()
        if self.failed is None:
            self._drain()  # events posted just before stop() (a shutdown's abort) still run
