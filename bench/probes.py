"""Every touch of the firmware's internal API made by bench/presence_delay.py.

The benchmark runs against two trees whose internals differ (events as
``post(name, **data)`` on the blocking design, typed event objects and
devices behind command queues later), so everything version-dependent lives
here, each with a fallback between the old and new shapes. To adapt to a new
tree, change only this file.

- :func:`make_agent` -- an agent on the real clock, ``dispenser`` as given,
  the other devices ``sim://``, one cassette of 1,000 notes.
- :func:`start` -- open it with a simulated customer who will withdraw
  ``notes`` notes, run the loop on its thread, wait until ready.
- :func:`on_handled` -- call back when the state machine takes an event.
- :func:`post_presence` -- a presence reading, as a sensor thread emits it.
- :func:`emulator_of` -- the in-process emulator of an ``+emu`` dispenser.
"""

from __future__ import annotations

import inspect
import threading
import time

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from fsm.clock import RealClock
from hw_mocks.customer import Customer, Visit

NOTE = 1_000  # the denomination of the one cassette
SEQ = "bench_seq"  # the key that numbers the benchmark's presence events


def api_shape() -> str:
    """'kwargs' when the loop takes ``post(name, **data)``, else 'typed'."""
    from fsm.loop import EventLoop

    params = list(inspect.signature(EventLoop.post).parameters.values())
    return "kwargs" if any(p.kind is p.VAR_KEYWORD for p in params) else "typed"


def make_agent(dispenser: str, cassette_count: int = 2_000) -> Agent:
    cfg = configmod.from_dict(
        {
            "devices": {"dispenser": dispenser},
            "cassettes": [{"id": "A", "denomination": NOTE, "count": cassette_count, "low": 10}],
        }
    )
    cfg.journal_path = ":memory:"
    clock = RealClock()
    return Agent(cfg, clock, Recorder(clock, keep=False))


def start(agent: Agent, notes: int, arrive: float = 1.0, think: float = 0.05, timeout: float = 15.0) -> None:
    """Open the devices, let a customer come ``arrive`` s later to withdraw ``notes``
    notes (and leave them in the throat), start the loop thread, wait for idle.
    The customer is scheduled before the loop thread runs: timers are loop-only."""
    ready = threading.Event()
    agent.recorder.sinks.append(
        lambda r: ready.set() if r.get("type") == "state" and r.get("state") == "idle" else None
    )
    agent.start()
    visit = Visit("withdrawal", amount=notes * NOTE, think=think, forget_cash=True, label="bench")
    Customer(agent, visit).arrive(arrive)
    agent.start_thread()
    if not ready.wait(timeout):
        raise RuntimeError("the agent did not reach idle")


def on_handled(agent: Agent, callback) -> None:
    """``callback(seq, t)`` with time.monotonic() when the state machine takes one
    of the benchmark's presence events (wraps the loop's dispatcher)."""
    loop = agent.loop
    inner = loop.dispatch

    def dispatch(*args, **kwargs):
        seq = _find_seq(args, kwargs)
        if seq is not None:
            callback(seq, time.monotonic())
        return inner(*args, **kwargs)

    loop.dispatch = dispatch


def _find_seq(args, kwargs):
    """The benchmark's number in an event, in either shape: ('device', {kind,
    event, data: {bench_seq}}) or an object with a ``data``/attributes."""
    todo, seen = [*args, *kwargs.values()], 0
    while todo and seen < 16:
        obj, seen = todo.pop(), seen + 1
        if isinstance(obj, dict):
            if SEQ in obj:
                return obj[SEQ]
            todo.extend(v for v in obj.values() if isinstance(v, dict) or hasattr(v, "__dict__"))
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            if hasattr(obj, SEQ):
                return getattr(obj, SEQ)
            todo.extend(v for v in vars(obj).values() if isinstance(v, dict))
    return None


def post_presence(agent: Agent, seq: int) -> None:
    """A customer stands at the ATM: the proximity device emits it from this thread."""
    agent.devices["proximity"].emit("presence", present=True, **{SEQ: seq})


def emulator_of(agent: Agent):
    """The emulator behind an ``lcdm2000+emu://`` dispenser (None for a plain port)."""
    device: object = agent.devices["dispenser"]
    for _ in range(3):  # a command-queue wrapper may hold the driver
        if hasattr(device, "emulator"):
            return device.emulator
        inner = next(
            (getattr(device, a) for a in ("device", "inner", "_device", "wrapped") if hasattr(device, a)), None
        )
        if inner is None:
            return None
        device = inner
    return None


def stop(agent: Agent) -> None:
    agent.stop()
