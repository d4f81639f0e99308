"""The control API's wire format: JSON-RPC 2.0, one UTF-8 JSON object a line.

A request is ``{"jsonrpc": "2.0", "id": N, "method": NAME, "params": {...}}``; the reply
carries the same id and either ``result`` (the command's answer, as the MQTT reply has
it) or ``error`` (``code``, ``message``, and ``data.error``: the command's error code).
A stream (``trace``, ``logs`` with ``follow``) goes on with notifications, ``{"jsonrpc":
"2.0", "method": "trace"|"logs", "params": {"entry": {...}}}`` and ``{..., "method":
"dropped", "params": {"count": N}}``, until the client hangs up (ours).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 64 * 1024  # bytes of one request line (ours)
MAX_LINES = 1000  # recent lines a stream (trace, logs) may ask for: what a ring keeps (ours)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REFUSED = -32000  # the command was understood and refused (not_permitted, unavailable, ...)

# a command's error code -> the JSON-RPC code that carries it
CODES = {
    "unknown_command": METHOD_NOT_FOUND,
    "malformed": INVALID_PARAMS,
    "malformed_json": INVALID_PARAMS,
    "unknown_field": INVALID_PARAMS,
    "missing_field": INVALID_PARAMS,
    "bad_field": INVALID_PARAMS,
    "internal": INTERNAL_ERROR,
}


class RpcError(Exception):
    """A request that cannot be taken; ``reply()`` is its error line."""

    def __init__(self, code: int, message: str, request_id: Any = None, error: str = ""):
        super().__init__(message)
        self.code, self.message, self.request_id, self.error = code, message, request_id, error

    def reply(self) -> bytes:
        return error_line(self.request_id, self.code, self.message, self.error)


@dataclass(frozen=True)
class Call:
    """One parsed request."""

    id: Any
    method: str
    params: dict[str, Any]


def parse_line(line: bytes) -> Call:
    """The request on ``line``, or RpcError (which keeps the id when it could be read)."""
    if len(line) > MAX_LINE:
        raise RpcError(INVALID_REQUEST, f"the request is {len(line)} bytes (at most {MAX_LINE})")
    try:
        body = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RpcError(PARSE_ERROR, f"not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise RpcError(PARSE_ERROR, "nested too deeply to be read") from None
    if not isinstance(body, dict):
        raise RpcError(INVALID_REQUEST, "a request is a JSON object")
    request_id = body.get("id")
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        raise RpcError(INVALID_REQUEST, "id must be a number or a string (notifications are not taken)")
    if body.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"', request_id)
    method, params = body.get("method"), body.get("params", {})
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, "method must be a non-empty string", request_id)
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object (by name)", request_id)
    unknown = set(body) - {"jsonrpc", "id", "method", "params"}
    if unknown:
        raise RpcError(INVALID_REQUEST, f"unknown member {sorted(unknown)[0]!r}", request_id)
    return Call(request_id, method, params)


def reply_line(request_id: Any, answer: dict[str, Any]) -> bytes:
    """The reply to a command's answer: ``result`` when it ran, ``error`` when refused."""
    if answer.get("ok", False):
        return _line({"jsonrpc": "2.0", "id": request_id, "result": answer})
    error = str(answer.get("error", "internal"))
    return error_line(request_id, CODES.get(error, REFUSED), str(answer.get("reason", error)), error)


def error_line(request_id: Any, code: int, message: str, error: str = "") -> bytes:
    body: dict[str, Any] = {"code": code, "message": message}
    if error:
        body["data"] = {"error": error}
    return _line({"jsonrpc": "2.0", "id": request_id, "error": body})


def notification_line(method: str, params: dict[str, Any]) -> bytes:
    """A line of a stream, from the agent: a JSON-RPC notification (no id)."""
    return _line({"jsonrpc": "2.0", "method": method, "params": params})


def request_line(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    return _line({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, default=str).encode() + b"\n"  # ASCII escapes: always encodable
