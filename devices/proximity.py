"""Proximity sensor interface. Emits ``presence`` (present: bool)."""

from __future__ import annotations

import abc

from devices.base import Device


class ProximitySensor(Device):
    kind = "proximity"

    @property
    @abc.abstractmethod
    def present(self) -> bool | None:
        """True when a customer stands at the ATM; None when unknown."""
