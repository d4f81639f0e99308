"""Session reporting: the journal and the telemetry in one call."""

from __future__ import annotations

from typing import Any

from fsm.ports import JournalPort, TelemetryPort


class SessionReporter:
    """Writes what the monitoring centre must also hear to both the journal and telemetry."""

    def __init__(self, journal: JournalPort, telemetry: TelemetryPort) -> None:
        self.journal = journal
        self.telemetry = telemetry

    def step(self, session: str | None, name: str, /, **data: Any) -> None:
        """A session step: the journal only."""
        self.journal.step(session, name, **data)

    def event(self, session: str | None, name: str, /, **data: Any) -> None:
        """A session event: journalled, and sent as an ``event`` message."""
        self.journal.event(session, name, **data)
        self.telemetry.event({"event": name, "session": session, **data})

    def session_end(self, summary: dict[str, Any]) -> None:
        """The session's summary: journalled (and flushed), then sent."""
        self.journal.event(summary["session"], "session_end", **summary)
        self.journal.flush()
        self.telemetry.event({"event": "session", **summary})

    def fault(self, fault: dict[str, Any]) -> None:
        self.journal.fault(fault)
        self.telemetry.fault(fault)

    def notify(self, session: str | None, name: str, /, **data: Any) -> None:
        """An event the monitoring centre hears that the journal has in other rows."""
        self.telemetry.event({"event": name, "session": session, **data})
