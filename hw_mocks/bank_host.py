"""A simulated bank host: accounts, PINs, balances, declines and time-outs.

A ``reverse`` names the request it undoes (``original``); the host undoes
only an approved money movement, and only once, whatever the ATM believes.
Requests are answered after ``latency`` seconds on the scheduler's clock by
calling ``reply(HostReply)``; with the ``timeout`` fault armed the host still
acts on the request but its answer is lost, as on a broken link. Accounts are keyed
by the card token, never by card number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.carddata import card_token
from fsm.ports import BankHost
from hw_mocks.cards import SimCard
from hw_mocks.faults import FaultInjection
from hw_mocks.history import History

OPERATIONS = ("verify_pin", "withdraw", "deposit", "balance", "transfer", "reverse")


@dataclass
class Account:
    pin: str
    balance: int
    daily_limit: int = 500_000


@dataclass(frozen=True)
class HostReply:
    request_id: int
    ok: bool
    code: str  # "approved", "wrong_pin", "insufficient_funds", "declined", ...
    balance: int | None = None


class SimBankHost(FaultInjection, BankHost):
    INJECTABLE = ("timeout", "decline")

    def __init__(self, scheduler, key: bytes, latency: float = 0.2):
        self.scheduler = scheduler
        self.key = key
        self.latency = latency
        self.accounts: dict[str, Account] = {}
        self.log: History[tuple[str, int | None]] = History()
        self._next_id = 0
        self._moved: dict[int, tuple[str, int]] = {}  # approved request -> (token, balance change)

    def add_account(self, card: SimCard, pin: str, balance: int) -> None:
        self.accounts[card_token(card.pan, self.key)] = Account(pin, balance)

    def request(
        self,
        op: str,
        token: str,
        callback: Callable[[Any], None],
        *,
        pin: Any = None,
        amount: int = 0,
        original: int | None = None,
        **fields: Any,
    ) -> int:
        """Send a request; returns its id. ``callback`` gets a HostReply later."""
        if fields:
            raise TypeError(f"unexpected host request fields: {', '.join(sorted(fields))}")
        if op not in OPERATIONS:
            raise ValueError(f"unknown host operation {op!r}")
        self._next_id += 1
        rid = self._next_id
        self.log.append((op, amount if op != "reverse" else original))
        answer = self._reverse(rid, original, amount) if op == "reverse" else self._answer(rid, op, token, pin, amount)
        if "timeout" not in self.injected:  # a time-out loses the reply, not the request
            self.scheduler.call_later(self.latency, callback, answer)
        return rid

    def _answer(self, rid: int, op: str, token: str, pin, amount: int) -> HostReply:
        acct = self.accounts.get(token)
        if acct is None:
            return HostReply(rid, False, "unknown_card")
        if op == "verify_pin":
            ok = pin is not None and pin.matches(acct.pin)
            return HostReply(rid, ok, "approved" if ok else "wrong_pin")
        if "decline" in self.injected:
            return HostReply(rid, False, "declined", acct.balance)
        if op in ("withdraw", "transfer"):
            if amount > acct.balance:
                return HostReply(rid, False, "insufficient_funds", acct.balance)
            if amount > acct.daily_limit:
                return HostReply(rid, False, "over_limit", acct.balance)
            acct.balance -= amount
            self._moved[rid] = (token, -amount)
        elif op == "deposit":
            acct.balance += amount
            self._moved[rid] = (token, amount)
        return HostReply(rid, True, "approved", acct.balance)

    def _reverse(self, rid: int, original: int | None, amount: int = 0) -> HostReply:
        """Undo ``original``; a positive ``amount`` undoes only that much of it (the
        rest of a withdrawal reached the customer)."""
        moved = self._moved.pop(original, None) if original is not None else None
        if moved is None:
            return HostReply(rid, False, "nothing_to_reverse")
        token, change = moved
        if 0 < amount < abs(change):
            change = amount if change > 0 else -amount
        self.accounts[token].balance -= change
        return HostReply(rid, True, "approved", self.accounts[token].balance)


DEMO_PIN = "1234"
DEMO_BALANCE = 1_000_000


def demo_host(scheduler, key: bytes, latency: float = 0.2) -> SimBankHost:
    """A host that knows every test card in ``hw_mocks.cards`` (PIN 1234)."""
    from hw_mocks.cards import CARDS

    host = SimBankHost(scheduler, key, latency)
    for card in CARDS.values():
        host.add_account(card, DEMO_PIN, DEMO_BALANCE)
    return host
