"""The screens the state machine shows, the fields each one carries, and the help topics.

Every screen's text is in each language's catalogue (``assets/prompts/<lang>.toml``,
``[screens.<id>]``), which must have all of :data:`SCREENS`; the state machine shows no
other screen. A field's value is shown through the catalogue (a label, an amount of money),
never as Python prints it.
"""

from __future__ import annotations

# screen id -> the fields the state machine gives it
SCREENS: dict[str, tuple[str, ...]] = {
    "welcome": (),
    "out_of_service": (),
    "card_refused": ("reason",),
    "enter_pin": ("tries_left",),
    "wrong_pin": (),
    "card_retained": (),
    "declined": ("reason",),
    "host_unavailable": (),
    "menu": ("options", "languages", "language"),
    "transfer_caution": (),
    "enter_amount": ("function",),
    "amount_refused": ("amount",),
    "dispense_failed": (),
    "insert_notes": (),
    "confirm_deposit": ("amount",),
    "take_card": ("balance",),
    "take_cash": (),
}
# Why a card is refused (fsm/flows/card.py) or the host declines (its reply codes).
REASONS = (
    "expired",
    "blocked",
    "unreadable",
    "removed",
    "insufficient_funds",
    "over_limit",
    "declined",
    "unknown_card",
)
# The help video of the state where the customer is stuck (every input state has one;
# "general" is the committed help_<lang>.mp4).
HELP_TOPICS = {
    "pin_entry": "pin",
    "menu": "menu",
    "transfer_caution": "general",
    "amount_entry": "amount",
    "accepting_notes": "deposit",
    "confirming_deposit": "deposit",
}
