"""A scripted simulated customer.

The customer watches what a person would see (the screen, the card at the
gate, the cash at the shutter) through the agent's records and acts through
the simulated devices after a thinking delay on the scheduler's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hw_mocks.bank_host import DEMO_PIN
from hw_mocks.cards import CARDS


@dataclass
class Visit:
    """What one customer will do."""

    function: str = "withdrawal"  # withdrawal / deposit / balance / transfer
    card: str = "domestic"
    pin: str = DEMO_PIN
    wrong_pins: int = 0  # wrong PINs typed before the right one
    amount: int = 30_000
    notes: dict = field(default_factory=lambda: {10_000: 2, 1_000: 3})
    think: float = 1.5  # seconds between seeing a screen and acting
    idle_at: str | None = None  # screen where the customer gets stuck
    idle_for: float = 0.0
    cancel_at: str | None = None  # screen where the customer presses cancel
    forget_card: bool = False
    forget_cash: bool = False
    come_back_after: float | None = None  # walks away, then returns for the item
    language: str | None = None  # picks this language on the menu first
    label: str = ""


class Customer:
    """Plays one :class:`Visit` against an agent's simulated devices."""

    def __init__(self, agent, visit: Visit, done: Callable[[Customer], None] | None = None):
        self.agent = agent
        self.visit = visit
        self.done = done
        self.dev = agent.devices
        self.later = agent.scheduler.call_later
        self.session_seen = False
        self.finished = False
        self.idled: set[str] = set()
        self._fields: dict = {}
        self.log: list[str] = []

    def arrive(self, delay: float = 0.0) -> None:
        self.agent.recorder.sinks.append(self.on_record)
        self.later(delay, self._walk_up)

    def _walk_up(self) -> None:
        v = self.visit
        self.agent.recorder(
            "customer", action="arrives", function=v.function, card=v.card, plan=v.label or "an ordinary visit"
        )
        self.dev["proximity"].customer_arrive()
        self.later(self.visit.think, self._insert)

    def _insert(self) -> None:
        if not self.dev["card_reader"].customer_insert(CARDS[self.visit.card]):
            self.log.append("card refused by the slot")
            self._leave()

    # reacting ---------------------------------------------------------------
    def on_record(self, r: dict) -> None:
        if self.finished:
            return
        kind = r["type"]
        if kind == "state":
            if r["state"] == "reading_card":
                self.session_seen = True
            elif self.session_seen and r["state"] in ("idle", "out_of_service"):
                self.later(0.5, self._leave)
        elif kind == "device":
            key = (r["device"], r["event"])
            if key == ("display", "screen"):
                self._fields = r.get("fields", {})
                self._on_screen(r["screen"])
            elif key == ("card_reader", "at_gate"):
                self._item_at_gate(self.visit.forget_card, self._take_card)
            elif key == ("dispenser", "cash_presented"):
                self._item_at_gate(self.visit.forget_cash, self._take_cash)

    def _on_screen(self, screen: str) -> None:
        v = self.visit
        if screen == v.cancel_at:
            return self._act(self.dev["keypad"].customer_enter, "cancel")
        if screen == v.idle_at and screen not in self.idled:
            self.idled.add(screen)
            self.later(v.idle_for, self._press_any_key)
            return self.later(v.idle_for + v.think, self._on_screen, screen)
        if screen == "enter_pin":
            if self.visit.wrong_pins > 0:
                self.visit.wrong_pins -= 1
                return self._type("0000")
            return self._type(v.pin)
        if screen == "menu":
            if v.language and self._fields.get("language") != v.language:
                return self._act(self.dev["keypad"].customer_enter, f"lang:{v.language}")
            options = self._fields.get("options", [])
            choice = v.function if v.function in options else "cancel"
            return self._act(self.dev["keypad"].customer_enter, choice)
        if screen in ("transfer_caution", "confirm_deposit"):
            return self._act(self.dev["keypad"].customer_enter, "confirm")
        if screen == "enter_amount":
            return self._type(str(v.amount))
        if screen == "insert_notes":
            return self._act(self.dev["acceptor"].customer_insert_notes, v.notes)
        return None

    def _act(self, fn, *args) -> None:
        self.later(self.visit.think, fn, *args)

    def _type(self, line: str) -> None:
        keypad = self.dev["keypad"]
        for i in range(len(line)):
            self.later(self.visit.think * (i + 1) / (len(line) + 1), keypad.customer_keys, 1)
        self.later(self.visit.think, keypad.customer_enter, line)

    def _press_any_key(self) -> None:
        self.dev["keypad"].customer_keys(1)

    def _item_at_gate(self, forget: bool, take) -> None:
        if not forget:
            return self._act(take)
        self.later(1.0, self.dev["proximity"].customer_leave)
        if self.visit.come_back_after is not None:
            self.later(1.0 + self.visit.come_back_after, self.dev["proximity"].customer_arrive)
            self.later(2.0 + self.visit.come_back_after, take)
        return None

    def _take_card(self) -> None:
        self.dev["card_reader"].customer_take()

    def _take_cash(self) -> None:
        self.dev["dispenser"].customer_take_cash()

    def _leave(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.dev["proximity"].customer_leave()
        self.agent.recorder.sinks.remove(self.on_record)
        if self.done is not None:
            self.done(self)
