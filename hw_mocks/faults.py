"""Fault injection shared by the simulated devices."""

from __future__ import annotations


class FaultInjection:
    """Mixin: ``inject(name)`` arms a fault, ``remove(name)`` disarms it.

    Each simulated device lists the names it understands in ``INJECTABLE``;
    an unknown name is a ValueError, never a silent no-op.
    """

    INJECTABLE: tuple[str, ...] = ()

    def inject(self, name: str) -> None:
        self._check(name)
        self.injected.add(name)

    def remove(self, name: str) -> None:
        self._check(name)
        self.injected.discard(name)

    @property
    def injected(self) -> set[str]:
        if "_injected" not in self.__dict__:
            self.__dict__["_injected"] = set()
        return self.__dict__["_injected"]

    def _check(self, name: str) -> None:
        if name not in self.INJECTABLE:
            raise ValueError(f"{type(self).__name__} has no fault {name!r} (known: {', '.join(self.INJECTABLE)})")
