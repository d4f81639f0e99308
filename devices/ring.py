"""A bounded ring of recent entries that others may follow: the serial traces, the agent's log.

Each entry is a JSON-ready dict, numbered (``seq``) as it is added; the oldest fall
off once ``capacity`` is reached. A follower is a callable given each new entry on
the thread that added it, under the ring's lock (so in order): it must only queue the
entry and return, never block nor log.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

Entry = dict[str, Any]
Follower = Callable[[Entry], None]


class Ring:
    """The last ``capacity`` entries, and whoever follows the new ones."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a ring holds at least one entry, not {capacity}")
        self.capacity = capacity
        self._entries: collections.deque[Entry] = collections.deque(maxlen=capacity)
        self._followers: list[Follower] = []
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, entry: Entry) -> None:
        """Number ``entry``, keep it, and hand it to each follower."""
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)
            for follower in self._followers:
                follower(entry)

    def recent(self, lines: int) -> list[Entry]:
        """The last ``lines`` entries, oldest first."""
        with self._lock:
            return self._last(lines)

    def follow(self, lines: int, follower: Follower) -> tuple[list[Entry], Callable[[], None]]:
        """The last ``lines`` entries and, from the next one on, ``follower`` (no gap, no
        repeat between the two); the second item ends the following."""
        with self._lock:
            backlog = self._last(lines)
            self._followers.append(follower)

        def unfollow() -> None:
            with self._lock:
                if follower in self._followers:
                    self._followers.remove(follower)

        return backlog, unfollow

    @property
    def followers(self) -> int:
        with self._lock:
            return len(self._followers)

    def _last(self, lines: int) -> list[Entry]:
        return list(collections.deque(self._entries, maxlen=lines)) if lines > 0 else []
