"""Where the control socket is."""

from __future__ import annotations

import os
from pathlib import Path

from agent.config import INSTALLED_JOURNAL

SOCKET_NAME = "control.sock"
INSTALLED_SOCKET = Path("/run/atm") / SOCKET_NAME  # systemd's RuntimeDirectory=atm


def control_socket_path(configured: str, journal_path: str) -> str:
    """The socket's path (ours): the configured one; else ``$RUNTIME_DIRECTORY/control.sock``
    for the agent under systemd; else ``/run/atm/control.sock`` for the installed journal
    (so an engineer's shell, without that variable, finds the same one); else next to the
    journal; '' (no socket) with an in-memory journal."""
    if configured:
        return configured
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return str(Path(runtime) / SOCKET_NAME)
    if journal_path in ("", ":memory:"):
        return ""
    if Path(journal_path) == INSTALLED_JOURNAL:
        return str(INSTALLED_SOCKET)
    return str(Path(journal_path).parent / SOCKET_NAME)
