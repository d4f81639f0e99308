"""The CLI's side of the control socket: one call, one answer (stdlib only, a light import)."""

from __future__ import annotations

import json
import socket
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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except PermissionError:  # the socket is there, and not ours to use
            raise ControlRefused(
                f"permission denied on {path} (ask to be put in the agent's control.group)", "not_permitted"
            ) from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlUnavailable(f"no agent answers on {path}: {exc.strerror or exc}") from None
        except OSError as exc:  # a timeout (its queue is full), or worse
            raise ControlSilent(f"the agent on {path} did not take the call: {exc.strerror or exc}") from None
        sock.sendall(request_line(1, method, params or {}))
        reply = _read_line(sock, path)
    finally:
        sock.close()
    if "error" in reply:
        error = reply["error"]
        raise ControlRefused(str(error.get("message")), str((error.get("data") or {}).get("error", "refused")))
    result = reply.get("result")
    if not isinstance(result, dict):
        raise ControlSilent(f"the agent on {path} answered without a result")
    return result


def _read_line(sock: socket.socket, path: str) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise ControlSilent(f"the agent on {path} did not answer in time") from None
        except OSError as exc:
            raise ControlSilent(f"the agent on {path} hung up: {exc.strerror or exc}") from None
        if not chunk:
            break
        data += chunk
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlSilent(f"the agent on {path} answered something that is not JSON-RPC") from None
    if not isinstance(reply, dict):
        raise ControlSilent(f"the agent on {path} answered something that is not JSON-RPC")
    return reply
