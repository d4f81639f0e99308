"""Errors of the agent's own files that the CLI reports in one line, kept apart from the
modules that raise them so that a light command (``atm status`` through the control
socket) need not import those modules."""

from __future__ import annotations


class PromptError(ValueError):
    """A catalogue file is malformed; names the file and the field."""

    def __init__(self, file: str, field: str, problem: str):
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem
