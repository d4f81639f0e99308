"""Card data that never leaks the card number.

The raw PAN lives only in a private slot of :class:`CardData`, built by the
card-reading driver. Everything else sees ``masked`` (first 6, last 4) or
``token`` (HMAC-SHA256 under the device key).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NoReturn


class CardDataError(ValueError):
    """The card answered something that is not valid card data."""


def luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits; for PANs under 16 digits only the last 4, so at
    least 6 digits are always hidden."""
    if len(pan) >= 16:
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    return "*" * (len(pan) - 4) + pan[-4:]


def card_token(pan: str, key: bytes) -> str:
    return hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()


class CardData:
    """What the ATM knows about the inserted card."""

    __slots__ = ("_pan", "masked", "last4", "token", "expiry", "service_code", "source", "country", "label", "aid")

    def __init__(
        self,
        pan: str,
        key: bytes,
        *,
        expiry: str = "",
        service_code: str = "",
        source: str = "chip",
        country: str = "",
        label: str = "",
        aid: str = "",
    ):
        if not (12 <= len(pan) <= 19 and pan.isdigit()):
            raise CardDataError("card number is not 12-19 digits")
        if not luhn_ok(pan):
            raise CardDataError("card number fails the Luhn check")
        self._pan = pan
        self.masked = mask_pan(pan)
        self.last4 = pan[-4:]  # what the journal keeps next to the token
        self.token = card_token(pan, key)
        self.expiry = expiry  # YYMM
        self.service_code = service_code
        self.source = source  # "chip" or "magstripe"
        self.country = country  # ISO 3166 numeric, from the chip
        self.label = label
        self.aid = aid  # hex AID of the chip application read

    @classmethod
    def from_track2(cls, track2: str, key: bytes, source: str = "magstripe") -> CardData:
        """Parse ``;PAN=YYMMSSS...?`` (ISO 7813 track 2)."""
        body = track2.strip().lstrip(";").rstrip("?")
        pan, sep, rest = body.partition("=")
        if not sep or len(rest) < 7:
            raise CardDataError("track 2 has no separator or is too short")
        expiry, service = rest[:4], rest[4:7]
        if not (expiry.isdigit() and service.isdigit()):
            raise CardDataError("track 2 expiry or service code is not numeric")
        return cls(pan, key, expiry=expiry, service_code=service, source=source)

    def expired(self, yymm: str) -> bool:
        return bool(self.expiry) and self.expiry < yymm

    def __repr__(self) -> str:
        return f"CardData(masked={self.masked!r}, token={self.token[:12]}…, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("CardData cannot be pickled")
