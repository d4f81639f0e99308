"""Cash acceptor interface (deposit module).

Events emitted: ``notes_inserted`` (notes: {denomination: count}).
"""
from __future__ import annotations

from devices.base import Device


class CashAcceptor(Device):
    kind = "acceptor"

    def enable(self) -> None:
        raise NotImplementedError

    def disable(self) -> None:
        raise NotImplementedError

    def escrow(self) -> dict[int, int]:
        """Notes counted and held in escrow: {denomination: count}."""
        raise NotImplementedError

    def store(self) -> dict[int, int]:
        """Move escrow into the cassette; return what was stored."""
        raise NotImplementedError

    def return_notes(self) -> dict[int, int]:
        """Give the escrowed notes back to the customer."""
        raise NotImplementedError

    def reset(self) -> None:
        """Clear the transport; notes left in the escrow go to a retained bin."""
        raise NotImplementedError
