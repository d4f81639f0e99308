"""Device command queues: one at a time, in order, one completion each, never blocking the loop."""

import threading

from devices.base import DeviceError, Fault, Severity
from devices.commands import Activity, CommandQueue, Completion, CompletionCode, WorkerScheduler
from fsm.clock import RealClock, Scheduler, VirtualClock
from fsm.loop import EventLoop, Inbox

WAIT = 10  # seconds a test waits for something that should happen at once


def collect():
    done: list[Completion] = []
    arrived = threading.Condition()

    def on_complete(completion: Completion) -> None:
        with arrived:
            done.append(completion)
            arrived.notify_all()

    def wait(n: int) -> list[Completion]:
        with arrived:
            assert arrived.wait_for(lambda: len(done) >= n, WAIT), f"only {len(done)} of {n} completions"
        return done

    return on_complete, wait


def test_commands_run_one_at_a_time_in_order_with_one_completion_each():
    queue = CommandQueue("dispenser")
    running, order, overlap = [], [], []
    on_complete, wait = collect()

    def command(i):
        def run():
            if running:
                overlap.append(i)
            running.append(i)
            order.append(i)
            running.remove(i)
            return i * 10

        return run

    ids = [queue.submit(f"c{i}", command(i), on_complete) for i in range(20)]
    done = wait(20)
    queue.stop()
    assert order == list(range(20)) and not overlap
    assert [c.id for c in done] == ids and [c.result for c in done] == [i * 10 for i in range(20)]
    assert all(c.code is CompletionCode.SUCCESS and c.ok for c in done)


def test_failures_complete_with_an_xfs_code_and_the_fault():
    queue = CommandQueue("card_reader")
    on_complete, wait = collect()

    def fail(code):
        def run():
            raise DeviceError(Fault("card_reader", code, Severity.ERROR, "boom"))

        return run

    def bug():
        raise ZeroDivisionError("driver bug")

    queue.submit("eject", fail("jam"), on_complete)
    queue.submit("read", fail("no_response"), on_complete)
    queue.submit("read", fail("port_unavailable"), on_complete)
    queue.submit("read", bug, on_complete)
    done = wait(4)
    queue.stop()
    assert [c.code for c in done] == [
        CompletionCode.HARDWARE_ERROR,
        CompletionCode.TIMEOUT,
        CompletionCode.DEVICE_NOT_READY,
        CompletionCode.HARDWARE_ERROR,
    ]
    assert [c.fault_code for c in done[:3]] == ["jam", "no_response", "port_unavailable"]
    assert done[3].fault is None and isinstance(done[3].error, ZeroDivisionError)


def test_a_queued_command_can_be_cancelled_a_running_one_cannot():
    queue = CommandQueue("dispenser")
    on_complete, wait = collect()
    release, started = threading.Event(), threading.Event()

    def long_command():
        started.set()
        release.wait(WAIT)
        return "done"

    running = queue.submit("dispense", long_command, on_complete)
    assert started.wait(WAIT)
    queued = queue.submit("present", lambda: "presented", on_complete)
    assert queue.cancel(running) is False
    assert queue.cancel(queued) is True
    release.set()
    done = wait(2)
    queue.stop()
    assert [(c.command, c.code) for c in done] == [
        ("dispense", CompletionCode.SUCCESS),
        ("present", CompletionCode.CANCELED),
    ]


def test_the_real_loop_handles_events_while_a_command_runs():
    """A presence event is dispatched while the dispenser is still busy: the loop never waits."""
    inbox, activity = Inbox(), Activity()
    queue = CommandQueue("dispenser", activity)
    handled, release = [], threading.Event()
    seen_presence = threading.Event()

    def dispatch(event):
        handled.append(event)
        if event == "presence":
            seen_presence.set()

    loop = EventLoop(Scheduler(RealClock()), inbox, dispatch)
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    queue.submit("dispense", lambda: release.wait(WAIT), inbox.post)
    inbox.post("presence")
    assert seen_presence.wait(WAIT)
    assert not any(isinstance(e, Completion) for e in handled)  # the dispense is still running
    release.set()
    queue.stop()
    loop.stop()
    thread.join(WAIT)
    assert isinstance(handled[-1], Completion) and handled[-1].ok


def test_the_virtual_loop_lets_device_work_finish_before_time_moves():
    clock = VirtualClock()
    sched = Scheduler(clock)
    inbox, activity = Inbox(), Activity()
    queue = CommandQueue("card_reader", activity)
    seen = []
    loop = EventLoop(sched, inbox, lambda e: seen.append((getattr(e, "command", e), clock.now())), activity=activity)
    worker_timers = WorkerScheduler(sched, queue)
    on_worker = []
    worker_timers.call_later(5, lambda: on_worker.append(threading.current_thread().name))

    def slow():
        threading.Event().wait(0.05)  # real time passes on the worker; virtual time does not
        return 1

    sched.call_later(2, lambda: queue.submit("read", slow, inbox.post))
    sched.call_later(3, inbox.post, "after")
    loop.run_until_idle()
    queue.stop()
    assert seen == [("read", 2), ("after", 3)]
    assert on_worker == ["dev-card_reader"] and clock.now() == 5


def test_a_session_runs_every_device_command_off_the_loop_thread_and_never_sleeps_there(monkeypatch):
    """A withdrawal and a deposit on the emulated rig with worker threads, as on the real clock:
    the drivers' commands run on their devices' workers; nothing on the loop thread sleeps."""
    import time

    from hw_mocks.customer import Visit
    from tests.helpers import run_visits

    loop_thread = threading.current_thread()  # the virtual clock's loop runs on the test's thread
    slept_on_loop = []
    real_sleep = time.sleep

    def sleep(seconds):
        if threading.current_thread() is loop_thread:
            slept_on_loop.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    threads: dict[str, set[str]] = {}

    def record(agent):
        for kind, names in {
            "dispenser": ("dispense", "present", "self_test"),
            "card_reader": ("eject", "read", "enable_entry", "self_test"),
            "chip": ("read_card",),
            "acceptor": ("store",),
        }.items():
            device = agent.devices[kind]
            for name in names:
                inner = getattr(device, name)

                def wrapped(*args, _inner=inner, _key=f"{kind}.{name}", **kwargs):
                    threads.setdefault(_key, set()).add(threading.current_thread().name)
                    return _inner(*args, **kwargs)

                setattr(device, name, wrapped)

    run = run_visits(
        [Visit("withdrawal", amount=30_000), Visit("deposit", notes={10_000: 1})], setup=record, workers=True
    )
    outcomes = [s["outcome"] for s in run.sessions()]
    assert outcomes == ["completed", "completed"]
    assert {"dispenser.dispense", "dispenser.present", "card_reader.eject", "chip.read_card", "acceptor.store"} <= set(
        threads
    )
    assert all(names == {f"dev-{key.split('.')[0]}"} for key, names in threads.items()), threads
    assert slept_on_loop == []


def _printed(workers: bool, name: str) -> list[str]:
    import json

    from agent.scenarios import SCENARIOS, ScenarioRun
    from tests.helpers import make_agent

    scenario = SCENARIOS[name]
    agent = make_agent(scenario.config, workers=workers)
    agent.warm_prompts()
    assert ScenarioRun(scenario, agent).run() == []
    agent.stop()
    # the boot number is random without an outbox; an in-memory journal signs its checkpoints
    # with a key of its own run (the chain head they sign is the same)
    drop = ("boot", "id", "ts", "key_id", "signature")
    return [
        json.dumps(
            {k: (({x: y for x, y in v.items() if x not in drop}) if k == "payload" else v) for k, v in r.items()},
            default=repr,
            sort_keys=True,
        )
        for r in agent.recorder.records
    ]


def test_worker_threads_and_inline_commands_give_the_same_scenario():
    """On the virtual clock a scenario is the same, record for record, whether the device
    commands run on worker threads or inline; and the same on every run."""
    for name in ("withdrawal", "dispenser-jam", "forgotten-card-deposit"):
        inline = _printed(False, name)
        assert inline == _printed(False, name)
        assert _printed(True, name) == inline, name
