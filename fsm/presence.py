"""Whether someone stands at the ATM, with a debounce before "gone"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fsm.clock import Scheduler, Timer


class PresenceTracker:
    """Follows the proximity readings; tells when a customer has left or come back.

    ``left`` fires once the customer has been gone for ``debounce`` seconds;
    ``returned`` when someone is seen again after that.
    """

    def __init__(
        self, scheduler: Scheduler, debounce: float, sensor: Any, left: Callable[[], None], returned: Callable[[], None]
    ) -> None:
        self.scheduler = scheduler
        self.debounce = debounce
        self.sensor = sensor
        self.left = left
        self.returned = returned
        self.present = False
        self.away = False  # gone for longer than the debounce
        self._leave_timer: Timer | None = None

    def update(self, present: bool) -> None:
        self.present = present
        if self._leave_timer is not None:
            self._leave_timer.cancel()
            self._leave_timer = None
        if present:
            if self.away:
                self.away = False
                self.returned()
        else:
            self._leave_timer = self.scheduler.call_later(self.debounce, self._gone)

    def _gone(self) -> None:
        self._leave_timer = None
        self.away = True
        self.left()

    @property
    def trusted(self) -> bool:
        """Only a sensor with no fault and a current reading may trigger a prompt."""
        sensor = self.sensor
        return bool(sensor.usable) and not sensor.faults and sensor.present is not None
