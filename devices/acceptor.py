"""Cash acceptor interface (deposit module).

Events emitted: ``notes_inserted`` (notes: {denomination: count}).
"""

from __future__ import annotations

import abc

from devices.base import Device


class CashAcceptor(Device):
    kind = "acceptor"

    @abc.abstractmethod
    def enable(self) -> None:
        """Accept notes at the slot."""

    @abc.abstractmethod
    def disable(self) -> None:
        """Refuse notes at the slot."""

    @abc.abstractmethod
    def escrow(self) -> dict[int, int]:
        """Notes counted and held in escrow: {denomination: count}."""

    @abc.abstractmethod
    def store(self) -> dict[int, int]:
        """Move escrow into the cassette; return what was stored."""

    @abc.abstractmethod
    def return_notes(self) -> dict[int, int]:
        """Give the escrowed notes back to the customer."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear the transport; notes left in the escrow go to a retained bin."""
