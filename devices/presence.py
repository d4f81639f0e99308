"""Customer presence from raw sensor samples: pure logic plus a polling base.

:class:`PresenceDetector` turns distance readings from an ultrasonic sensor
(HC-SR04 and the like) into a debounced ``present`` flag. It is fed
``(t, distance)`` samples -- ``t`` in seconds on any monotonic clock,
``distance`` in metres or ``None`` for a lost echo -- and knows nothing about
threads, GPIO or schedulers, so tests drive it with plain numbers.

The pipeline, in order:

1. **Plausibility.** ``None``, NaN, infinities and negative values are lost
   echoes: ignored. A reading below :data:`ZERO` (the HC-SR04 cannot measure
   under 2 cm and reports 0 when something is very close) counts as "very
   close" only while the readings before it already put someone in front of
   the sensor; a 0 out of the blue is noise and ignored. A reading at or
   beyond ``max_distance`` means "nothing within range" (gpiozero pins its
   readings there), never an error: it is a valid, far reading.
2. **Median** of the last ``window`` accepted readings.
3. **Hysteresis** on the median, around the last reported presence: while
   absent, someone is *near* when the median is closer than ``enter``; while
   present, until it is farther than ``leave``. (Around the reported state,
   not the undebounced one: a customer who steps past ``leave`` for a moment
   and back into the band is still present.) After a loss of readings the
   presence reported before it is the reference.
4. **Debounce**: a change of *near* is reported only after it has held for
   ``debounce`` seconds.
5. **Staleness**: :meth:`PresenceDetector.check` reports when no accepted
   reading came for ``stale`` seconds; ``present`` is then ``None`` until
   fresh readings have been debounced again.

:class:`MotionDetector` does the same for a PIR motion sensor: present while
motion was seen within ``hold`` seconds, with the same debounce and
staleness.

:class:`PolledProximity` is the device side both kinds of backend share: it
samples on the device context's scheduler (so every detector call and every
event runs on the state machine's loop thread), emits ``presence`` on
debounced changes and raises/clears the ``no_readings`` fault.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from statistics import median
from typing import Any, Generic, Protocol, TypeVar

from devices.base import Action, DeviceContext, Severity
from devices.locator import Locator
from devices.proximity import ProximitySensor

ZERO = 0.02  # metres; HC-SR04 readings below its 2 cm minimum range are "stuck at 0"


class Debouncer:
    """Reports a boolean only after it has held for ``delay`` seconds.

    ``state`` is the last reported value (``None`` until the first report).
    """

    def __init__(self, delay: float):
        self.delay = delay
        self.state: bool | None = None
        self._candidate: bool | None = None
        self._since = 0.0

    def update(self, t: float, value: bool) -> bool | None:
        """Feed the undebounced value at time ``t``; return it when it becomes the state."""
        if value == self.state:
            self._candidate = None
            return None
        if value != self._candidate:
            self._candidate, self._since = value, t
        if t - self._since >= self.delay:
            self.state, self._candidate = value, None
            return value
        return None

    def restart(self) -> None:
        """Forget a change in progress (its evidence is too old to count)."""
        self._candidate = None

    def reset(self) -> None:
        """Forget everything: the next state is reported as a change."""
        self.state = self._candidate = None


class _Clocked:
    """Monotonic time and staleness, shared by both detectors."""

    def __init__(self, stale: float, t0: float):
        if not stale > 0:
            raise ValueError(f"stale={stale!r} must be positive")
        self.stale_after = float(stale)
        self._now = t0
        self._last_valid = t0
        self._no_readings = False

    def _time(self, t: float) -> float:
        """Time never runs backwards inside a detector."""
        if t > self._now:  # also rejects NaN
            self._now = t
        return self._now

    @property
    def no_readings(self) -> bool:
        """True from a stale :meth:`check` until the next accepted reading."""
        return self._no_readings

    def check(self, t: float) -> bool:
        """Call regularly: True exactly once when readings stopped for ``stale`` seconds.

        ``present`` is None from then on, until fresh readings have been
        debounced again (the next ``feed`` that returns a value).
        """
        t = self._time(t)
        if self._no_readings or t - self._last_valid < self.stale_after:
            return False
        self._no_readings = True
        self._forget()
        return True

    def _forget(self) -> None:
        raise NotImplementedError

    def _fresh(self, t: float) -> None:
        """An accepted reading at ``t``: a long gap before it voids what came before."""
        if t - self._last_valid >= self.stale_after:
            self._forget()
        self._last_valid = t
        self._no_readings = False


class PresenceDetector(_Clocked):
    """Debounced presence with hysteresis from distance readings (metres).

    ``feed(t, distance)`` returns the new ``present`` (True/False) when the
    reported presence changes -- including the first report and the first
    report after the readings came back -- and None otherwise. ``check(t)``
    returns True once when the readings went stale. ``t`` must not decrease
    (a smaller ``t`` is taken as the latest one seen).
    """

    def __init__(
        self,
        enter: float = 0.6,
        leave: float = 0.9,
        debounce: float = 0.5,
        window: int = 5,
        stale: float = 2.0,
        max_distance: float | None = None,
        t0: float = 0.0,
    ):
        if not 0 < enter < leave:
            raise ValueError(f"enter={enter!r} must be positive and below leave={leave!r}")
        if max_distance is not None and not leave < max_distance:
            raise ValueError(f"leave={leave!r} must be below max={max_distance!r}")
        if not debounce >= 0:
            raise ValueError(f"debounce={debounce!r} must not be negative")
        if int(window) != window or window < 1:
            raise ValueError(f"window={window!r} must be a whole number of readings >= 1")
        super().__init__(stale, t0)
        self.enter, self.leave, self.max_distance = float(enter), float(leave), max_distance
        self._window: deque[float] = deque(maxlen=int(window))
        self._near: bool | None = None  # the last undebounced judgement
        self._known: bool | None = None  # the last reported presence (kept while stale)
        self._debounce = Debouncer(float(debounce))

    @property
    def present(self) -> bool | None:
        """The debounced presence; None before the first report and while stale."""
        return None if self._no_readings else self._debounce.state

    @property
    def distance(self) -> float | None:
        """The median of the readings in the window (None when empty)."""
        return median(self._window) if self._window else None

    def reset(self, t: float) -> None:
        """Start afresh at time ``t`` (nothing known; staleness counts from ``t``)."""
        self._now = self._last_valid = t
        self._no_readings = False
        self._forget()
        self._near = self._known = None
        self._debounce.reset()

    def feed(self, t: float, distance: float | None) -> bool | None:
        t = self._time(t)
        d = self._plausible(distance, recent=t - self._last_valid < self.stale_after)
        if d is None:
            return None
        self._fresh(t)
        self._window.append(d)
        m = median(self._window)
        # hysteresis around what was last reported: a step back into the band between
        # enter and leave (or out of it for less than the debounce) changes nothing
        self._near = m <= self.leave if self._known else m < self.enter
        change = self._debounce.update(t, self._near)
        if change is not None:
            self._known = change
        return change

    def _plausible(self, distance: float | None, recent: bool) -> float | None:
        """The reading in metres, or None when it is to be ignored.

        ``recent``: the window holds readings young enough to vouch for a 0.
        """
        if distance is None:
            return None
        try:
            d = float(distance)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(d) or d < 0:
            return None
        if d < ZERO:  # stuck at 0: very close, but only right after close readings
            return 0.0 if self._near and self._window and recent else None
        if self.max_distance is not None and d > self.max_distance:
            return self.max_distance
        return d

    def _forget(self) -> None:
        self._window.clear()
        self._debounce.restart()
        if self._no_readings:
            self._debounce.reset()


class MotionDetector(_Clocked):
    """Debounced presence from a PIR: present while motion was seen within ``hold`` seconds.

    ``feed(t, motion)`` takes True/False (None when the sensor could not be
    read) and returns like :meth:`PresenceDetector.feed`; ``check`` likewise.
    """

    def __init__(self, hold: float = 5.0, debounce: float = 1.0, stale: float = 2.0, t0: float = 0.0):
        if not hold >= 0:
            raise ValueError(f"hold={hold!r} must not be negative")
        if not debounce >= 0:
            raise ValueError(f"debounce={debounce!r} must not be negative")
        super().__init__(stale, t0)
        self.hold = float(hold)
        self._last_motion: float | None = None
        self._debounce = Debouncer(float(debounce))

    @property
    def present(self) -> bool | None:
        return None if self._no_readings else self._debounce.state

    def reset(self, t: float) -> None:
        self._now = self._last_valid = t
        self._no_readings = False
        self._last_motion = None
        self._debounce.reset()

    def feed(self, t: float, motion: bool | None) -> bool | None:
        t = self._time(t)
        if motion is None:
            return None
        self._fresh(t)
        if motion:
            self._last_motion = t
        near = self._last_motion is not None and t - self._last_motion <= self.hold
        return self._debounce.update(t, near)

    def _forget(self) -> None:
        self._debounce.restart()
        if self._no_readings:
            self._debounce.reset()


# -- locator options ----------------------------------------------------------------------
def distance_detector_options(loc: Locator, max_default: float = 2.0) -> dict[str, Any]:
    """Read the options of a :class:`PresenceDetector`: enter, leave, debounce, window, stale, max."""
    opts: dict[str, Any] = {
        "enter": loc.number("enter", float, 0.02, 10.0, 0.6),
        "leave": loc.number("leave", float, 0.02, 10.0, 0.9),
        "debounce": loc.number("debounce", float, 0.0, 60.0, 0.5),
        "window": loc.number("window", int, 1, 99, 5),
        "stale": loc.number("stale", float, 0.1, 3600.0, 2.0),
        "max_distance": loc.number("max", float, 0.05, 10.0, max_default),
    }
    if not opts["enter"] < opts["leave"]:
        raise loc.error(f"option enter={opts['enter']:g} must be below leave={opts['leave']:g}")
    if not opts["leave"] < opts["max_distance"]:
        raise loc.error(f"option leave={opts['leave']:g} must be below max={opts['max_distance']:g}")
    return opts


# -- the device side ------------------------------------------------------------------------
Reading = TypeVar("Reading", contravariant=True)
R = TypeVar("R")


class Detector(Protocol[Reading]):
    """What a polled backend needs of its detector (PresenceDetector, MotionDetector)."""

    stale_after: float

    @property
    def present(self) -> bool | None: ...

    def reset(self, t: float) -> None: ...

    def feed(self, t: float, value: Reading) -> bool | None: ...

    def check(self, t: float) -> bool: ...


class PolledProximity(ProximitySensor, Generic[R]):
    """A proximity backend that samples at ``rate`` Hz on the context's scheduler.

    Subclasses create ``self.detector`` (a :class:`PresenceDetector` or
    :class:`MotionDetector`) and implement :meth:`_samples`; this class runs
    the ticks, emits ``presence`` (present: bool) on every debounced change,
    raises ``no_readings`` (warning, maintenance) when the readings stop and
    clears it -- then reports presence again -- once they are back.
    """

    NO_READINGS = "no_readings"

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.rate = 10.0
        self.detector: Detector[R] | None = None
        self._timer: Any = None  # the scheduler's handle of the next tick

    @property
    def present(self) -> bool | None:
        if not self.opened or self.detector is None:
            return None
        return self.detector.present

    def _now(self) -> float:
        now: float = self.ctx.scheduler.clock.now()
        return now

    def _sampling_detector(self) -> Detector[R]:
        """The detector; a backend that samples made one in its constructor."""
        if self.detector is None:
            raise RuntimeError(f"{type(self).__name__} samples without a detector")
        return self.detector

    def _start_sampling(self) -> None:
        self._sampling_detector().reset(self._now())
        self._stop_sampling()
        self._timer = self.ctx.scheduler.call_later(0, self._tick)

    def _stop_sampling(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _samples(self, now: float) -> Iterable[tuple[float, R]]:
        """The readings taken since the last tick, as (t, value) pairs."""
        raise NotImplementedError

    def _tick(self) -> None:
        # schedule the next tick first: an error in one tick must not end the sampling
        self._timer = self.ctx.scheduler.call_later(1.0 / self.rate, self._tick)
        now = self._now()
        detector = self._sampling_detector()
        for t, value in self._samples(now):
            change = detector.feed(t, value)
            if change is not None:
                self.clear_fault(self.NO_READINGS)  # readings are back and debounced
                self.emit("presence", present=change)
        if detector.check(now):
            self.raise_fault(
                self.NO_READINGS,
                f"the proximity sensor gave no readings for {detector.stale_after:g} s",
                Severity.WARNING,
                Action.MAINTENANCE,
            )

    def close(self) -> None:
        self._stop_sampling()
        super().close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "present": self.present}
