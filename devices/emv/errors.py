"""The errors of a chip read."""

from __future__ import annotations

from devices.carddata import CardData


class ChipTransportError(Exception):
    """The transport could not exchange an APDU (raised by the PC/SC driver)."""


class CardRemoved(ChipTransportError):
    """The card left the reader."""


class CardMute(ChipTransportError):
    """The card did not answer."""


class ChipReadError(Exception):
    """Reading the chip failed. ``code`` is one of: mute, removed, malformed,
    unknown_status, no_application, blocked, expired. For ``expired``,
    ``card`` holds the (valid but expired) CardData."""

    def __init__(self, code: str, message: str, card: CardData | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.card = card

    def __reduce__(self) -> tuple[type[ChipReadError], tuple[str, str]]:
        # the card (if any) cannot be pickled; the rest can
        return (type(self), (self.code, self.message))


def malformed(message: str) -> ChipReadError:
    return ChipReadError("malformed", message)
