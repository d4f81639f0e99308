"""Presence sensing: the detector, the gpiozero backends on MockFactory, and trace replay."""

from __future__ import annotations

import itertools
import sys
import time

import gpiozero
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockTriggerPin
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.base import DeviceContext, DeviceStatus
from devices.presence import MotionDetector, PresenceDetector
from devices.registry import create_device
from fsm.clock import Scheduler, VirtualClock
from hw_mocks.customer import Visit
from hw_mocks.servers.wait import wait_for
from hw_mocks.traces.make_traces import PASSERS
from tests.helpers import run_visits

SPEED_OF_SOUND = 343.26  # what gpiozero's DistanceSensor assumes


# -- helpers -----------------------------------------------------------------------------
class Recorder(list):
    """A device event callback that keeps (t, name, data) on the virtual clock."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def __call__(self, kind, name, data):
        self.append((self.clock.now(), name, data))

    def presence(self) -> list[tuple[float, bool]]:
        return [(t, d["present"]) for t, n, d in self if n == "presence"]

    def faults(self) -> list[tuple[float, str, str]]:
        return [(t, d["fault"].code, d["state"]) for t, n, d in self if n == "fault"]


@pytest.fixture
def vctx():
    clock = VirtualClock()
    return DeviceContext(scheduler=Scheduler(clock), emit=Recorder(clock))


def run_until(ctx, t: float) -> None:
    """Run every timer due up to ``t`` on the virtual clock, in order."""
    sched = ctx.scheduler
    while (deadline := sched.next_deadline()) is not None and deadline <= t:
        sched.clock.advance_to(deadline)
        sched.run_due()
    sched.clock.advance_to(t)


@pytest.fixture
def devices():
    """Build and open devices by locator; close them after the test."""
    opened = []

    def make(text: str, ctx: DeviceContext):
        device = create_device("proximity", text, ctx)
        opened.append(device)
        device.open()
        return device

    yield make
    for device in opened:
        device.close()


def feed_all(det, samples):
    """Feed (t, distance) pairs; return [(t, change)] for every reported change."""
    out = []
    for t, d in samples:
        change = det.feed(t, d)
        if change is not None:
            out.append((t, change))
    return out


def at(rate: float, start: float, end: float, value):
    """Samples every 1/rate s over [start, end) with a constant value."""
    n = round((end - start) * rate)
    return [(round(start + i / rate, 6), value) for i in range(n)]


# -- the detector ------------------------------------------------------------------------
def test_hysteresis_band_keeps_the_reported_state():
    det = PresenceDetector(enter=0.6, leave=0.9, debounce=0.5, window=1)
    # approaching only into the band is not presence
    assert feed_all(det, at(10, 0, 3, 0.75)) == [(0.5, False)]
    assert feed_all(det, at(10, 3, 5, 0.5)) == [(3.5, True)]
    # back into the band: still present; only beyond leave counts as gone
    assert feed_all(det, at(10, 5, 10, 0.85)) == []
    assert feed_all(det, at(10, 10, 12, 0.95)) == [(10.5, False)]
    assert det.present is False


def test_a_change_must_hold_for_the_debounce():
    det = PresenceDetector(debounce=1.0, window=1)
    feed_all(det, at(10, 0, 2, 2.0))
    # 0.9 s close is not enough; the next far reading cancels it
    assert feed_all(det, at(10, 2, 2.9, 0.4) + at(10, 2.9, 4, 2.0)) == []
    changes = feed_all(det, at(10, 4, 6, 0.4))
    assert changes == [(5.0, True)]


def test_the_median_drops_single_outliers():
    det = PresenceDetector(debounce=0.5, window=5)
    samples = at(10, 0, 10, 0.45)
    for i in range(5, 100, 7):  # every 0.7 s one reading pinned at max
        samples[i] = (samples[i][0], 2.0)
    assert feed_all(det, samples) == [(0.5, True)]


def test_stuck_at_zero_right_after_close_readings_is_very_close():
    det = PresenceDetector(debounce=0.5, max_distance=2.0)
    assert feed_all(det, at(10, 0, 2, 0.3)) == [(0.5, True)]
    assert feed_all(det, at(10, 2, 20, 0.0)) == []  # leaning in: the sensor reads 0
    assert det.present is True and det.distance == 0.0
    assert not det.check(20.0)  # zeros that follow close readings are readings


def test_zero_out_of_the_blue_is_noise():
    det = PresenceDetector(debounce=0.5, max_distance=2.0, stale=2.0)
    samples = at(10, 0, 3, 2.0)
    samples[15] = (samples[15][0], 0.0)
    assert feed_all(det, samples) == [(0.5, False)]
    # a run of zeros with nobody there is noise too, and not a reading
    assert feed_all(det, at(10, 3, 6, 0.0)) == []
    assert det.check(6.0) and det.present is None


def test_zero_after_a_gap_in_the_readings_is_noise():
    det = PresenceDetector(debounce=0.5, stale=2.0)
    feed_all(det, at(10, 0, 1, 0.4))
    assert det.present is True
    assert det.feed(5.0, 0.0) is None and det.distance == 0.4  # rejected: nothing recent vouches


def test_pinned_at_max_means_nothing_in_range():
    det = PresenceDetector(debounce=0.5, max_distance=2.0, stale=2.0)
    feed_all(det, at(10, 0, 2, 0.4))
    assert feed_all(det, at(10, 2, 30, 2.0)) == [(2.7, False)]
    assert not det.check(30.0)  # a quiet hall is not a dead sensor
    assert det.feed(30.1, 7.5) is None and det.distance == 2.0  # beyond max reads as max


def test_isolated_lost_echoes_are_ignored():
    det = PresenceDetector(debounce=0.5, stale=2.0)
    samples = [(t, None if i % 3 == 1 else 0.45) for i, (t, _) in enumerate(at(10, 0, 20, 0))]
    changes = []
    for t, d in samples:
        change = det.feed(t, d)
        changes += [] if change is None else [change]
        assert not det.check(t)
    assert changes == [True]


def test_no_readings_goes_stale_then_reports_again():
    det = PresenceDetector(debounce=0.5, stale=2.0)
    feed_all(det, at(10, 0, 1, 0.45))
    assert det.present is True
    for t, d in at(10, 1, 2.9, None):
        det.feed(t, d)
        assert not det.check(t)
    assert det.check(3.0)  # 2 s after the last reading at 0.9 s
    assert det.present is None and det.no_readings
    assert not det.check(3.5)  # reported once
    # readings come back: the presence is reported again after the debounce,
    # even though it is what it was before
    assert feed_all(det, at(10, 4, 5, 0.45)) == [(4.5, True)]
    assert det.present is True and not det.no_readings


def test_staleness_counts_from_reset():
    det = PresenceDetector(stale=2.0)
    det.reset(100.0)
    assert not det.check(101.9)
    assert det.check(102.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enter": 0.9, "leave": 0.6},
        {"enter": 0.0},
        {"leave": 2.5, "max_distance": 2.0},
        {"debounce": -1},
        {"window": 0},
        {"window": 2.5},
        {"stale": 0},
    ],
)
def test_bad_detector_settings(kwargs):
    with pytest.raises(ValueError):
        PresenceDetector(**kwargs)


READINGS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0.0, 2.5),
    st.sampled_from([0.0, 0.01, 0.45, 0.6, 0.75, 0.9, 2.0]),
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0.0, 1.5), READINGS, st.booleans()), max_size=300),
    debounce=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    window=st.integers(1, 7),
)
def test_any_readings_never_raise_nor_flip_faster_than_the_debounce(steps, debounce, window):
    det = PresenceDetector(enter=0.6, leave=0.9, debounce=debounce, window=window, stale=2.0, max_distance=2.0)
    t, reports = 0.0, []
    for dt, reading, check in steps:
        t += dt
        before = det.present
        change = det.feed(t, reading)
        if change is not None:
            assert change is not before and det.present is change
            reports.append(t)
        if check and det.check(t):
            assert det.present is None
    for t1, t2 in itertools.pairwise(reports):
        assert t2 - t1 >= debounce


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.one_of(st.none(), st.just(0.0), st.floats(0.6, 5.0))), max_size=200))
def test_nothing_closer_than_enter_never_makes_a_presence(steps):
    """Zeros out of the blue, lost echoes and far readings alone never mean someone is there."""
    det = PresenceDetector(max_distance=2.0)
    t = 0.0
    for dt, reading in steps:
        t += dt
        assert det.feed(t, reading) is not True
        det.check(t)


def test_motion_detector_holds_then_lets_go():
    det = MotionDetector(hold=2.0, debounce=0.5, stale=2.0)
    samples = at(10, 0, 1, False) + at(10, 1, 1.5, True) + at(10, 1.5, 6, False)
    assert feed_all(det, samples) == [(0.5, False), (1.5, True), (4.0, False)]


# -- gpiozero on MockFactory ---------------------------------------------------------------
@pytest.fixture
def mock_factory():
    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()  # closing a device does not free mock pins (gpiozero #1087)
    Device.pin_factory = saved


def echo_time(distance: float) -> float:
    return 2 * distance / SPEED_OF_SOUND


class Stand:
    """Put a reflector at a distance from a mock HC-SR04 and step the virtual clock,
    each 0.1 s step only after gpiozero's thread has taken a fresh reading."""

    def __init__(self, ctx, device, trigger):
        self.ctx, self.device, self.trigger = ctx, device, trigger

    def at(self, distance: float, seconds: float) -> None:
        self.trigger.echo_time = echo_time(distance)
        clock = self.ctx.scheduler.clock
        for _ in range(round(seconds * 10)):
            seen, deadline = self.device.readings, time.monotonic() + 2.0
            while self.device.readings < seen + 1 and time.monotonic() < deadline:
                time.sleep(0.002)
            run_until(self.ctx, clock.now() + 0.1)


def test_distance_sensor_approach_and_leave(mock_factory, vctx, devices):
    echo = mock_factory.pin(27)
    trigger = mock_factory.pin(17, pin_class=MockTriggerPin, echo_pin=echo, echo_time=echo_time(1.5))
    dev = devices(
        "gpiozero-distance://?trigger=17&echo=27&enter=0.6&leave=0.9&debounce=0.5&rate=10&stale=2&max=2.0", vctx
    )
    assert dev.status is DeviceStatus.ONLINE and dev.faults == {}
    stand = Stand(vctx, dev, trigger)
    stand.at(1.5, 1.0)
    assert vctx.emit.presence() == [(pytest.approx(0.5, abs=0.35), False)]  # nobody, to start with
    stand.at(0.25, 1.5)  # someone steps up at 1.0 s
    assert dev.present is True
    stand.at(1.5, 2.0)  # and leaves at 2.5 s
    events = vctx.emit.presence()
    assert [p for _, p in events] == [False, True, False]
    (t_in, _), (t_out, _) = events[1:]
    assert 1.0 + 0.5 <= t_in <= 1.0 + 1.2  # the debounce, plus the median filling
    assert 2.5 + 0.5 <= t_out <= 2.5 + 1.2
    assert dev.faults == {}
    assert 0.35 <= dev.detector.distance <= 2.0


@pytest.mark.filterwarnings("ignore::gpiozero.DistanceSensorNoEcho")
def test_distance_sensor_without_echoes_raises_no_readings(mock_factory, vctx, devices):
    mock_factory.pin(17)  # a trigger that triggers nothing: every echo is lost
    dev = devices("gpiozero-distance://?trigger=17&echo=27&stale=1", vctx)
    clock = vctx.scheduler.clock
    deadline = time.monotonic() + 5.0
    while not dev.faults and time.monotonic() < deadline:
        seen = dev.readings
        while dev.readings == seen and time.monotonic() < deadline:
            time.sleep(0.005)
        run_until(vctx, clock.now() + 0.3)
    assert vctx.emit.faults()[0][1:] == ("no_readings", "raised")
    assert dev.present is None and dev.status is DeviceStatus.ONLINE


def test_a_pin_in_use_is_a_fault_not_a_crash(mock_factory, vctx, devices):
    blocker = gpiozero.DigitalOutputDevice(17)
    dev = devices("gpiozero-distance://?trigger=17&echo=27", vctx)
    assert dev.status is DeviceStatus.OFFLINE and dev.present is None
    assert vctx.emit.faults() == [(0.0, "pin_unavailable", "raised")]
    blocker.close()
    dev.self_test()  # the periodic self-test tries again
    assert dev.status is DeviceStatus.ONLINE
    assert vctx.emit.faults()[-1][1:] == ("pin_unavailable", "cleared")


def test_gpiozero_missing_is_a_fault(monkeypatch, vctx, devices):
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # import gpiozero -> ImportError
    dev = devices("gpiozero-pir://?pin=4", vctx)
    assert dev.status is DeviceStatus.OFFLINE
    assert vctx.emit.faults() == [(0.0, "gpiozero_missing", "raised")]
    assert dev.faults["gpiozero_missing"].action.value == "configuration"


@pytest.mark.parametrize(
    "locator, option",
    [
        ("gpiozero-distance://?echo=27", "trigger"),
        ("gpiozero-distance://?trigger=17", "echo"),
        ("gpiozero-distance://?trigger=17&echo=17", "echo"),
        ("gpiozero-distance://?trigger=17&echo=pin 27", "echo"),
        ("gpiozero-distance://?trigger=17&echo=27&enter=near", "enter"),
        ("gpiozero-distance://?trigger=17&echo=27&enter=0.9&leave=0.6", "enter"),
        ("gpiozero-distance://?trigger=17&echo=27&leave=2.5", "leave"),
        ("gpiozero-distance://?trigger=17&echo=27&debounce=-1", "debounce"),
        ("gpiozero-distance://?trigger=17&echo=27&rate=0", "rate"),
        ("gpiozero-distance://?trigger=17&echo=27&stale=x", "stale"),
        ("gpiozero-distance://?trigger=17&echo=27&max=nan", "max"),
        ("gpiozero-distance://?trigger=17&echo=27&colour=red", "colour"),
        ("gpiozero-pir://", "pin"),
        ("gpiozero-pir://?pin=4&hold=long", "hold"),
        ("gpiozero-pir://?pin=4&queue_len=2.5", "queue_len"),
        ("gpiozero-pir://?pin=4&debounce=1s", "debounce"),
        ("trace://walking-away?loop=2", "loop"),
        ("trace://walking-away?start=1000", "start"),
        ("trace://walking-away?noise=-0.1", "noise"),
        ("trace://no-such-trace", "no-such-trace"),
    ],
)
def test_bad_options_name_the_option(locator, option, vctx):
    with pytest.raises(ValueError, match=option):
        create_device("proximity", locator, vctx)


def test_pir_present_while_motion_was_seen_within_hold(mock_factory, vctx, devices):
    pin = mock_factory.pin(4)
    dev = devices("gpiozero-pir://?pin=4&debounce=0.5&hold=2", vctx)

    def until(motion: bool) -> None:
        wait_for(lambda: dev.sensor.motion_detected == motion, 3, 0.01, f"motion_detected == {motion}")

    run_until(vctx, 1.0)
    pin.drive_high()
    until(True)
    run_until(vctx, 2.0)
    pin.drive_low()
    until(False)
    run_until(vctx, 6.0)
    # motion from 1.0 s (seen at the next tick), none from 2.0 s: present 0.5 s later,
    # absent hold + debounce after the last motion
    assert vctx.emit.presence() == [
        (pytest.approx(0.5), False),
        (pytest.approx(1.5, abs=0.11), True),
        (pytest.approx(2.0 + 2.0 + 0.5, abs=0.11), False),
    ]


# -- trace replay on the virtual clock -------------------------------------------------------
def replay(devices, vctx, locator: str, until: float):
    dev = devices(locator, vctx)
    run_until(vctx, until)
    return dev, vctx.emit.presence()


def test_walking_away_gives_present_then_absent(devices, vctx):
    _, events = replay(devices, vctx, "trace://walking-away", 30.0)
    assert [p for _, p in events] == [True, False]
    assert events[0][0] == pytest.approx(0.5)
    assert 12.4 + 0.5 <= events[1][0] <= 12.4 + 1.0  # past leave at 12.4 s, then the debounce


def test_lingering_in_the_band_is_one_presence(devices, vctx):
    _, events = replay(devices, vctx, "trace://lingering", 40.0)
    assert [p for _, p in events] == [False, True, False]
    assert 3.7 + 0.5 <= events[1][0] <= 3.7 + 1.0
    assert 32.3 + 0.5 <= events[2][0] <= 32.3 + 1.0


def test_passers_by_give_no_presence_longer_than_a_passers_dwell(devices, vctx):
    """Passers who are near for less than the debounce are never reported; whoever
    is reported is reported for about as long as they stood there, never longer."""
    _, events = replay(devices, vctx, "trace://passers-by", 40.0)
    assert events[0] == (pytest.approx(0.5), False)
    episodes = [(t_in, t_out) for (t_in, p), (t_out, _) in itertools.pairwise(events) if p]
    assert events[-1][1] is False and len(episodes) == 1
    ((t_in, t_out),) = episodes
    ((start, dwell, _),) = [p for p in PASSERS if p[1] > 1.0 and p[2] < 0.6]  # the one who stops
    assert start + 0.5 <= t_in <= start + 1.0
    assert t_out - t_in <= dwell + 0.2


def test_sensor_glitch_raises_no_readings_and_never_reports_absence_meanwhile(devices, vctx):
    dev = devices("trace://sensor-glitch", vctx)
    run_until(vctx, 18.5)
    assert dev.present is None and "no_readings" in dev.faults
    run_until(vctx, 40.0)
    faults = vctx.emit.faults()
    assert [(c, s) for _, c, s in faults] == [("no_readings", "raised"), ("no_readings", "cleared")]
    (t_raised, _, _), (t_cleared, _, _) = faults
    assert 16.0 + 2.0 - 0.1 <= t_raised <= 16.0 + 2.0 + 0.1  # the last echo came at 15.9 s
    assert 19.5 + 0.5 <= t_cleared <= 19.5 + 1.0
    events = vctx.emit.presence()
    # the 0 out of the blue at 1.5 s is noise; stuck-at-0, pinned-at-max spikes and lost
    # echoes while the customer stands there never read as absence
    assert [p for _, p in events] == [False, True, True, False]
    assert events[2][0] == pytest.approx(t_cleared)  # reported again as the fault clears
    assert 26.4 + 0.5 <= events[3][0] <= 26.4 + 1.0


def test_loop_replays_the_trace_again(devices, vctx):
    _, events = replay(devices, vctx, "trace://walking-away?loop=1", 60.0)
    assert [p for _, p in events] == [True, False, True, False]
    # the window still holds the empty hall at the seam: 3 of 5 readings, then the debounce
    assert events[2][0] == pytest.approx(30.2 + 0.5, abs=0.01)


def test_start_skips_into_the_trace_and_the_end_holds(devices, vctx):
    dev, events = replay(devices, vctx, "trace://walking-away?start=14", 100.0)
    assert events == [(pytest.approx(0.5), False)] and dev.faults == {}


def test_noise_is_seeded(devices):
    runs = []
    for _ in range(2):
        clock = VirtualClock()
        ctx = DeviceContext(scheduler=Scheduler(clock), emit=Recorder(clock))
        replay(devices, ctx, "trace://walking-away?noise=0.05&seed=7", 30.0)
        runs.append(ctx.emit.presence())
    assert runs[0] == runs[1] and [p for _, p in runs[0]] == [True, False]


def test_a_csv_path(tmp_path, devices, vctx):
    path = tmp_path / "mine.csv"
    path.write_text("t,distance\n" + "".join(f"{i / 10:.1f},{'' if i % 4 == 0 else 0.5}\n" for i in range(30)))
    _, events = replay(devices, vctx, f"trace://{path}", 3.0)
    assert events == [(pytest.approx(0.6), True)]


@pytest.mark.parametrize(
    "text", ["t,distance\n0.0,abc\n", "t,distance\n1.0,0.5\n0.5,0.5\n", "t,distance\n", "t,distance\n0.0,-1\n"]
)
def test_a_bad_csv_is_a_value_error(tmp_path, text, vctx):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.csv"):
        create_device("proximity", f"trace://{path}", vctx)


def test_the_simulated_customer_walks_up_and_away(devices, vctx):
    dev = devices("trace://", vctx)
    run_until(vctx, 5.0)
    assert dev.present is False
    vctx.scheduler.call_later(0, dev.customer_arrive)
    run_until(vctx, 8.0)
    vctx.scheduler.call_later(0, dev.customer_leave)
    run_until(vctx, 12.0)
    events = vctx.emit.presence()
    assert [p for _, p in events] == [False, True, False]
    assert 5.0 < events[1][0] <= 5.0 + 2.5  # walking 2.6 m -> 0.6 m, then the debounce
    assert 8.0 < events[2][0] <= 8.0 + 1.5  # 0.45 m -> 0.9 m, then the debounce


def test_failure_stops_the_readings_until_removed(devices, vctx):
    dev = devices("trace://", vctx)
    dev.customer_arrive()
    run_until(vctx, 5.0)
    dev.inject("failure")
    run_until(vctx, 6.9)
    assert dev.faults == {} and dev.present is True  # not stale yet
    run_until(vctx, 7.5)
    assert "no_readings" in dev.faults and dev.present is None
    dev.remove("failure")
    run_until(vctx, 9.0)
    assert dev.faults == {} and dev.present is True
    assert [(c, s) for _, c, s in vctx.emit.faults()] == [("no_readings", "raised"), ("no_readings", "cleared")]
    assert [p for _, p in vctx.emit.presence()][-2:] == [True, True]  # reported again
    with pytest.raises(ValueError, match="failure"):
        dev.inject("jammed")


def test_scenarios_run_on_the_trace_sensor():
    quick = {
        "timeouts": {"idle_help": 15, "idle_cancel": 45, "card_take": 30, "cash_take": 30},
        "devices": {"proximity": "trace://"},
    }
    run = run_visits([Visit("balance"), Visit("balance", forget_card=True)], quick)
    assert [s["outcome"] for s in run.sessions()] == ["completed", "card_retained"]
    plays = run.prompts("forgotten_card")
    assert plays and plays[0]["t"] > [r["t"] for r in run.agent.recorder.of_type("customer")][1]
    failed = run_visits(
        [Visit("balance", forget_card=True)], quick, setup=lambda a: a.devices["proximity"].inject("failure")
    )
    assert failed.prompts("forgotten_card") == []
    assert [s["outcome"] for s in failed.sessions()] == ["card_retained"]
