"""The agent's lines to journald, with structured fields, when systemd runs it.

journald's native protocol (systemd.journal-fields(7), "Native Journal Protocol"): one
datagram a entry to ``/run/systemd/journal/socket``, ``KEY=value`` lines; a value with a
newline is sent as ``KEY\\n<64-bit little-endian length><value>\\n``. The standard library
does it, so no binding is needed (ours).

Each record of the agent (state changes, device events and faults, prompts, telemetry)
becomes an entry with ``MESSAGE`` (its human line), ``PRIORITY`` and the fields an
administrator filters on: ``ATM_DEVICE``, ``ATM_FAULT_CODE``, ``ATM_FAULT_STATE``,
``ATM_SESSION``, ``ATM_STATE``, ``ATM_RECORD`` (ours). A raised fault is a warning (an
error or critical one ``err``), so ``journalctl -u atm-agent -p warning`` lists the faults;
telemetry is ``debug``. Card data never reaches a record (only the masked number does).
The agent's Python log records go the same way with their level's priority.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Mapping
from typing import Any

from agent.output import describe

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "atm-agent"
MAX_MESSAGE = 4096  # characters of one MESSAGE (ours)
# syslog priorities (journalctl -p): 3 err, 4 warning, 5 notice, 6 info, 7 debug
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7
LEVELS = {logging.CRITICAL: 2, logging.ERROR: ERR, logging.WARNING: WARNING, logging.INFO: INFO, logging.DEBUG: DEBUG}

log = logging.getLogger("agent.journald")


def under_journald(environ: Mapping[str, str] | None = None) -> bool:
    """systemd connected our output to the journal (``JOURNAL_STREAM``, systemd.exec(5))."""
    return bool((os.environ if environ is None else environ).get("JOURNAL_STREAM"))


def encode(fields: Mapping[str, str]) -> bytes:
    """One entry in the native protocol."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class Journald:
    """A datagram socket to journald; an entry that cannot be sent is dropped (and said once)."""

    def __init__(self, path: str = SOCKET):
        self.path = path
        # never waits: a journald that falls behind loses entries (said once), never holds the loop
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self._warned = False

    def send(self, fields: Mapping[str, str]) -> None:
        try:
            self.sock.sendto(encode({**fields, "SYSLOG_IDENTIFIER": IDENTIFIER}), self.path)
        except OSError as exc:  # journald restarting, or gone: never the ATM's problem
            if not self._warned:
                self._warned = True
                log.warning("journald %s: %s (entries dropped)", self.path, exc)

    def close(self) -> None:
        self.sock.close()


def record_fields(record: dict[str, Any]) -> dict[str, str]:
    """A recorder record as a journal entry's fields."""
    fields = {"MESSAGE": describe(record)[:MAX_MESSAGE], "ATM_RECORD": str(record["type"])}
    priority = DEBUG if record["type"] == "telemetry" else INFO
    if record["type"] == "state":
        fields["ATM_STATE"] = str(record["state"])
        priority = NOTICE
    if "device" in record:
        fields["ATM_DEVICE"] = str(record["device"])
    if record.get("session"):
        fields["ATM_SESSION"] = str(record["session"])
    fault = record.get("fault")
    if record.get("event") == "fault" and fault is not None:
        code, severity = getattr(fault, "code", ""), getattr(getattr(fault, "severity", None), "value", "")
        state = str(record.get("state", ""))
        fields.update(ATM_FAULT_CODE=str(code), ATM_FAULT_STATE=state)
        if state == "raised":
            priority = ERR if severity in ("error", "critical") else WARNING
        else:
            priority = NOTICE
    fields["PRIORITY"] = str(priority)
    return fields


class JournaldSink:
    """A Recorder sink: every record to journald."""

    def __init__(self, journald: Journald):
        self.journald = journald

    def __call__(self, record: dict[str, Any]) -> None:
        self.journald.send(record_fields(record))


class JournaldHandler(logging.Handler):
    """Python log records to journald, with their level's priority and logger."""

    def __init__(self, journald: Journald):
        super().__init__()
        self.journald = journald

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)[:MAX_MESSAGE]
        except Exception:  # a broken format must not lose the line
            message = str(record.msg)[:MAX_MESSAGE]
        priority = LEVELS.get(record.levelno, INFO)
        self.journald.send({"MESSAGE": message, "PRIORITY": str(priority), "ATM_LOGGER": record.name})
