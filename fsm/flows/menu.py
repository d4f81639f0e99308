"""The menu, the transfer caution and the amount."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsm.atm import ATM


class MenuFlow:
    """Choosing a function and an amount. Conditions only read the event and the session."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def on_enter_menu(self, event: Any) -> None:
        atm = self.atm
        # The functions are current: every fault, refill and session end refreshes them.
        languages = [f"lang:{lang}" for lang in atm.cfg.languages]
        atm.devices.keypad.set_mode("choice", [*atm.functions, *languages])
        self._show_menu()
        atm.idle.arm()

    def _show_menu(self) -> None:
        atm = self.atm
        atm.show("menu", options=list(atm.functions), languages=list(atm.cfg.languages), language=atm.current.language)

    # -- conditions (pure) -----------------------------------------------------
    def chose_language(self, event: Any) -> bool:
        value = event.kwargs.get("value", "")
        return isinstance(value, str) and value.startswith("lang:") and value[5:] in self.atm.cfg.languages

    def _chose(self, event: Any, function: str) -> bool:
        return bool(event.kwargs.get("value") == function and function in self.atm.functions)

    def chose_withdrawal(self, event: Any) -> bool:
        return self._chose(event, "withdrawal")

    def chose_deposit(self, event: Any) -> bool:
        return self._chose(event, "deposit")

    def chose_balance(self, event: Any) -> bool:
        return self._chose(event, "balance")

    def chose_transfer(self, event: Any) -> bool:
        return self._chose(event, "transfer")

    def chose_confirm(self, event: Any) -> bool:
        return bool(event.kwargs.get("value") == "confirm")

    def is_withdrawal(self, event: Any) -> bool:
        return self.atm.current.function == "withdrawal"

    def is_deposit(self, event: Any) -> bool:
        return self.atm.current.function == "deposit"

    def amount_ok(self, event: Any) -> bool:
        """An amount within the limit that, for a withdrawal, the cassettes can pay."""
        amount = event.kwargs.get("value", 0)
        if not 0 < amount <= self.atm.cfg.max_withdrawal:
            return False
        session = self.atm.current
        return session.function != "withdrawal" or session.offered_plan is not None

    # -- effects -----------------------------------------------------------------
    def change_language(self, event: Any) -> None:
        """The customer picks a language on the menu: everything from now on uses it."""
        atm = self.atm
        session = atm.current
        session.language = event.kwargs["value"][5:]
        atm.report.step(atm.sid, "language", language=session.language)
        self._show_menu()

    def take_function(self, event: Any) -> None:
        atm = self.atm
        session = atm.current
        session.function = event.kwargs["value"]
        atm.report.step(atm.sid, "chosen", function=session.function)

    def plan_amount(self, event: Any) -> None:
        """Plan the notes once per amount entered: nothing else touches the cassettes
        until this session ends."""
        atm = self.atm
        amount = event.kwargs.get("value", 0)
        session = atm.current
        valid = isinstance(amount, int) and 0 < amount <= atm.cfg.max_withdrawal
        withdrawal = session.function == "withdrawal"
        session.offered_plan = atm.devices.dispenser.plan(amount) if valid and withdrawal else None

    def take_amount(self, event: Any) -> None:
        session = self.atm.current
        session.amount = event.kwargs.get("value", 0)
        session.plan = session.offered_plan

    def refuse_amount(self, event: Any) -> None:
        atm = self.atm
        atm.report.step(atm.sid, "amount_refused", amount=event.kwargs.get("value"))
        atm.show("amount_refused", amount=event.kwargs.get("value"))

    def on_enter_transfer_caution(self, event: Any) -> None:
        atm = self.atm
        atm.devices.keypad.set_mode("confirm", ("confirm",))
        atm.show("transfer_caution")
        atm.say("transfer_caution")
        atm.report.step(atm.sid, "transfer_caution")
        atm.idle.arm()

    def on_enter_amount_entry(self, event: Any) -> None:
        atm = self.atm
        atm.devices.keypad.set_mode("amount")
        atm.show("enter_amount", function=atm.current.function)
        atm.idle.arm()
