"""One command queue per device, as in XFS4IoT's device services.

Each device runs its commands on its own worker thread: one at a time, in the
order they were submitted. The caller never waits: every command ends with
exactly one :class:`Completion`, delivered through ``on_complete`` (the
runtime posts it to the state machine's loop). Events the device emits while a
command runs (notes counted, card at the gate) reach the loop before the
completion, because the worker emits them first.

Status reads (``device.status``, ``faults``, cassette counts) never go
through a queue: they return what the device last knew.

An :class:`Activity` counts the jobs queued or running on every queue, so a
loop on the virtual clock can wait for the devices before it moves time on.
A queue made ``inline`` runs each job at once on the thread that queues it,
and still delivers its completion through ``on_complete``: on the virtual
clock, where the loop would wait for the command anyway (virtual time stands
still while it runs), that gives the same events in the same order without
two thread switches per command.
"""

from __future__ import annotations

import enum
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.base import DeviceError, Fault

log = logging.getLogger(__name__)


class CompletionCode(str, enum.Enum):
    """XFS4IoT completion codes."""

    SUCCESS = "success"
    CANCELED = "canceled"
    DEVICE_NOT_READY = "deviceNotReady"
    HARDWARE_ERROR = "hardwareError"
    TIMEOUT = "timeOut"
    INVALID_DATA = "invalidData"
    USER_ERROR = "userError"
    SEQUENCE_ERROR = "sequenceError"
    FRAUD_ATTEMPT = "fraudAttempt"


# Fault codes whose completion is not a plain hardware error.
FAULT_CODES: dict[str, CompletionCode] = {
    "no_response": CompletionCode.TIMEOUT,
    "dispense_timeout": CompletionCode.TIMEOUT,
    "port_unavailable": CompletionCode.DEVICE_NOT_READY,
    "chip_unavailable": CompletionCode.DEVICE_NOT_READY,
    "bad_reply": CompletionCode.INVALID_DATA,
    "bad_card_data": CompletionCode.INVALID_DATA,
    "card_removed": CompletionCode.USER_ERROR,
    "no_card": CompletionCode.USER_ERROR,
    "mute_card": CompletionCode.USER_ERROR,
}


def completion_code(fault: Fault) -> CompletionCode:
    """The completion code a command that raised ``fault`` ends with."""
    return FAULT_CODES.get(fault.code, CompletionCode.HARDWARE_ERROR)


@dataclass(frozen=True)
class Completion:
    """How one command ended. ``result`` is what the command returned (success),
    ``error`` the exception it raised, if any; ``fault`` the device fault."""

    device: str
    command: str
    id: int
    code: CompletionCode
    result: Any = None
    fault: Fault | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.code is CompletionCode.SUCCESS

    @property
    def fault_code(self) -> str | None:
        if self.fault is not None:
            return self.fault.code
        return None if self.ok else self.code.value


class Activity:
    """Counts jobs queued or running on all queues; ``wait_idle`` blocks until none."""

    def __init__(self) -> None:
        self._busy = 0
        self._idle = threading.Condition()

    def begin(self) -> None:
        with self._idle:
            self._busy += 1

    def end(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    @property
    def busy(self) -> int:
        return self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once nothing is queued or running (False after ``timeout``)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


@dataclass
class _Job:
    id: int
    command: str
    action: Callable[[], Any]
    on_complete: Callable[[Completion], None] | None  # None: an internal job (a poll)
    canceled: bool = False


_STOP = object()
_ids = itertools.count(1)


class CommandQueue:
    """The worker of one device: runs submitted commands one at a time, in order."""

    def __init__(
        self,
        kind: str,
        activity: Activity | None = None,
        classify: Callable[[BaseException], Completion | None] | None = None,
        inline: bool = False,
    ) -> None:
        self.kind = kind
        self.activity = activity or Activity()
        self.classify = classify  # maps an error that is not a DeviceError to a completion
        self.inline = inline  # run each job at once on the caller's thread (the virtual clock)
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self.running: _Job | None = None
        self._thread = threading.Thread(target=self._work, name=f"dev-{kind}", daemon=True)
        if not inline:
            self._thread.start()

    # submitting -------------------------------------------------------------
    def submit(self, command: str, action: Callable[[], Any], on_complete: Callable[[Completion], None]) -> int:
        """Queue ``action()`` as command ``command``; returns the command id."""
        job = _Job(next(_ids), command, action, on_complete)
        self._enqueue(job)
        return job.id

    def run_internal(self, action: Callable[..., Any], *args: Any) -> None:
        """Run ``action(*args)`` on the worker, after what is queued (polls, device timers)."""
        self._enqueue(_Job(0, getattr(action, "__name__", "internal"), lambda: action(*args), None))

    def _enqueue(self, job: _Job) -> None:
        if self.inline:
            self._run_inline(job)
            return
        self.activity.begin()
        with self._lock:
            if job.on_complete is not None:
                self._pending[job.id] = job
        self._jobs.put(job)

    def cancel(self, command_id: int) -> bool:
        """Cancel a command that has not started (it completes ``canceled``).
        A running command cannot be interrupted: True only if it had not started."""
        with self._lock:
            job = self._pending.get(command_id)
            if job is None or job is self.running:
                return False
            job.canceled = True
            return True

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._pending and self.running is None

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then end the worker."""
        if self.inline:
            return
        self._jobs.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # the worker -------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                self._run(job)
            finally:
                self.activity.end()

    def _run(self, job: _Job) -> None:
        with self._lock:
            self.running = job
            canceled = job.canceled
        if canceled:
            completion = Completion(self.kind, job.command, job.id, CompletionCode.CANCELED)
        elif job.on_complete is None:
            try:
                job.action()
            except Exception:
                log.exception("%s: %s failed", self.kind, job.command)
            completion = None
        else:
            completion = self._execute(job)
        with self._lock:
            self.running = None
            self._pending.pop(job.id, None)
        if completion is not None and job.on_complete is not None:
            job.on_complete(completion)

    def _run_inline(self, job: _Job) -> None:
        """The job at once, on this thread: nothing else can be queued meanwhile."""
        if job.on_complete is None:
            try:
                job.action()
            except Exception:
                log.exception("%s: %s failed", self.kind, job.command)
            return
        self.running = job
        try:
            completion = self._execute(job)
        finally:
            self.running = None
        job.on_complete(completion)

    def _execute(self, job: _Job) -> Completion:
        kind = self.kind
        try:
            result = job.action()
        except DeviceError as exc:
            return Completion(kind, job.command, job.id, completion_code(exc.fault), fault=exc.fault, error=exc)
        except Exception as exc:
            mapped = self.classify(exc) if self.classify is not None else None
            if mapped is not None:
                return Completion(kind, job.command, job.id, mapped.code, fault=mapped.fault, error=exc)
            log.exception("%s: %s failed", kind, job.command)
            return Completion(kind, job.command, job.id, CompletionCode.HARDWARE_ERROR, error=exc)
        return Completion(kind, job.command, job.id, CompletionCode.SUCCESS, result=result)


class WorkerScheduler:
    """A device's view of the loop's scheduler: its timers fire on the device's worker.

    A driver's ``ctx.scheduler.call_later`` (a status poll, a simulated
    mechanism) then runs one at a time with the device's commands, never on
    the state machine's thread.
    """

    def __init__(self, scheduler: Any, commands: CommandQueue) -> None:
        self._scheduler = scheduler
        self._commands = commands
        self.clock = scheduler.clock

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        return self._scheduler.call_later(delay, self._commands.run_internal, callback, *args)
