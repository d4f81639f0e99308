"""The agent's recent log lines, for ``atm logs``: a ring of its logging records and the
event lines of its Recorder (what ``atm run`` prints), kept while it serves its socket.

An entry is ``{"seq", "time", "source", "level", "name", "text"}``: ``source`` is ``log``
(a logging record: its level and logger) or ``event`` (a Recorder record: ``level`` is
empty and ``name`` its type). Any run of 13-19 digits that passes the Luhn check is
masked as a card number would be (first 6, last 4) before a line is kept (ours): no line
should carry one, and none that slips through is kept whole.
"""

from __future__ import annotations

import logging
import re
import time

from agent.output import Recorder, describe
from devices.carddata import luhn_ok, mask_pan
from devices.ring import Ring

CAPACITY = 2000  # lines kept (ours)
_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


def mask_card_numbers(text: str) -> str:
    """``text`` with each Luhn-valid run of 13-19 digits masked."""
    return _DIGIT_RUN.sub(lambda m: mask_pan(m.group()) if luhn_ok(m.group()) else m.group(), text)


class _RingHandler(logging.Handler):
    """Each logging record the agent's loggers pass, as one line of the ring."""

    def __init__(self, ring: Ring) -> None:
        super().__init__()
        self.ring = ring

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f" [{type(exc).__name__}: {exc}]"
            self.ring.add(_line(record.created, "log", record.levelname, record.name, text))
        except Exception:
            self.handleError(record)


def _line(when: float, source: str, level: str, name: str, text: str) -> dict:
    one_line = " ".join(text.splitlines())
    return {"time": when, "source": source, "level": level, "name": name, "text": mask_card_numbers(one_line)}


class LogBook:
    """The ring and what fills it: a handler on the root logger, a sink of the Recorder."""

    def __init__(self, recorder: Recorder, capacity: int = CAPACITY) -> None:
        self.ring = Ring(capacity)
        self.recorder = recorder
        self.handler = _RingHandler(self.ring)

    def start(self) -> None:
        logging.getLogger().addHandler(self.handler)
        self.recorder.sinks.append(self.event)

    def stop(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        if self.event in self.recorder.sinks:
            self.recorder.sinks.remove(self.event)

    def event(self, record: dict) -> None:
        """A Recorder record, as ``atm run`` prints it."""
        self.ring.add(_line(time.time(), "event", "", str(record.get("type", "")), describe(record)))
