"""Presence sensors on a Raspberry Pi's GPIO through gpiozero.

``gpiozero-distance://?trigger=17&echo=27`` -- an HC-SR04 ultrasonic sensor
(:class:`DistanceProximity`); ``gpiozero-pir://?pin=4`` -- a PIR motion sensor
(:class:`MotionProximity`).

gpiozero samples in its own background thread. That thread only appends to a
deque here; the readings are taken off it by a tick on the device context's
scheduler, so the detector, the events and the faults all live on the state
machine's loop thread. The pin factory is gpiozero's own choice
(``Device.pin_factory`` / ``GPIOZERO_PIN_FACTORY``; ``MockFactory`` in tests).

A missing gpiozero or a pin that cannot be claimed leaves the device offline
with a fault (``gpiozero_missing`` / ``pin_unavailable``); the periodic
self-test tries again.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from devices.base import Action, DeviceContext, DeviceStatus, Severity
from devices.locator import Locator
from devices.presence import MotionDetector, PolledProximity, PresenceDetector, distance_detector_options

log = logging.getLogger(__name__)

R = TypeVar("R")

OPEN_FAULTS = ("gpiozero_missing", "pin_unavailable")
MAX_BCM_PIN = 53  # BCM GPIO 0..53 (the header's are 2..27)


def _pin(loc: Locator, key: str, what: str) -> int | str:
    """A GPIO pin option: a BCM number (17) or a gpiozero pin name (GPIO17, BOARD11)."""
    text = loc.text(key)
    if not text:
        raise loc.error(f"option {key}= is missing ({what})")
    if text.isascii() and text.isdigit():
        if len(text) > 2 or int(text) > MAX_BCM_PIN:
            raise loc.error(f"option {key}={text!r} is out of range 0..{MAX_BCM_PIN} (a BCM GPIO number)")
        return int(text)
    if not (
        len(text) <= 16
        and text.isascii()
        and text.replace(":", "").replace("_", "").isalnum()
        and text[0].isalpha()
        and any(c.isdigit() for c in text)
    ):
        raise loc.error(f"option {key}={text!r} is not a GPIO pin (a number like 17 or a name like GPIO17)")
    return text


def _recording(sensor_class: type[Any], sink: Callable[[float | None], None]) -> type[Any]:
    """A DistanceSensor that hands each raw reading (a fraction of max, or None) to ``sink``.

    gpiozero's queue thread calls ``_read`` for every measurement and keeps
    only a median of the non-None ones; we want every reading, lost echoes
    included, to do our own filtering and to notice when they stop.
    """

    class RecordingDistanceSensor(sensor_class):  # type: ignore[misc]  # gpiozero is untyped
        def __init__(self, *args: Any, **kwargs: Any):
            self._sink = sink  # before the queue thread starts in __init__
            super().__init__(*args, **kwargs)

        def _read(self) -> float | None:
            value: float | None = super()._read()
            self._sink(value)
            return value

    return RecordingDistanceSensor


class _GpioProximity(PolledProximity[R], Generic[R]):
    """Opening, closing and retrying a gpiozero device."""

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self._sensor: Any = None  # a gpiozero device (gpiozero is untyped)
        self._wanted = False

    @property
    def sensor(self) -> Any:
        """The gpiozero device (None while the device is not open)."""
        return self._sensor

    def open(self) -> None:
        self._wanted = True
        if self._sensor is None:
            self._start()

    def _start(self) -> None:
        try:
            import gpiozero
        except ImportError as exc:
            self.raise_fault("gpiozero_missing", f"gpiozero cannot load: {exc}", Severity.ERROR, Action.CONFIGURATION)
            return
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._sensor = self._make_sensor(gpiozero)
            for w in caught:
                log.info("%s: gpiozero: %s", self.kind, w.message)
        except Exception as exc:  # BadPinFactory, GPIOPinInUse, PinInvalidPin, OSError...
            self._sensor = None
            self.raise_fault("pin_unavailable", f"{type(exc).__name__}: {exc}", Severity.ERROR, Action.MAINTENANCE)
            return
        for code in OPEN_FAULTS:
            self.clear_fault(code)
        self.opened = True
        self._start_sampling()

    def _make_sensor(self, gpiozero: Any) -> Any:
        raise NotImplementedError

    def self_test(self) -> DeviceStatus:
        if self._wanted and self._sensor is None:
            self._start()  # the pin may be free now, or the pin factory fixed
        return self.status

    def close(self) -> None:
        self._wanted = False
        super().close()
        sensor, self._sensor = self._sensor, None
        if sensor is not None:
            try:
                sensor.close()
            except Exception:
                log.exception("closing the %s sensor", self.kind)


class DistanceProximity(_GpioProximity[float | None]):
    """An HC-SR04 through ``gpiozero.DistanceSensor``.

    Options: ``trigger``, ``echo`` (pins, required), ``enter`` (0.6 m),
    ``leave`` (0.9 m), ``debounce`` (0.5 s), ``window`` (5 readings),
    ``stale`` (2 s), ``max`` (2.0 m), ``rate`` (10 Hz).
    """

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        loc = self.loc
        self.trigger = _pin(loc, "trigger", "the GPIO pin wired to the sensor's TRIG")
        self.echo = _pin(loc, "echo", "the GPIO pin wired to the sensor's ECHO")
        if self.trigger == self.echo:
            raise loc.error(f"options trigger= and echo= name the same pin {self.echo!r}")
        self.options = distance_detector_options(loc)
        self.rate = loc.number("rate", float, 0.5, 100.0, 10.0)
        self.max_distance = self.options["max_distance"]
        self.detector = PresenceDetector(**self.options)
        self._readings: deque[float | None] = deque(maxlen=1000)
        self.readings = 0  # raw readings taken so far (lost echoes included)

    def _record(self, value: float | None) -> None:
        """gpiozero's queue thread: one raw reading (deque appends are thread-safe)."""
        self._readings.append(value)
        self.readings += 1

    def _make_sensor(self, gpiozero: Any) -> Any:
        self._readings.clear()  # nothing left over from before a close
        sensor_class = _recording(gpiozero.DistanceSensor, self._record)
        return sensor_class(
            echo=self.echo,
            trigger=self.trigger,
            queue_len=1,
            partial=True,
            max_distance=self.max_distance,
            threshold_distance=min(self.options["enter"], self.max_distance),
        )

    def _samples(self, now: float) -> Iterator[tuple[float, float | None]]:
        readings = self._readings
        while readings:
            value = readings.popleft()
            yield now, None if value is None else value * self.max_distance


class MotionProximity(_GpioProximity[bool | None]):
    """A PIR through ``gpiozero.MotionSensor``: present while motion was seen within ``hold`` s.

    Options: ``pin`` (required), ``debounce`` (1.0 s), ``hold`` (5 s),
    ``queue_len`` (1, gpiozero's smoothing; raise it for a twitchy sensor),
    ``rate`` (10 Hz), ``stale`` (2 s: the pin could not be read).
    """

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        loc = self.loc
        self.pin = _pin(loc, "pin", "the GPIO pin wired to the PIR's OUT")
        debounce = loc.number("debounce", float, 0.0, 60.0, 1.0)
        hold = loc.number("hold", float, 0.0, 600.0, 5.0)
        stale = loc.number("stale", float, 0.1, 3600.0, 2.0)
        self.queue_len = loc.number("queue_len", int, 1, 100, 1)
        self.rate = loc.number("rate", float, 0.5, 100.0, 10.0)
        self.detector = MotionDetector(hold=hold, debounce=debounce, stale=stale)
        self._read_failed = False

    def _make_sensor(self, gpiozero: Any) -> Any:
        return gpiozero.MotionSensor(
            self.pin, queue_len=self.queue_len, sample_rate=self.rate, partial=True
        )  # partial: reading never blocks the loop

    def _samples(self, now: float) -> list[tuple[float, bool | None]]:
        try:
            motion = bool(self._sensor.motion_detected)
        except Exception as exc:  # a closed or broken device: no reading (staleness reports it)
            if not self._read_failed:
                log.warning("%s: reading the PIR failed: %r", self.kind, exc)
            self._read_failed = True
            return [(now, None)]
        self._read_failed = False
        return [(now, motion)]
