"""What the control socket streams: each serial device's frame trace and the agent's log.

A stream request (``trace``, ``logs``) is answered at once with the recent entries;
with ``follow`` the connection then gets each new entry as a notification. A
:class:`Follower` is one connection's bounded queue: the ring hands it entries on
whichever thread adds them (a device's worker, a logging thread) and the socket's
thread takes them as the client reads; when the client reads too slowly the entries
that do not fit are counted and dropped, and the count is sent before the next one.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from agent.remote import BadRequest
from devices.ring import Entry, Ring

QUEUED = 256  # entries a follower's queue holds beyond what its socket took (ours)


class Follower:
    """One connection's following of a ring: a bounded queue, and what it lost."""

    def __init__(self, method: str, wake: Callable[[], None], limit: int = QUEUED) -> None:
        self.method = method
        self.wake = wake
        self.limit = limit
        self.dropped = 0  # lost since the last entry queued
        self._queue: collections.deque[Entry | int] = collections.deque()
        self._lock = threading.Lock()
        self.unfollow: Callable[[], None] = lambda: None

    def __call__(self, entry: Entry) -> None:
        """A new entry (any thread, under the ring's lock): queued, or counted as lost; the
        count goes in the queue before the next entry that fits, where the gap is."""
        with self._lock:
            if len(self._queue) >= self.limit:
                self.dropped += 1
                return
            if self.dropped:
                self._queue.append(self.dropped)
                self.dropped = 0
            self._queue.append(entry)
        self.wake()

    def take(self, most: int) -> list[Entry | int]:
        """Up to ``most`` queued items, oldest first: an entry, or the number lost there."""
        with self._lock:
            items = [self._queue.popleft() for _ in range(min(most, len(self._queue)))]
            if not self._queue and self.dropped:
                items.append(self.dropped)
                self.dropped = 0
        return items

    def close(self) -> None:
        self.unfollow()


class Streams:
    """The rings a client may read and follow: ``traces`` (serial device -> its frames),
    ``logs``; ``locators`` names each device's backend, for a refusal."""

    def __init__(self, traces: dict[str, Ring], logs: Ring, locators: dict[str, str]) -> None:
        self.traces = traces
        self.logs = logs
        self.locators = locators

    def ring(self, method: str, args: dict[str, Any]) -> Ring:
        """The ring a checked request reads; BadRequest for a device that is not traced."""
        if method == "logs":
            return self.logs
        device = args["device"]
        if device not in self.traces:
            traced = ", ".join(self.traces) or "none on this rig"
            locator = self.locators.get(device, "")
            raise BadRequest(
                "not_traceable",
                f"{device} ({locator.split('?')[0]}) is not a serial device; the serial devices are: {traced}",
            )
        return self.traces[device]

    def open(
        self, method: str, args: dict[str, Any], wake: Callable[[], None]
    ) -> tuple[dict[str, Any], Follower | None]:
        """The answer (the recent entries) and, with ``follow``, the follower of what comes next."""
        ring = self.ring(method, args)
        lines = args.get("lines", 20)
        head: dict[str, Any] = {"ok": True, "command": method, "follow": bool(args.get("follow"))}
        if method == "trace":
            head["device"] = args["device"]
        if not args.get("follow"):
            return {**head, "entries": ring.recent(lines)}, None
        follower = Follower(method, wake)
        backlog, follower.unfollow = ring.follow(lines, follower)
        return {**head, "entries": backlog}, follower
