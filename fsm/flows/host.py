"""The bank host: requests, replies, time-outs, declines and reversals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsm.events import HostReplied

if TYPE_CHECKING:
    from fsm.atm import ATM
    from fsm.ports import HostReply

HOST_OPS = {"withdrawal": "withdraw", "deposit": "deposit", "balance": "balance", "transfer": "transfer"}
MONEY_OPS = ("withdraw", "deposit", "transfer")  # requests a reversal can undo


class HostFlow:
    """Talks to the host for the session; its conditions read ``session.reply`` only."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def on_enter_verifying_pin(self, event: Any) -> None:
        self.atm.devices.keypad.set_mode("off")
        self.request("verify_pin", pin=event.kwargs.get("pin"))

    def on_enter_authorising(self, event: Any) -> None:
        session = self.atm.current
        self.atm.devices.keypad.set_mode("off")
        assert session.function is not None  # authorising follows a choice on the menu
        self.request(HOST_OPS[session.function], amount=session.amount)

    def request(self, op: str, amount: int = 0, pin: Any = None) -> None:
        atm = self.atm
        session = atm.current
        session.reply = None
        session.host_request = atm.host.request(op, session.token, self._reply, pin=pin, amount=amount)
        atm.report.step(atm.sid, "host_request", op=op, amount=amount, request=session.host_request)
        if op in MONEY_OPS:  # on disk at once: a restart reverses what it may have moved
            session.money_request = session.host_request
            atm.journal.flush()
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
        atm.report.step(atm.sid, "host_reply", code=reply.code, request=reply.request_id)
        if reply.request_id == session.money_request:
            atm.journal.flush()
        atm.host_replied(reply=reply)

    def _last_reply(self) -> HostReply:
        """The reply to the session's current request (the conditions of ``host_replied``)."""
        reply = self.atm.current.reply
        if reply is None:
            raise RuntimeError("the host has not answered the current request")
        return reply

    # -- conditions (pure) -----------------------------------------------------
    def reply_ok(self, event: Any) -> bool:
        return self._last_reply().ok

    def wrong_pin(self, event: Any) -> bool:
        return self._last_reply().code == "wrong_pin"

    def last_pin_try(self, event: Any) -> bool:
        session = self.atm.current
        return self.wrong_pin(event) and session.pin_tries + 1 >= self.atm.cfg.pin_attempts

    # -- effects -----------------------------------------------------------------
    def wrong_pin_again(self, event: Any) -> None:
        self.atm.current.pin_tries += 1
        self.atm.show("wrong_pin")
        self.atm.say("wrong_pin")

    def pin_tries_exceeded(self, event: Any) -> None:
        session = self.atm.current
        session.pin_tries += 1
        session.outcome = "pin_tries_exceeded"

    def host_declined(self, event: Any) -> None:
        atm = self.atm
        atm.current.outcome = "declined"
        atm.show("declined", reason=self._last_reply().code)
        atm.say("declined")
        atm.flows.deposit.return_escrow()

    def host_lost(self, event: Any) -> None:
        """No answer from the host: undo whatever it may have done."""
        atm = self.atm
        session = atm.current
        session.outcome = "host_timeout"
        atm.report.step(atm.sid, "host_timeout", op=session.function)
        if atm.state == "authorising":  # the host may have moved the money: undo it
            self.reverse()
        atm.flows.deposit.return_escrow()
        atm.show("host_unavailable")

    def reverse(self, amount: int | None = None) -> None:
        """Ask the host to undo this session's money movement, or ``amount`` of it (once;
        the host ignores one that never happened)."""
        atm = self.atm
        session = atm.current
        original = session.money_request
        amount = session.amount if amount is None else amount
        if original is not None and amount > 0:
            session.money_request = None
            atm.report.step(atm.sid, "reversal", original=original, amount=amount)
            atm.host.request("reverse", session.token, lambda reply: None, original=original, amount=amount)
