"""States and transitions of the ATM, as data for ``transitions.Machine``.

Each row: trigger, source(s), destination (None = internal), conditions, and
the effects (``prepare`` / ``before`` / ``after``). Conditions are pure: they
read the session and the event, nothing else, so the order of rows with the
same trigger and source only decides which destination wins. Callback names
are resolved against the session-flow parts (see :mod:`fsm.flows`).
"""

from __future__ import annotations

import enum
from typing import Any


class State(enum.StrEnum):
    """Every state of the ATM (each one is its name as a string)."""

    STARTING = "starting"
    OUT_OF_SERVICE = "out_of_service"
    IDLE = "idle"
    READING_CARD = "reading_card"
    PIN_ENTRY = "pin_entry"
    VERIFYING_PIN = "verifying_pin"
    MENU = "menu"
    TRANSFER_CAUTION = "transfer_caution"
    AMOUNT_ENTRY = "amount_entry"
    AUTHORISING = "authorising"
    DISPENSING = "dispensing"
    ACCEPTING_NOTES = "accepting_notes"
    CONFIRMING_DEPOSIT = "confirming_deposit"
    STORING = "storing"
    EJECTING_CARD = "ejecting_card"
    CARD_AT_GATE = "card_at_gate"
    RETAINING_CARD = "retaining_card"
    PRESENTING_CASH = "presenting_cash"
    CASH_AT_GATE = "cash_at_gate"
    RETRACTING_CASH = "retracting_cash"
    ENDING = "ending"


S = State
STATES = [s.value for s in State]

# States that wait for the customer: the idle-help timers run in them.
INPUT_STATES = ("pin_entry", "menu", "transfer_caution", "amount_entry", "accepting_notes", "confirming_deposit")
# States that start timers (idle help, host and take time-outs); leaving one cancels them.
TIMED_STATES = (*INPUT_STATES, "verifying_pin", "authorising", "card_at_gate", "cash_at_gate")
# States where the customer may cancel: no money is moving.
CANCELLABLE = (*INPUT_STATES, "verifying_pin")
# States where a customer session is open (a card is in the ATM or at its gate).
IN_SESSION = tuple(s for s in STATES if s not in ("starting", "out_of_service", "idle"))
# Session states before the card is handed back: an abort there ejects the card.
CARD_INSIDE = IN_SESSION[: IN_SESSION.index("ejecting_card")]
# Later states: an abort goes straight to the end of the session.
CARD_OUTSIDE = tuple(s for s in IN_SESSION if s not in CARD_INSIDE and s != "ending")
# States that wait for a device command's completion: nothing else may start there.
COMMAND_STATES = (
    "reading_card",
    "dispensing",
    "storing",
    "ejecting_card",
    "retaining_card",
    "presenting_cash",
    "retracting_cash",
    "ending",
)
# Deposit states where notes may sit in the escrow.
ESCROW_STATES = ("accepting_notes", "confirming_deposit")

T = dict
TRANSITIONS: list[dict[str, Any]] = [
    T(trigger="self_test_passed", source="starting", dest="idle"),
    T(trigger="self_test_failed", source="starting", dest="out_of_service"),
    T(trigger="service_restored", source="out_of_service", dest="idle"),
    T(trigger="service_lost", source="idle", dest="out_of_service"),
    T(trigger="card_inserted", source="idle", dest="reading_card"),
    T(trigger="card_read", source="reading_card", dest="pin_entry"),
    T(trigger="card_refused", source="reading_card", dest="ejecting_card"),
    T(trigger="card_stuck", source=["reading_card", "ejecting_card"], dest="ending"),
    T(trigger="pin_entered", source="pin_entry", dest="verifying_pin"),
    T(trigger="host_replied", source="verifying_pin", dest="menu", conditions="reply_ok"),
    T(
        trigger="host_replied",
        source="verifying_pin",
        dest="retaining_card",
        conditions="last_pin_try",
        before="pin_tries_exceeded",
    ),
    T(
        trigger="host_replied",
        source="verifying_pin",
        dest="pin_entry",
        conditions="wrong_pin",
        before="wrong_pin_again",
    ),
    T(trigger="host_replied", source="verifying_pin", dest="ejecting_card", before="host_declined"),
    T(trigger="chosen", source="menu", dest=None, conditions="chose_language", after="change_language"),
    T(trigger="chosen", source="menu", dest="amount_entry", conditions="chose_withdrawal", before="take_function"),
    T(trigger="chosen", source="menu", dest="accepting_notes", conditions="chose_deposit", before="take_function"),
    T(trigger="chosen", source="menu", dest="authorising", conditions="chose_balance", before="take_function"),
    T(trigger="chosen", source="menu", dest="transfer_caution", conditions="chose_transfer", before="take_function"),
    T(trigger="chosen", source="transfer_caution", dest="amount_entry", conditions="chose_confirm"),
    T(
        trigger="amount_entered",
        source="amount_entry",
        dest="authorising",
        prepare="plan_amount",
        conditions="amount_ok",
        before="take_amount",
    ),
    T(trigger="amount_entered", source="amount_entry", dest=None, after="refuse_amount"),
    T(trigger="host_replied", source="authorising", dest="dispensing", conditions=["reply_ok", "is_withdrawal"]),
    T(trigger="host_replied", source="authorising", dest="storing", conditions=["reply_ok", "is_deposit"]),
    T(trigger="host_replied", source="authorising", dest="ejecting_card", conditions="reply_ok"),
    T(trigger="host_replied", source="authorising", dest="ejecting_card", before="host_declined"),
    T(trigger="host_timed_out", source=["authorising", "verifying_pin"], dest="ejecting_card", before="host_lost"),
    T(trigger="dispensed", source="dispensing", dest="ejecting_card"),
    T(trigger="notes_inserted", source="accepting_notes", dest="confirming_deposit"),
    T(trigger="chosen", source="confirming_deposit", dest="authorising", conditions="chose_confirm"),
    T(trigger="stored", source="storing", dest="ejecting_card"),
    T(trigger="card_ejected", source="ejecting_card", dest="card_at_gate"),
    T(trigger="card_taken", source="card_at_gate", dest="presenting_cash", conditions="cash_waiting"),
    T(trigger="card_taken", source="card_at_gate", dest="ending"),
    T(trigger="take_timed_out", source="card_at_gate", dest="retaining_card"),
    T(trigger="retained", source="retaining_card", dest="ending"),
    T(trigger="cash_presented", source="presenting_cash", dest="cash_at_gate"),
    T(trigger="cash_stuck", source="presenting_cash", dest="ending"),
    T(trigger="cash_taken", source="cash_at_gate", dest="ending"),
    T(trigger="take_timed_out", source="cash_at_gate", dest="retracting_cash"),
    T(trigger="retracted", source="retracting_cash", dest="ending"),
    T(trigger="cancel", source=list(CANCELLABLE), dest="ejecting_card", before="cancelled"),
    T(trigger="idle_timed_out", source=list(INPUT_STATES), dest="ejecting_card", before="abandoned"),
    T(trigger="aborted", source=list(CARD_INSIDE), dest="ejecting_card"),
    T(trigger="aborted", source=list(CARD_OUTSIDE), dest="ending"),
    T(trigger="aborted", source="ending", dest="out_of_service"),
    T(trigger="shut_down", source=[s for s in IN_SESSION if s != "ending"], dest="ending", before="shutting_down"),
    T(trigger="customer_left", source=["card_at_gate", "cash_at_gate"], dest=None, after="start_forgotten_prompt"),
    T(trigger="customer_returned", source=["card_at_gate", "cash_at_gate"], dest=None, after="stop_forgotten_prompt"),
    T(trigger="finished", source="ending", dest="idle", conditions="can_serve"),
    T(trigger="finished", source="ending", dest="out_of_service"),
]
