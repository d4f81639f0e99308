"""Write the scripted HC-SR04 distance traces in this folder (``python make_traces.py``).

Each trace is 10 Hz ``t,distance`` rows (metres; empty = lost echo), as a
gpiozero DistanceSensor with ``max_distance=2.0`` would read them: anything
at or beyond 2.0 m reads exactly 2.0. A scene says where the nearest person
is at each moment (None: nobody in the beam); :func:`measure` adds what a
real sensor adds -- sway, jitter, lost echoes. Seeded: the output never
changes unless this script does. The tests in ``tests/test_presence.py``
rely on the timings written in each scene's docstring.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
RATE = 10  # rows per second
MAX = 2.0  # the sensor's max_distance: readings are pinned here
STAND = 0.45  # where a customer stands
FAR = 2.6  # where a walk away ends
WALK = 1.2  # m/s


def walk(t: float, t0: float, d0: float, d1: float) -> float:
    """Position at ``t`` of someone walking from d0 (at t0) towards d1."""
    travelled = max(0.0, t - t0) * WALK
    return min(d1, d0 + travelled) if d1 >= d0 else max(d1, d0 - travelled)


def measure(d: float | None, t: float, rng: random.Random, lost: float = 0.02) -> float | None:
    if d is None or d >= MAX:
        return MAX
    if rng.random() < lost:
        return None
    d += 0.02 * math.sin(2 * math.pi * t / 3.3) + rng.gauss(0.0, 0.008)
    return min(max(d, 0.0), MAX)


def walking_away(t: float, rng: random.Random):
    """A customer stands at 0.45 m from the start, walks away at 12.0 s (past 0.9 m at
    12.4 s, out of range at 13.3 s); nobody from then to the end (30 s)."""
    if t < 12.0:
        return measure(STAND, t, rng)
    d = walk(t, 12.0, STAND, FAR)
    return measure(None if d >= FAR else d, t, rng)


def lingering(t: float, rng: random.Random):
    """Walks up at 2.0 s (closer than 0.6 m at 3.7 s), stands at 0.45 m; at 10 s steps
    back into the band between enter and leave (0.80 m, sways) until 20 s, with one
    0.3 s step out to 0.97 m at 16.0 s; back to 0.5 m at 20 s, leans in to 0.1 m at
    24.0-25.0 s (the sensor reads 0); walks away at 32.0 s (past 0.9 m at 32.3 s).
    One presence throughout: True after 3.7 s, False after 32.3 s."""
    if t < 2.0:
        return measure(None, t, rng)
    if t < 10.0:
        return measure(walk(t, 2.0, FAR, STAND), t, rng)
    if t < 20.0:
        if 16.0 <= t < 16.3:
            return measure(0.97, t, rng, lost=0.0)
        return measure(0.80 + 0.04 * math.sin(2 * math.pi * t / 4.0), t, rng)
    if t < 32.0:
        if 24.0 <= t < 25.0:
            return 0.0  # too close for the HC-SR04: stuck at 0
        return measure(0.50, t, rng)
    d = walk(t, 32.0, 0.50, FAR)
    return measure(None if d >= FAR else d, t, rng)


# (time in the beam, seconds in the beam, distance): people walking past
PASSERS = [
    (3.0, 1.0, 1.40),  # beyond leave: never near
    (8.0, 0.3, 0.50),  # close but brief: shorter than the debounce
    (13.0, 0.4, 0.55),  # close but brief
    (18.0, 0.8, 0.75),  # in the band: never closer than enter
    (24.0, 2.0, 0.50),  # stops to glance at the screen: the one presence, about 2 s long
    (31.0, 0.3, 0.35),  # two people close behind each other, each brief
    (31.6, 0.3, 0.45),
]


def passers_by(t: float, rng: random.Random):
    """Nobody stands at the ATM; people walk past (PASSERS). Only the one who stops at
    24.0 s for 2.0 s is near long enough to count: one presence of about 2 s."""
    for t_in, dwell, d in PASSERS:
        if t_in <= t < t_in + dwell - 1e-9:
            return measure(d, t, rng)
    return measure(None, t, rng)


def sensor_glitch(t: float, rng: random.Random):
    """Empty hall pinned at max (with a 0 out of the blue at 1.5 s); a customer walks up
    at 3.0 s (closer than 0.6 m at 4.7 s) and stands at 0.45 m until 26.0 s through:
    readings stuck at 0 at 8.0-10.0 s (leaning in), single readings pinned at max at
    11.0, 12.5, 13.2 s, lost echoes at 14.0-14.4 s, then nothing at all (every echo lost)
    at 16.0-19.5 s. Walks away at 26.0 s (past 0.9 m at 26.4 s); another 0 out of the
    blue at 33.0 s in the empty hall; 40 s."""
    if t < 3.0:
        return 0.0 if abs(t - 1.5) < 1e-6 else MAX
    if t < 26.0:
        if 8.0 <= t < 10.0:
            return 0.0
        if any(abs(t - s) < 1e-6 for s in (11.0, 12.5, 13.2)):
            return MAX
        if 14.0 <= t < 14.5 or 16.0 <= t < 19.5:
            return None
        return measure(walk(t, 3.0, FAR, STAND), t, rng, lost=0.03)
    if abs(t - 33.0) < 1e-6:
        return 0.0
    d = walk(t, 26.0, STAND, FAR)
    return measure(None if d >= FAR else d, t, rng)


SCENES = {
    "walking-away": (walking_away, 30.0),
    "lingering": (lingering, 40.0),
    "passers-by": (passers_by, 40.0),
    "sensor-glitch": (sensor_glitch, 40.0),
}


def render(name: str) -> str:
    scene, duration = SCENES[name]
    rng = random.Random(name)
    doc = " ".join((scene.__doc__ or "").split())
    lines = [f"# {name}: {doc}", "# written by make_traces.py; 10 Hz, metres, empty = lost echo", "t,distance"]
    for i in range(int(duration * RATE)):
        t = round(i / RATE, 1)
        d = scene(t, rng)
        lines.append(f"{t:.1f}," + ("" if d is None else f"{d:.3f}"))
    return "\n".join(lines) + "\n"


def main() -> None:
    for name in SCENES:
        (HERE / f"{name}.csv").write_text(render(name))


if __name__ == "__main__":
    main()
