"""Errors of the agent's own files that the CLI reports in one line, kept apart from the
modules that raise them so that a light command (``atm status`` through the control
socket) need not import those modules."""

from __future__ import annotations


class PromptError(ValueError):
    """A catalogue file is malformed; names the file and the field."""

    def __init__(self, file: str, field: str, problem: str):
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem


class JournalError(ValueError):
    """The journal cannot be used: held by another agent, or a row is unreadable."""


class JournalBusy(JournalError):
    """Another agent holds the journal's lock; ``holder`` is its PID as the lock file says."""

    def __init__(self, journal_path: str, holder: str):
        super().__init__(f"{journal_path} is in use by another agent (PID {holder})")
        self.holder = holder


class SigningKeyError(ValueError):
    """A key file or a public key that cannot be used; the message names it."""
