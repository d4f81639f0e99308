"""A distance sensor that replays a trace (``trace://walking-away``).

The trace is a CSV file of ``t,distance`` rows (seconds from the start of the
trace, metres; an empty distance is a lost echo; ``#`` starts a comment). A
bare name is a file in ``hw_mocks/traces/``; anything with a ``/`` or ending
in ``.csv`` is a path. The readings are replayed on the scheduler's clock and
go through the same :class:`~devices.presence.PresenceDetector` as the real
sensor, so what the state machine sees includes the detector's latency.

``trace://`` (no name) is an empty hall until the simulated customer comes:
``customer_arrive()`` / ``customer_leave()`` (as on ``sim://``) switch any
trace to a synthetic one -- a person walking up to the ATM or away from it,
with sway, measurement noise and the odd lost echo.

Options: ``enter`` (0.6), ``leave`` (0.9), ``debounce`` (0.5), ``window`` (5),
``stale`` (2), ``max`` (2.0 m: readings are pinned there, as gpiozero does),
``rate`` (10 Hz sampling), ``loop`` (0: after the last row the scene stays
as it ended; 1: start over), ``start`` (0 s into the trace), ``noise`` (0.0 m
of gaussian noise added to the readings), ``seed`` (1).

Fault injection: ``failure`` -- the sensor stops producing readings; after
``stale`` seconds that is the ``no_readings`` fault, which clears once the
readings are back (``remove("failure")``).
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from devices.base import DeviceContext
from devices.locator import Locator
from devices.presence import PolledProximity, PresenceDetector, distance_detector_options
from hw_mocks.faults import FaultInjection

TRACES = Path(__file__).with_name("traces")

STAND = 0.45  # metres from the sensor where a customer stands
FAR = 2.6  # where a walk away ends (beyond the sensor's range)
WALK = 1.2  # walking speed near the ATM, m/s
SWAY = 0.02  # a standing person sways this much (m)
JITTER = 0.008  # HC-SR04 measurement noise (m, one sigma)
LOST = 0.02  # share of lost echoes


def trace_names() -> list[str]:
    return sorted(p.stem for p in TRACES.glob("*.csv"))


def trace_path(name: str) -> Path:
    """The CSV file a trace name or path stands for; ValueError when there is none."""
    if "/" in name or name.endswith(".csv"):
        path = Path(name)
    else:
        path = TRACES / f"{name}.csv"
    if not path.is_file():
        raise ValueError(f"no trace {name!r} (known: {', '.join(trace_names())}, or a CSV path)")
    return path


def load_trace(path: Path) -> list[tuple[float, float | None]]:
    """Rows of (t, distance or None), t strictly increasing from the first row."""
    rows: list[tuple[float, float | None]] = []
    with open(path, newline="") as fh:
        lines = (line for line in fh if line.strip() and not line.lstrip().startswith("#"))
        for n, row in enumerate(csv.reader(lines), start=1):
            if n == 1 and row and row[0].strip().lower() == "t":
                continue  # the header
            try:
                t = float(row[0])
                text = row[1].strip() if len(row) > 1 else ""
                d = float(text) if text else None
            except (ValueError, IndexError):
                raise ValueError(f"{path.name}: row {n} {row!r} is not 't,distance'") from None
            if not math.isfinite(t) or (rows and t <= rows[-1][0]):
                raise ValueError(f"{path.name}: row {n}: time {row[0]!r} does not increase")
            if d is not None and not (math.isfinite(d) and d >= 0):
                raise ValueError(f"{path.name}: row {n}: distance {text!r} is not a distance")
            rows.append((t, d))
    if not rows:
        raise ValueError(f"{path.name}: no rows")
    return rows


@dataclass
class Walk:
    """A person walking from ``d0`` to ``d1`` at ``speed``, starting at ``t0``, then staying."""

    t0: float
    d0: float
    d1: float
    speed: float = WALK

    def position(self, t: float) -> float:
        travelled = max(0.0, t - self.t0) * self.speed
        if self.d1 >= self.d0:
            return min(self.d1, self.d0 + travelled)
        return max(self.d1, self.d0 - travelled)


class TraceProximity(FaultInjection, PolledProximity):
    INJECTABLE = ("failure",)

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        loc = self.loc
        self.options = distance_detector_options(loc)
        self.max_distance = self.options["max_distance"]
        self.rate = loc.number("rate", float, 0.5, 100.0, 10.0)
        self.loop = loc.flag("loop")
        self.start = loc.number("start", float, 0.0, 1e6, 0.0)
        self.noise = loc.number("noise", float, 0.0, 1.0, 0.0)
        self.seed = loc.number("seed", int, 0, 2**32 - 1, 1)
        name = loc.path
        self.trace_name = name
        self.rows = load_trace(trace_path(name)) if name else []
        if self.rows and self.start > self.rows[-1][0]:
            raise loc.error(f"option start={self.start:g} is past the end of the trace ({self.rows[-1][0]:g} s)")
        self.detector = PresenceDetector(**self.options)
        self.walk: Walk | None = None  # set by the simulated customer
        self._rng = random.Random(self.seed)
        self._t0 = 0.0  # clock time of trace time 0
        self._next = 0  # index of the next row to replay
        self._last: float | None = None  # the last distance produced (None: lost echo)

    # lifecycle ----------------------------------------------------------------------
    def open(self) -> None:
        super().open()
        now = self._now()
        self._rng = random.Random(self.seed)
        self._t0 = now - self.start
        self._next = next((i for i, (t, _) in enumerate(self.rows) if t >= self.start), 0)
        self._start_sampling()

    # the simulated customer ---------------------------------------------------------
    def customer_arrive(self) -> None:
        self.walk = Walk(self._now(), self._where(), STAND)

    def customer_leave(self) -> None:
        self.walk = Walk(self._now(), self._where(), FAR)

    def _where(self) -> float:
        """Where the person in front of the sensor is now (FAR when nobody is)."""
        if self.walk is not None:
            return self.walk.position(self._now())
        if self._last is not None and self._last < self.max_distance:
            return self._last
        return FAR

    # sampling -----------------------------------------------------------------------
    def _samples(self, now: float):
        if self.walk is not None:
            samples = [(now, self._synthetic(self.walk, now))]
        elif self.rows:
            samples = self._replay(now)
        else:
            samples = [(now, self.max_distance)]  # an empty hall: nothing within range
        if "failure" in self.injected:
            return []  # the sensor produces nothing at all
        out: list[tuple[float, float | None]] = []
        for t, d in samples:
            self._last = d
            out.append((t, self._noisy(d)))
        return out

    def _replay(self, now: float) -> list:
        rows = self.rows
        out: list[tuple[float, float | None]] = []
        while True:
            if self._next >= len(rows):
                if not self.loop:  # the scene stays as it ended
                    return out or [(now, rows[-1][1])]
                self._t0 += rows[-1][0] - rows[0][0] + self._period()
                self._next = 0
            t, d = rows[self._next]
            if self._t0 + t > now + 1e-9:
                return out
            out.append((self._t0 + t, d))
            self._next += 1

    def _period(self) -> float:
        """The sampling period of the trace (for the seam of a loop)."""
        if len(self.rows) < 2:
            return 1.0 / self.rate
        return (self.rows[-1][0] - self.rows[0][0]) / (len(self.rows) - 1)

    def _synthetic(self, walk: Walk, now: float) -> float | None:
        d = walk.position(now)
        if d >= self.max_distance:
            return self.max_distance
        if self._rng.random() < LOST:
            return None
        d += SWAY * math.sin(2 * math.pi * now / 3.3) + self._rng.gauss(0.0, JITTER)
        return min(max(d, 0.0), self.max_distance)

    def _noisy(self, d: float | None) -> float | None:
        if d is None or not self.noise:
            return d
        return min(max(d + self._rng.gauss(0.0, self.noise), 0.0), self.max_distance)

    def describe(self) -> dict:
        return {**super().describe(), "trace": self.trace_name or None}
