"""A virtual EMV contact chip card for the real PC/SC stack (vsmartcard vpcd).

This module does not use anything from ``devices/``: it builds its answers
with its own small TLV encoder and reads the few commands it knows by their
fixed layout, so a test of the chip driver against it checks the driver's
TLV parser against an independent encoder.

Modules: ``profiles`` (the TOML card profiles), ``model`` (the card's answers to APDUs),
``connection`` (:class:`VirtualCard`, the TCP client of vpcd) and ``cli``
(``python -m hw_mocks.virtual_card PROFILE``). See each for the details.
"""

from hw_mocks.virtual_card.cli import main
from hw_mocks.virtual_card.connection import (
    BAD_INPUT,
    CONNECTION_LOST,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MUTE,
    PULLED_OUT,
    REMOVED,
    VPCD_CLOSED,
    VirtualCard,
)
from hw_mocks.virtual_card.model import CardModel
from hw_mocks.virtual_card.profiles import (
    PROFILES_DIR,
    Application,
    Profile,
    atr_problem,
    load_profile,
    luhn_valid,
    profile_names,
)

__all__ = [
    "BAD_INPUT",
    "CONNECTION_LOST",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MUTE",
    "PROFILES_DIR",
    "PULLED_OUT",
    "REMOVED",
    "VPCD_CLOSED",
    "Application",
    "CardModel",
    "Profile",
    "VirtualCard",
    "atr_problem",
    "load_profile",
    "luhn_valid",
    "main",
    "profile_names",
]
