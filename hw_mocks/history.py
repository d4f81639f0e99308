"""A bounded record of what a simulation saw, so long runs do not grow without end."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class History(list[T]):
    """A list that keeps the newest ``cap`` to ``2 * cap`` items (trimmed in chunks)."""

    def __init__(self, cap: int = 10_000) -> None:
        super().__init__()
        self.cap = cap

    def append(self, item: T) -> None:
        super().append(item)
        if len(self) > 2 * self.cap:
            del self[: -self.cap]
