"""A bounded record of what a simulation saw, so long runs do not grow without end."""
from __future__ import annotations


class History(list):
    """A list that keeps the newest ``cap`` to ``2 * cap`` items (trimmed in chunks)."""

    def __init__(self, cap: int = 10_000):
        super().__init__()
        self.cap = cap

    def append(self, item) -> None:
        super().append(item)
        if len(self) > 2 * self.cap:
            del self[:-self.cap]
