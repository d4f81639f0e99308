"""Remote commands from the monitoring centre (MQTT 5 request/response).

A request arrives on ``atm/v1/<atm_id>/cmd/<name>`` with a JSON object body,
a ResponseTopic and CorrelationData. :func:`parse_request` checks it against
the allow-list and the fields each command takes; a bad request is answered
at once with ``{"ok": false, "error": ..., "reason": ...}`` and nothing runs.
A good one is posted to the state machine's loop, which runs it and answers.
Every request, refused or not, leaves a ``remote_command`` row in the journal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypedDict

from agent import exercise
from agent.control.protocol import MAX_LINES
from agent.mqtt.commands import MAX_NAME, Request
from devices.fields import Field, FieldError, check_table, fields
from devices.registry import DEVICE_KINDS
from fsm.cash_service import RECONCILE_FIELDS, REPLENISH_FIELDS
from fsm.events import RemoteAudit, RemoteRequest

log = logging.getLogger("agent.remote")

# Streams (atm trace, atm logs): served by the control socket itself, never by the loop,
# which only journals them (ours).
STREAM_COMMANDS: dict[str, dict[str, Field]] = {
    "trace": fields(
        Field("device", str, description="the serial device to trace", choices=DEVICE_KINDS),
        Field("lines", int, 20, "recent frames to send first", low=1, high=MAX_LINES),
        Field("follow", bool, False, "then send each new frame until the client hangs up"),
    ),
    "logs": fields(
        Field("lines", int, 50, "recent lines to send first", low=1, high=MAX_LINES),
        Field("follow", bool, False, "then send each new line until the client hangs up"),
    ),
}
# name -> the fields its JSON body may have
COMMANDS: dict[str, dict[str, Field]] = {
    "status": {},
    "selftest": fields(Field("device", str, "all", "the device to test, or all", choices=(*DEVICE_KINDS, "all"))),
    "out_of_service": fields(Field("reason", str, "", "why, for the journal", length=(0, 200))),
    "in_service": {},
    "rebirth": {},
    "cash": {},
    "emulator": fields(
        Field("device", str, description="an emulated device (a +emu locator)", choices=DEVICE_KINDS),
        Field("line", str, description="an emulator console command (atm emulate's)", length=(1, 200)),
    ),
    "replenish": REPLENISH_FIELDS,
    "reconcile": RECONCILE_FIELDS,
    "counters_reset": fields(
        Field("through", int, description="the newest journal row the counters cover", low=0, high=2**62),
        Field("counters", dict, description="the counters the reset ends"),
        Field("counts", dict, description="the cassette counts at the reset"),
    ),
    "exercise": exercise.FIELDS,
    **STREAM_COMMANDS,
}
# Commands an engineer at the ATM may give (the control socket) and the monitoring centre
# may not (MQTT): they move cards or notes, or change the counts, or stream (ours).
LOCAL_ONLY = frozenset({"emulator", "exercise", "replenish", "reconcile", "counters_reset", *STREAM_COMMANDS})
FIELD_ERRORS = {"unknown": "unknown_field", "missing": "missing_field", "bad": "bad_field"}
MAX_BODY = 4096


class Who(TypedDict):
    """Who asked: the transport (mqtt, control) and, on the socket, the engineer."""

    transport: str
    engineer: str


class BadRequest(ValueError):
    def __init__(self, error: str, reason: str):
        super().__init__(reason)
        self.error = error
        self.reason = reason

    def response(self, command: str) -> dict:
        return {"ok": False, "command": command, "error": self.error, "reason": self.reason}


def parse_request(name: str, payload: bytes) -> dict:
    """The request's arguments, or BadRequest."""
    if name not in COMMANDS:
        shown = repr(name[:MAX_NAME]) + ("..." if len(name) > MAX_NAME else "")
        raise BadRequest("unknown_command", f"{shown} is not a command (allowed: {', '.join(COMMANDS)})")
    if len(payload) > MAX_BODY:
        raise BadRequest("malformed", f"the body is {len(payload)} bytes (at most {MAX_BODY})")
    try:
        body = json.loads(payload.decode("utf-8")) if payload.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("malformed_json", f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("malformed_json", "the body nests too deeply to be read") from None
    if not isinstance(body, dict):
        raise BadRequest("malformed", "the body must be a JSON object")
    try:
        checked = check_table(body, COMMANDS[name], noun=f"field of {name}")
    except FieldError as exc:
        raise BadRequest(FIELD_ERRORS[exc.reason], str(exc)) from None
    for key, value in body.items():
        if isinstance(value, str) and not _is_text(value):
            raise BadRequest("bad_field", f"{key}: not Unicode text (a lone surrogate escape)")
    return checked  # with the declared defaults of the fields not given


def _is_text(value: str) -> bool:
    """False for a string JSON let through with a lone surrogate (``"\\ud800"``): it could be
    neither journalled nor sent."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class CommandHandler:
    """Validates on the network thread; runs on the loop thread (``rebirth`` on the link).

    Every request leaves one journal row: a refused one through a ``RemoteAudit``,
    a checked one when the loop has run it.
    """

    def __init__(
        self,
        post: Callable[..., None],
        rebirth: Callable[[], None],
        facts: Callable[[], dict] | None = None,
        inline: dict[str, Callable[[dict], dict]] | None = None,
        link: Callable[[], dict] | None = None,
    ):
        """``facts()``: what the agent adds to a ``status`` answer (its link, uptime,
        versions), read on the loop thread as the answer goes out. ``inline``: commands
        answered here, on the transport's thread, without the state machine (``rebirth``,
        and ``emulator``, which only touches an emulator); each answers or raises BadRequest.
        ``link()``: the telemetry link's status for a ``status`` answer, read here, on the
        transport's thread (it counts the outbox: never on the loop)."""
        self.post = post
        self.rebirth = rebirth
        self.facts = facts
        self.link = link
        self.inline: dict[str, Callable[[dict], dict]] = {"rebirth": self._rebirth, **(inline or {})}
        self.closed = False

    def _rebirth(self, args: dict) -> dict:
        self.rebirth()
        return {}

    def close(self) -> None:
        """The agent is stopping: requests from now on are answered ``unavailable`` and not
        journalled (the loop that writes the journal is ending)."""
        self.closed = True

    def __call__(self, request: Request) -> None:
        name, reply = request.name[:MAX_NAME], request.reply
        who = Who(transport=request.transport, engineer=request.engineer)
        if self.closed:
            log.warning("request %r refused: the agent is stopping", name)
            return reply({"ok": False, "command": name, "error": "unavailable", "reason": "the agent is stopping"})
        try:
            if request.refusal is not None:
                raise BadRequest(*request.refusal)
            args = parse_request(request.name, request.payload)
            if name in LOCAL_ONLY and request.transport != "control":
                raise BadRequest("not_permitted", f"{name} is given at the ATM (atm {name} on its control socket)")
        except BadRequest as exc:
            reply(exc.response(name))
            self.post(RemoteAudit(name, False, exc.error, **who))
            return
        except Exception as exc:  # a defect of ours: refused and journalled all the same
            log.error("request %r could not be checked: %r", name, exc)
            reply({"ok": False, "command": name, "error": "internal", "reason": "the request could not be checked"})
            self.post(RemoteAudit(name, False, "internal", **who))
            return
        if name in STREAM_COMMANDS:
            return self._stream(request, name, args, who)
        if name in self.inline:
            return self._inline(request, name, args, who)
        if name == "status" and self.facts is not None:
            reply = self._with_facts(reply)
        self.post(RemoteRequest(name, args, reply, **who))

    def _inline(self, request: Request, name: str, args: dict, who: Who) -> None:
        self._run_here(request, name, args, who, lambda: self.inline[name](args))

    def _run_here(self, request: Request, name: str, args: dict, who: Who, run: Callable[[], dict | None]) -> None:
        """Run a command on this thread: ``run()`` answers (a dict), or has answered itself
        (None: a stream), or raises BadRequest; journalled either way."""
        try:
            answer = run()
        except BadRequest as exc:
            request.reply(exc.response(name))
            self.post(RemoteAudit(name, False, exc.error, **who))
            return
        except Exception as exc:  # a defect of ours: refused and journalled all the same
            log.error("request %r failed: %r", name, exc)
            request.reply({"ok": False, "command": name, "error": "internal", "reason": "the command failed"})
            self.post(RemoteAudit(name, False, "internal", **who))
            return
        if answer is not None:
            request.reply({"ok": True, "command": name, **answer})
        self.post(RemoteAudit(name, True, "", **who, args=args))

    def _with_facts(self, reply: Callable[[dict], None]) -> Callable[[dict], None]:
        facts = self.facts
        assert facts is not None
        link = self._read(self.link)

        def answer(body: dict) -> None:  # on the loop
            if body.get("ok", False):
                body = {**body, **self._read(facts), **({"link": link} if link else {})}
            reply(body)

        return answer

    @staticmethod
    def _read(facts: Callable[[], dict] | None) -> dict:
        """What ``facts()`` says, or {}: a status must answer all the same."""
        if facts is None:
            return {}
        try:
            return facts()
        except Exception as exc:
            log.error("status: the agent's facts could not be read: %r", exc)
            return {}

    def _stream(self, request: Request, name: str, args: dict, who: Who) -> None:
        """Opened and answered by the transport (``request.stream``), on its thread; a device
        that cannot be traced is refused (BadRequest); journalled either way."""

        def open_stream() -> None:
            if request.stream is None:
                raise BadRequest("not_permitted", f"{name} streams only on the control socket")
            request.stream(name, args)

        self._run_here(request, name, args, who, open_stream)
