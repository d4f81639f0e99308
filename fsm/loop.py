"""The one thread that owns the state machine.

Device threads and timers never touch the machine: they ``post`` events, and
the loop hands them one by one to the dispatcher on its own thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from fsm.clock import Scheduler

log = logging.getLogger(__name__)

Event = tuple[str, dict]


class EventLoop:
    """Runs posted events and due timers on a single thread."""

    def __init__(self, scheduler: Scheduler, dispatch: Callable[[str, dict], None] | None = None,
                 on_error: Callable[[Exception, str], None] | None = None):
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.dispatch = dispatch
        self.on_error = on_error      # contains an error of one event or timer
        self.failed: Exception | None = None
        self._queue: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._stop = threading.Event()
        scheduler.on_error = self._error

    def _error(self, exc: Exception, where: str) -> None:
        """One event or timer failed: let the owner contain it; if that fails too, stop."""
        if self.on_error is None:
            raise exc
        try:
            self.on_error(exc, where)
        except Exception as second:
            log.critical("could not contain an error in %s (%r): %r; the event loop stops",
                         where, exc, second)
            self.failed = second
            self._stop.set()

    def post(self, name: str, **data) -> None:
        """Thread-safe: queue an event for the state machine."""
        self._queue.put((name, data))

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("_wake", {}))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _drain(self) -> None:
        q = self._queue
        dispatch = self.dispatch
        while not q.empty():  # this thread is the only consumer
            name, data = q.get_nowait()
            if name == "_wake":
                continue
            try:
                dispatch(name, data)
            except Exception as exc:
                self._error(exc, f"event {name}")

    def run_until_idle(self, max_time: float | None = None) -> None:
        """Virtual clock: jump from deadline to deadline until nothing is left.

        Stops when no events and no timers remain, when ``stop()`` is called, or
        when the next deadline lies beyond ``max_time``.
        """
        clock = self.clock
        while not self._stop.is_set():
            self._drain()
            deadline = self.scheduler.next_deadline()
            if deadline is None:
                if self._queue.empty():
                    return
                continue
            if max_time is not None and deadline > max_time:
                return
            clock.advance_to(deadline)
            self.scheduler.run_due()

    def run_forever(self) -> None:
        """Real clock: block on the queue until the next timer is due."""
        clock = self.clock
        while not self._stop.is_set():
            self.scheduler.run_due()
            deadline = self.scheduler.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - clock.now())
            try:
                name, data = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if name != "_wake":
                try:
                    self.dispatch(name, data)
                except Exception as exc:
                    self._error(exc, f"event {name}")
            self._drain()
        if self.failed is None:
            self._drain()  # events posted just before stop() (a shutdown's abort) still run
