"""The CLI's side of the control socket: one call, one answer, or a stream (stdlib only, a light import)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

from agent.control.protocol import request_line


class ControlUnavailable(OSError):
    """No agent runs there: no socket, or one nobody listens on (left by a dead agent)."""


class ControlSilent(OSError):
    """An agent is there but did not answer (in time, or in JSON-RPC): never a reason to
    open the devices behind its back."""


class ControlRefused(Exception):
    """The agent refused the call: ``error`` is the command's error code."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


def call(path: str, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the agent serving ``path``; its answer (``result``), ControlRefused, or
    ControlUnavailable when nothing answers there."""
    sock = _connect(path, timeout)
    try:
        sock.sendall(request_line(1, method, params or {}))
        reply = _read_line(sock, path, b"")[0]
    finally:
        sock.close()
    return _result(reply, path)


def follow(
    path: str, method: str, params: dict[str, Any], timeout: float = 10.0
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A stream: first ``("result", answer)`` (the recent entries), then one item a
    notification, ``(method, entry)`` or ``("dropped", {"count": N})``, until the agent
    hangs up (the iterator ends) or the caller stops; errors as :func:`call`'s."""
    sock = _connect(path, timeout)
    try:
        sock.sendall(request_line(1, method, params))
        reply, rest = _read_line(sock, path, b"")
        yield "result", _result(reply, path)
        sock.settimeout(None)  # the next entry may be a long time coming
        while True:
            try:
                line, rest = _read_line(sock, path, rest)
            except ControlClosed:
                return
            name, body = line.get("method"), line.get("params")
            if not isinstance(name, str) or not isinstance(body, dict):
                raise ControlSilent(f"the agent on {path} sent a line that is not a notification")
            yield name, (body.get("entry") if name == method else body) or {}
    finally:
        sock.close()


class ControlClosed(ControlSilent):
    """The agent hung up before a whole line."""


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except PermissionError:  # the socket is there, and not ours to use
        sock.close()
        raise ControlRefused(
            f"permission denied on {path} (ask to be put in the agent's control.group)", "not_permitted"
        ) from None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise ControlUnavailable(f"no agent answers on {path}: {exc.strerror or exc}") from None
    except OSError as exc:  # a timeout (its queue is full), or worse
        sock.close()
        raise ControlSilent(f"the agent on {path} did not take the call: {exc.strerror or exc}") from None
    return sock


def _result(reply: dict[str, Any], path: str) -> dict[str, Any]:
    if "error" in reply:
        error = reply["error"]
        raise ControlRefused(str(error.get("message")), str((error.get("data") or {}).get("error", "refused")))
    result = reply.get("result")
    if not isinstance(result, dict):
        raise ControlSilent(f"the agent on {path} answered without a result")
    return result


def _read_line(sock: socket.socket, path: str, data: bytes) -> tuple[dict[str, Any], bytes]:
    """The next line as JSON, and what came after it."""
    while b"\n" not in data:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise ControlSilent(f"the agent on {path} did not answer in time") from None
        except OSError as exc:
            raise ControlSilent(f"the agent on {path} hung up: {exc.strerror or exc}") from None
        if not chunk:
            if not data:
                raise ControlClosed(f"the agent on {path} hung up")
            break
        data += chunk
    line, _, rest = data.partition(b"\n")
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlSilent(f"the agent on {path} answered something that is not JSON-RPC") from None
    if not isinstance(reply, dict):
        raise ControlSilent(f"the agent on {path} answered something that is not JSON-RPC")
    return reply, rest
