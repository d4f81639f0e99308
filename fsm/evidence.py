"""Camera evidence: a snapshot at session events (and alarms), and its retention sweep.

The store (supplied by the agent) takes, encodes and writes the image on the camera's
queue; the ``evidence`` step that names the image by its SHA-256 is written here, on
the loop, when the completion comes back. A snapshot that fails is an ``evidence`` step
with the error: it never waits for, delays or fails the session. The retention sweep
runs on the camera's queue too, every :data:`SWEEP_INTERVAL` on the ATM's clock; the
images it deletes are named in ``evidence_deleted`` events, and no row is ever changed.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from devices.commands import Completion
    from fsm.atm import ATM

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0  # seconds between two retention sweeps (ours: hourly)
FILES_PER_ROW = 500  # deleted images one evidence_deleted row names at most (ours)
REASON = re.compile(r"[a-z0-9_]{1,32}")  # it goes in the file name


class EvidenceStore(Protocol):
    """Where the images go (``agent.evidence.EvidenceFolder``); both run on the camera's queue."""

    def capture(self, camera: Any, taken: datetime, session: str | None, reason: str) -> dict[str, Any]:
        """Snapshot, encode, hash and write one image; what the ``evidence`` step records."""
        ...

    def sweep(self, now: datetime) -> list[dict[str, Any]]:
        """Delete what retention no longer keeps, oldest first; each image deleted
        (``file``, ``bytes``, ``why``: ``age`` or ``size``)."""
        ...


def deleted_rows(deleted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``evidence_deleted`` rows' data for one sweep: counts and the files, in chunks."""
    rows = []
    for start in range(0, len(deleted), FILES_PER_ROW):
        chunk = deleted[start : start + FILES_PER_ROW]
        rows.append(
            {
                "by_age": sum(1 for d in chunk if d["why"] == "age"),
                "by_size": sum(1 for d in chunk if d["why"] == "size"),
                "bytes": sum(int(d["bytes"]) for d in chunk),
                "files": [d["file"] for d in chunk],
            }
        )
    return rows


class Evidence:
    """Takes evidence snapshots for the flows and sweeps the folder; off without a store."""

    def __init__(self, atm: ATM, store: EvidenceStore | None) -> None:
        self.atm = atm
        self.store = store
        self._started = False

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def take(self, reason: str) -> None:
        """An evidence snapshot for ``reason`` (a session event, or an alarm's), queued on
        the camera; the ``evidence`` step follows on the loop. Never waited for."""
        if not REASON.fullmatch(reason):
            raise ValueError(f"evidence reason {reason!r}: 1-32 of a-z, 0-9, '_'")
        store, atm = self.store, self.atm
        if store is None:
            return
        session, camera = atm.sid, atm.devices.camera
        if not camera.usable:
            atm.report.step(session, "evidence", reason=reason, error="camera_unusable", message="no usable camera")
            return
        capture = partial(store.capture, camera, atm.clock.utcnow(), session, reason)
        atm.commands.send("camera", "evidence", capture, then=lambda c: self._taken(session, reason, c))

    def _taken(self, session: str | None, reason: str, completion: Completion) -> None:
        report = self.atm.report
        if completion.ok:
            report.step(session, "evidence", **completion.result)
            return
        fault = completion.fault
        message = fault.message if fault is not None else f"{type(completion.error).__name__}: {completion.error}"
        report.step(session, "evidence", reason=reason, error=completion.fault_code, message=message)

    # -- retention ------------------------------------------------------------
    def start(self) -> None:
        """A sweep now (what expired while the agent was down), then every SWEEP_INTERVAL."""
        if self.store is not None and not self._started:
            self._started = True
            self.atm.scheduler.call_later(0, self.sweep)

    def sweep(self) -> None:
        """Queue one retention sweep on the camera (and the next one on the clock)."""
        store, atm = self.store, self.atm
        if store is None:
            return
        atm.scheduler.call_later(SWEEP_INTERVAL, self.sweep)
        atm.commands.send("camera", "evidence_sweep", partial(store.sweep, atm.clock.utcnow()), then=self._swept)

    def _swept(self, completion: Completion) -> None:
        journal = self.atm.journal
        if not completion.ok:
            log.warning("evidence sweep failed: %r", completion.error)
            journal.event(None, "evidence_sweep_failed", error=f"{type(completion.error).__name__}: {completion.error}")
            return
        for data in deleted_rows(completion.result):
            journal.event(None, "evidence_deleted", **data)
        journal.flush()  # at once: a power cut must not leave images gone that no row says were deleted
