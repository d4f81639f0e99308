"""The help video: the committed file decodes, the headless display records the
frames it shows, and the real OpenCV window plays it under Xvfb."""
import os
import shutil
import subprocess
import time

import cv2
import numpy as np
import pytest

from agent.runtime import HELP_VIDEO
from devices.base import DeviceContext, DeviceStatus
from devices.registry import create_device
from fsm.clock import Scheduler, VirtualClock
from fsm.loop import EventLoop


def test_help_video_is_small_and_decodes():
    assert HELP_VIDEO.exists() and HELP_VIDEO.stat().st_size <= 2 * 1024 * 1024
    cap = cv2.VideoCapture(str(HELP_VIDEO))
    assert cap.isOpened()
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert fps == pytest.approx(10, abs=0.5)
    assert len(frames) >= 50 and frames[0].shape == (360, 640, 3)
    assert np.abs(frames[0].astype(int) - frames[len(frames) // 2].astype(int)).mean() > 1


def _sim_display():
    clock = VirtualClock()
    sched = Scheduler(clock)
    events = []
    display = create_device("display", "sim://", DeviceContext(
        scheduler=sched, emit=lambda k, n, d: events.append((n, d))))
    display.open()
    return clock, sched, display, events


def test_sim_display_shows_frames_on_the_clock_loops_and_stops():
    clock, sched, display, events = _sim_display()
    n_frames = int(cv2.VideoCapture(str(HELP_VIDEO)).get(cv2.CAP_PROP_FRAME_COUNT))
    display.play_video(str(HELP_VIDEO))
    loop = EventLoop(sched, dispatch=lambda n, d: None)
    loop.run_until_idle(max_time=(n_frames + 5) / 10)
    shown = display.frames_shown
    assert shown[0] == (0.0, 0) and shown[1][0] == pytest.approx(0.1)
    assert [i for _, i in shown[:n_frames]] == list(range(n_frames))
    assert shown[n_frames][1] == 0  # looped
    display.stop_video()
    count = len(shown)
    clock.advance(10)
    sched.run_due()
    assert len(display.frames_shown) == count and not display.video_playing
    assert [n for n, _ in events] == ["video_started", "video_stopped"]


def test_sim_display_missing_video_is_a_fault_not_a_crash(tmp_path):
    _, _, display, events = _sim_display()
    display.play_video(str(tmp_path / "nope.mp4"))
    assert not display.video_playing
    assert display.faults["video_missing"].severity.value == "warning"


@pytest.fixture
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x720x24",
                             "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    number = os.read(read, 16).decode().strip()
    os.close(read)
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(5)


def test_opencv_window_plays_the_video_under_xvfb(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.setenv("QT_LOGGING_RULES", "*.debug=false;qt.qpa.*=false;default.warning=false")
    display = create_device("display", "opencv://?width=640&height=360", DeviceContext())
    display.open()
    try:
        display.show("menu", "Choose", options=["balance"])
        display.play_video(str(HELP_VIDEO))
        deadline = time.monotonic() + 10
        while display.frames_shown < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert display.frames_shown >= 10 and display.status is DeviceStatus.ONLINE
        display.stop_video()
        assert not display.video_playing
    finally:
        display.close()


def test_opencv_display_without_a_screen_raises_a_fault(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    display = create_device("display", "opencv://", DeviceContext())
    display.open()
    assert display.status is DeviceStatus.HARDWARE_ERROR
    assert "no_display" in display.faults


def test_opencv_display_with_an_unreachable_x_server_raises_a_fault(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":987")  # nothing listens there: Qt would abort the process
    display = create_device("display", "opencv://", DeviceContext())
    display.open()
    assert display.status is DeviceStatus.HARDWARE_ERROR
    assert "does not answer" in display.faults["no_display"].message
