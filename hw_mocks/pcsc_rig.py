"""The real PC/SC chip driver on virtual cards: backend ``pcsc+emu://``.

pyscard → pcscd → vsmartcard's vpcd → :class:`~hw_mocks.virtual_card.VirtualCard`.
pcscd is the running one, or one we start (:mod:`hw_mocks.pcscd`). The card
at the contacts is the simulated card inside the card reader, as its EMV
profile: an ``ict3q8+emu://`` reader inserts and removes it as the card moves;
with any other reader it is inserted when the chip is read. A card with no chip
(or no profile) never reaches vpcd, so the driver finds it mute.

Options: ``timeout`` (seconds to wait for the chip, 1.0), as for ``pcsc://``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from devices.base import Action, DeviceContext, Severity
from devices.locator import Locator
from devices.pcsc_chip import PcscChipReader
from hw_mocks import pcscd
from hw_mocks.cards import SimCard
from hw_mocks.virtual_card import VirtualCard, load_profile

log = logging.getLogger(__name__)


def profile_for(card: SimCard):
    """The virtual card for a simulated card: its profile, with its own PAN."""
    profile = load_profile(card.profile)
    apps = tuple(replace(app, pan=card.pan) if i == 0 else app for i, app in enumerate(profile.applications))
    return replace(profile, applications=apps)


class EmulatedPcscChip(PcscChipReader):
    """``pcsc+emu://``: pcscd with vpcd, and a virtual card for the card inside."""

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        loc = locator if locator is not None else Locator.empty()
        super().__init__(ctx, loc.derive(pcscd.READER, {}))
        self.daemon: pcscd.PcscDaemon | None = None
        self.virtual: VirtualCard | None = None
        self.at_contacts: SimCard | None = None

    def open(self) -> None:
        try:
            self.daemon = pcscd.acquire()
        except pcscd.PcscdError as exc:
            self.raise_fault("pcscd_unavailable", str(exc), Severity.ERROR, Action.CONFIGURATION)
            return
        reader = self.ctx.peers.get("card_reader")
        if reader is not None and hasattr(reader, "contacts"):
            reader.contacts = self  # the motorised reader tells us when a card reaches the contacts
        super().open()

    def close(self) -> None:
        self.card_left()
        super().close()
        if self.daemon is not None:
            self.daemon = None
            pcscd.release()

    # the contacts ----------------------------------------------------------------
    def card_arrived(self, card: SimCard | None) -> None:
        """A card reached the contacts: its chip connects to vpcd (if it has one)."""
        if card is self.at_contacts and self.virtual is not None:
            return
        self.card_left()
        self.at_contacts = card
        if card is None or not card.chip or not card.profile or self.daemon is None:
            return
        pcscd.settle()
        self.virtual = VirtualCard(profile_for(card), port=self.daemon.port)
        try:
            self.virtual.insert()
        except ConnectionError as exc:
            log.warning("virtual card not inserted: %s", exc)
            self.virtual = None

    def card_left(self) -> None:
        if self.virtual is not None:
            self.virtual.remove()
            pcscd.card_removed()
        self.virtual, self.at_contacts = None, None

    def read_card(self, key: bytes):
        reader = self.ctx.peers.get("card_reader")
        if getattr(reader, "contacts", None) is not self:  # a reader that does not tell us: insert now
            self.card_arrived(getattr(reader, "card", None))
        return super().read_card(key)
