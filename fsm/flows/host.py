"""The bank host: requests, replies, time-outs, declines and reversals."""
from __future__ import annotations

from typing import Any

from fsm.events import HostReplied

HOST_OPS = {"withdrawal": "withdraw", "deposit": "deposit", "balance": "balance", "transfer": "transfer"}


class HostFlow:
    """Talks to the host for the session; its conditions read ``session.reply`` only."""

    def __init__(self, atm: Any) -> None:
        self.atm = atm

    def on_enter_verifying_pin(self, event: Any) -> None:
        self.atm.devices.keypad.set_mode("off")
        self.request("verify_pin", pin=event.kwargs.get("pin"))

    def on_enter_authorising(self, event: Any) -> None:
        session = self.atm.session
        self.atm.devices.keypad.set_mode("off")
        self.request(HOST_OPS[session.function], amount=session.amount)

    def request(self, op: str, amount: int = 0, pin: Any = None) -> None:
        atm = self.atm
        session = atm.session
        session.reply = None
        session.host_request = atm.host.request(op, session.card.token, self._reply, pin=pin, amount=amount)
        if op in ("withdraw", "deposit", "transfer"):
            session.money_request = session.host_request
        atm.report.step(atm.sid, "host_request", op=op, amount=amount)
        atm.later(atm.t["host"], "host_timed_out")

    def _reply(self, reply: Any) -> None:
        self.atm.post(HostReplied(reply))

    def replied(self, event: HostReplied) -> None:
        """Only the answer to the session's current request counts; it is journalled."""
        atm = self.atm
        reply = event.reply
        session = atm.session
        if session is None or reply is None or reply.request_id != session.host_request:
            return
        if atm.state not in ("verifying_pin", "authorising"):
            return
        session.reply = reply
        atm.report.step(atm.sid, "host_reply", code=reply.code)
        atm.host_replied(reply=reply)

    # -- conditions (pure) -----------------------------------------------------
    def reply_ok(self, event: Any) -> bool:
        return bool(self.atm.session.reply.ok)

    def wrong_pin(self, event: Any) -> bool:
        return bool(self.atm.session.reply.code == "wrong_pin")

    def last_pin_try(self, event: Any) -> bool:
        session = self.atm.session
        return self.wrong_pin(event) and session.pin_tries + 1 >= self.atm.cfg.pin_attempts

    # -- effects -----------------------------------------------------------------
    def wrong_pin_again(self, event: Any) -> None:
        self.atm.session.pin_tries += 1
        self.atm.show("wrong_pin")
        self.atm.say("wrong_pin")

    def pin_tries_exceeded(self, event: Any) -> None:
        self.atm.session.pin_tries += 1
        self.atm.session.outcome = "pin_tries_exceeded"

    def host_declined(self, event: Any) -> None:
        atm = self.atm
        atm.session.outcome = "declined"
        atm.show("declined", reason=atm.session.reply.code)
        atm.say("declined")
        atm.flows.deposit.return_escrow()

    def host_lost(self, event: Any) -> None:
        """No answer from the host: undo whatever it may have done."""
        atm = self.atm
        atm.session.outcome = "host_timeout"
        atm.report.step(atm.sid, "host_timeout", op=atm.session.function)
        if atm.state == "authorising":  # the host may have moved the money: undo it
            self.reverse()
        atm.flows.deposit.return_escrow()
        atm.show("host_unavailable")

    def reverse(self, amount: int | None = None) -> None:
        """Ask the host to undo this session's money movement, or ``amount`` of it (once;
        the host ignores one that never happened)."""
        atm = self.atm
        session = atm.session
        original = session.money_request
        amount = session.amount if amount is None else amount
        if original is not None and amount > 0:
            session.money_request = None
            atm.report.step(atm.sid, "reversal", original=original, amount=amount)
            atm.host.request("reverse", session.card.token, lambda reply: None, original=original,
                             amount=amount)
