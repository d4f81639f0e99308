"""What the state machine needs from the world around it, as protocols.

The agent supplies the journal, the telemetry and the bank host; the state
machine never imports them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Protocol


class JournalPort(Protocol):
    def step(self, session: str | None, name: str, /, **data: Any) -> None: ...
    def event(self, session: str | None, name: str, /, **data: Any) -> None: ...
    def fault(self, fault: dict[str, Any]) -> None: ...
    def intent(self, session: str | None, name: str, /, **data: Any) -> int: ...
    def outcome(self, intent: int, session: str | None, name: str, /, **data: Any) -> None: ...
    def flush(self) -> None: ...
    def recover(self) -> list[Any]: ...
    def counts_unreconciled(self) -> bool: ...


class TelemetryPort(Protocol):
    def status(self, online: bool, service: str) -> None: ...
    def fault(self, fault: dict[str, Any]) -> None: ...
    def cash(self, cassettes: list[dict[str, Any]]) -> None: ...
    def event(self, summary: dict[str, Any]) -> None: ...
    def birth_changed(self, snapshot: dict[str, Any]) -> None: ...


class HostReply(Protocol):
    """The bank host's answer to one request (read only)."""

    @property
    def request_id(self) -> int: ...
    @property
    def ok(self) -> bool: ...
    @property
    def code(self) -> str: ...
    @property
    def balance(self) -> int | None: ...


class BankHost(abc.ABC):
    """The bank's authorisation host: answers each request later, through ``callback``
    (on any thread; the state machine posts the answer to its loop).

    Operations: ``verify_pin`` (pin), ``withdraw``, ``deposit``, ``transfer``,
    ``balance`` (amount), and ``reverse`` (original, amount), which undoes an
    approved money movement once.
    """

    @abc.abstractmethod
    def request(self, op: str, token: str, callback: Callable[[Any], None], **fields: Any) -> int:
        """Send one request; returns its id, which the reply carries."""


Out = Callable[..., None]  # out(type, **fields): what the CLI and tests see
