"""The help video on the real OpenCV window (under Xvfb), side by side in one run.

1. Inactivity timeout (``play_video`` called) to the first video frame on the
   window, over several rounds (target: <= 150 ms).
2. Sustained playback at 720p at the file's own frame rate: frames shown and
   dropped, and the CPU used (target: no dropped frame, at most half a core),
   for the help video scaled to 1280x720 at its native 10 fps, and at 30 fps.

    .venv/bin/python bench/video_playback.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from devices.base import DeviceContext  # noqa: E402
from devices.display import Display  # noqa: E402
from devices.registry import create_device  # noqa: E402
from hw_mocks.servers import xvfb  # noqa: E402

HELP = ROOT / "assets" / "video" / "help_ja.mp4"


def start_xvfb() -> subprocess.Popen:
    """An Xvfb on a free display; sets DISPLAY."""
    proc, display = xvfb.start_xvfb()
    os.environ["DISPLAY"] = display
    os.environ["QT_LOGGING_RULES"] = "*.debug=false;qt.qpa.*=false;default.warning=false"
    return proc


def scaled(path: Path, out: Path, fps: float, size=(1280, 720)) -> Path:
    """The help video at ``size`` and ``fps`` (frames repeated to reach the rate)."""
    cap = cv2.VideoCapture(str(path))
    native = cap.get(cv2.CAP_PROP_FPS)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    repeat = max(1, round(fps / native))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        for _ in range(repeat):
            writer.write(frame)
    writer.release()
    cap.release()
    return out


def first_frame_latency(display, path: Path, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        before = len(display.shown)
        last = display.shown[-1] if display.shown else None
        start = time.monotonic()
        display.play_video(str(path), loop=True)
        deadline = start + 3
        while time.monotonic() < deadline:
            if display.shown and display.shown[-1] is not last and len(display.shown) != before:
                break
            time.sleep(0.001)
        shown = [f for f in display.shown if f[0] >= start]
        out.append(shown[0][0] - start if shown else float("inf"))
        display.stop_video()
        time.sleep(0.2)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (here: the X server)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sustained(display, path: Path, seconds: float, xvfb_pid: int) -> dict:
    shown, dropped = display.frames_shown, display.frames_dropped
    cpu, x_cpu, wall = time.process_time(), cpu_seconds(xvfb_pid), time.monotonic()
    display.play_video(str(path), loop=True)
    time.sleep(seconds)
    display.stop_video()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    x_cpu = cpu_seconds(xvfb_pid) - x_cpu
    time.sleep(0.2)
    fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS)
    return {
        "fps": fps,
        "shown": display.frames_shown - shown,
        "dropped": display.frames_dropped - dropped,
        "expected": int(seconds * fps),
        "cores": cpu / wall,
        "x_cores": x_cpu / wall,
    }


def run(rounds: int = 15, seconds: float = 10.0) -> dict:
    xvfb = start_xvfb()
    display = create_device("display", "opencv://?width=1280&height=720", DeviceContext())
    assert isinstance(display, Display)
    try:
        display.open()
        display.show("welcome", "")
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:
            v10 = scaled(HELP, Path(tmp) / "help720p10.mp4", 10)
            v30 = scaled(HELP, Path(tmp) / "help720p30.mp4", 30)
            latency = first_frame_latency(display, v10, rounds)
            return {
                "latency": latency,
                "p10": sustained(display, v10, seconds, xvfb.pid),
                "p30": sustained(display, v30, seconds, xvfb.pid),
            }
    finally:
        display.close()
        xvfb.terminate()
        xvfb.wait(5)


def report(r: dict) -> None:
    lat = sorted(r["latency"])
    print(
        f"help video: inactivity timeout -> first frame on the window       : "
        f"{statistics.median(lat) * 1000:6.1f} ms median (max {lat[-1] * 1000:.1f}; target <= 150 ms)"
    )
    for key in ("p10", "p30"):
        s = r[key]
        print(
            f"help video: 720p at {s['fps']:.0f} fps for 10 s on the real window           : "
            f"{s['shown']} shown of {s['expected']}, {s['dropped']} dropped, {s['cores']:.2f} cores"
            f" (+ {s['x_cores']:.2f} in the X server; target: none dropped, <= 0.5 core)"
        )


if __name__ == "__main__":
    report(run())
