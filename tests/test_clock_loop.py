"""The scheduler and the event loop on the virtual clock."""

import threading

from fsm.clock import RealClock, Scheduler, VirtualClock
from fsm.loop import EventLoop, Inbox


def test_timers_fire_in_deadline_order_and_cancel_is_final():
    clock = VirtualClock()
    sched = Scheduler(clock)
    fired = []
    sched.call_later(5, fired.append, "b")
    sched.call_later(1, fired.append, "a")
    dropped = sched.call_later(3, fired.append, "x")
    dropped.cancel()
    loop = EventLoop(sched, Inbox(), dispatch=lambda n: None)
    loop.run_until_idle()
    assert fired == ["a", "b"]
    assert clock.now() == 5


def test_a_60_second_timeout_passes_instantly():
    import time

    clock = VirtualClock()
    sched = Scheduler(clock)
    hit = []
    sched.call_later(60, hit.append, True)
    start = time.monotonic()
    EventLoop(sched, Inbox(), dispatch=lambda n: None).run_until_idle()
    assert hit == [True] and clock.now() == 60
    assert time.monotonic() - start < 0.5


def test_events_are_dispatched_before_the_clock_moves():
    clock = VirtualClock()
    sched = Scheduler(clock)
    seen = []
    loop = EventLoop(sched, Inbox(), dispatch=lambda n: seen.append((n, clock.now())))
    sched.call_later(10, lambda: loop.post("late"))
    loop.post("early")
    loop.run_until_idle()
    assert seen == [("early", 0), ("late", 10)]


def test_run_until_idle_stops_at_max_time():
    clock = VirtualClock()
    sched = Scheduler(clock)
    sched.call_later(100, lambda: None)
    EventLoop(sched, Inbox(), dispatch=lambda n: None).run_until_idle(max_time=50)
    assert clock.now() == 0


def test_negative_delay_is_refused():
    import pytest

    with pytest.raises(ValueError):
        Scheduler(VirtualClock()).call_later(-1, print)


def test_real_loop_takes_events_from_other_threads_and_stops():
    sched = Scheduler(RealClock())
    got = threading.Event()
    loop = EventLoop(sched, Inbox(), dispatch=lambda n: got.set() if n == "ping" else None)
    t = threading.Thread(target=loop.run_forever)
    t.start()
    threading.Thread(target=loop.post, args=("ping",)).start()
    assert got.wait(2)
    loop.stop()
    t.join(2)
    assert not t.is_alive()
