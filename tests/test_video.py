"""The help videos: the committed files decode, are what the script draws and differ per
language; the headless display records the frames it shows on the clock (and draws them only
when asked); the real OpenCV window plays them under Xvfb, checked on screenshots."""

import importlib.util
import shutil
import time

import cv2
import numpy as np
import pytest

from agent.runtime import HELP_VIDEO
from devices.base import DeviceContext, DeviceStatus
from devices.display import VIDEO_TEXTS, overlay_boxes, resolve_video, video_canvas
from devices.registry import create_device
from fsm.clock import Scheduler, VirtualClock
from fsm.loop import EventLoop, Inbox
from hw_mocks import sim_display
from hw_mocks.servers.wait import wait_for
from tests.screenshots import screenshot, window_rect

VIDEO_DIR = HELP_VIDEO.parent
LANGS = ("ja", "en", "zh", "ko")
_spec = importlib.util.spec_from_file_location("make_help_video", VIDEO_DIR / "make_help_video.py")
make_help_video = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_help_video)


def _frames(path, indices=None):
    """Decoded frames of a video: all of them, or {index: frame} for ``indices``."""
    cap = cv2.VideoCapture(str(path))
    out, i = ([] if indices is None else {}), 0
    while indices is None or i <= max(indices):
        ok, frame = cap.read()
        if not ok:
            break
        if indices is None:
            out.append(frame)
        elif i in indices:
            out[i] = frame
        i += 1
    cap.release()
    return out


def _mad(a, b) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


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
    display = create_device(
        "display", "sim://", DeviceContext(scheduler=sched, emit=lambda k, n, d: events.append((n, d)))
    )
    display.open()
    return clock, sched, display, events


def test_sim_display_shows_frames_on_the_clock_loops_and_stops():
    clock, sched, display, events = _sim_display()
    n_frames = int(cv2.VideoCapture(str(HELP_VIDEO)).get(cv2.CAP_PROP_FRAME_COUNT))
    display.play_video(str(HELP_VIDEO))
    loop = EventLoop(sched, Inbox(), dispatch=lambda n: None)
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


def test_per_language_videos_exist_decode_differ_and_are_what_the_script_draws(tmp_path):
    assert (VIDEO_DIR / "help.mp4").read_bytes() == (VIDEO_DIR / "help_ja.mp4").read_bytes()
    middles = {}
    for lang in LANGS:
        path = VIDEO_DIR / f"help_{lang}.mp4"
        assert path.stat().st_size <= 600 * 1024
        cap = cv2.VideoCapture(str(path))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10, abs=0.5)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 95
        cap.release()
        frames = _frames(path)
        assert len(frames) == 95 and frames[0].shape == (360, 640, 3)
        middles[lang] = frames[60]  # step 3: call the operator
    for a in LANGS:
        for b in LANGS:
            if a < b:  # the text panel differs between any two languages
                assert _mad(middles[a][70:330, 280:], middles[b][70:330, 280:]) > 2, (a, b)
    # the committed files are what the script draws (compared decoded: encoders change),
    # and the script is deterministic (byte for byte, with one encoder)
    make_help_video.main(["--out-dir", str(tmp_path / "a")])
    make_help_video.main(["--out-dir", str(tmp_path / "b"), "--lang", "ko"])
    assert (tmp_path / "a" / "help_ko.mp4").read_bytes() == (tmp_path / "b" / "help_ko.mp4").read_bytes()
    assert (tmp_path / "a" / "help.mp4").read_bytes() == (tmp_path / "a" / "help_ja.mp4").read_bytes()
    for lang in LANGS:
        drawn, committed = (_frames(d / f"help_{lang}.mp4", {0, 30, 60, 94}) for d in (tmp_path / "a", VIDEO_DIR))
        assert all(_mad(drawn[i], committed[i]) < 0.5 for i in committed), lang


def test_the_built_in_font_has_every_glyph_the_videos_and_overlays_use():
    assert set(make_help_video.TEXTS) == set(LANGS) == set(VIDEO_TEXTS)
    assert make_help_video.missing_glyphs("係員 \u0e01") == ["\u0e01"]  # Thai: not in the font
    for lang in LANGS:
        strings = make_help_video.all_strings(lang) + [
            VIDEO_TEXTS[lang]["hint"],
            VIDEO_TEXTS[lang]["countdown"].format(n=10),
        ]
        assert [s for s in strings if make_help_video.missing_glyphs(s)] == [], lang


def test_resolve_video_picks_the_language_file():
    base = str(VIDEO_DIR / "help.mp4")
    assert resolve_video(base) == (base, "ja")
    assert resolve_video(base, "en") == (str(VIDEO_DIR / "help_en.mp4"), "en")
    assert resolve_video(str(VIDEO_DIR / "help_zh.mp4"), "ko") == (str(VIDEO_DIR / "help_ko.mp4"), "ko")
    assert resolve_video(str(VIDEO_DIR / "help_zh.mp4")) == (str(VIDEO_DIR / "help_zh.mp4"), "zh")
    assert resolve_video(base, "fr") == (base, "ja")  # no French video: the default one, in Japanese


def test_sim_display_records_frames_at_the_native_rate_without_decoding(monkeypatch):
    clock, sched, display, events = _sim_display()
    display.play_video(str(HELP_VIDEO), language="en", cancel_at=30.0)  # warm the probe cache
    display.stop_video()
    opened = []
    real = cv2.VideoCapture
    monkeypatch.setattr(sim_display.cv2, "VideoCapture", lambda *a: opened.append(a) or real(*a))
    start, before = clock.now(), len(display.frames_shown)
    display.show_video(str(HELP_VIDEO), language="en", cancel_at=start + 30.0)
    EventLoop(sched, Inbox(), dispatch=lambda n: None).run_until_idle(max_time=start + 20.0)
    assert display.video_playing and display.video_language == "en"
    shown = display.frames_shown[before:]
    times = np.array([t for t, _ in shown]) - start
    assert len(shown) == 191 and times[-1] == pytest.approx(19.0)  # 10 fps, looped twice
    assert np.allclose(np.diff(times), 0.1) and np.allclose(times, np.arange(191) / 10)  # no drift
    assert [i for _, i in shown] == [k % 95 for k in range(191)]
    assert opened == [] and len(display.frames) == 0  # nothing decoded, nothing opened
    display.stop_video()
    assert events[-2] == ("video_started", {"path": str(VIDEO_DIR / "help_en.mp4"), "language": "en"})
    assert events[-1] == ("video_stopped", {"path": str(VIDEO_DIR / "help_en.mp4"), "frames": 191})


def test_sim_display_video_that_does_not_loop_ends_by_itself():
    clock, sched, display, events = _sim_display()
    display.play_video(str(VIDEO_DIR / "help_zh.mp4"), loop=False)
    EventLoop(sched, Inbox(), dispatch=lambda n: None).run_until_idle()
    assert not display.video_playing and clock.now() == pytest.approx(9.5)
    assert [i for _, i in display.frames_shown] == list(range(95))
    assert events[-1] == ("video_stopped", {"path": str(VIDEO_DIR / "help_zh.mp4"), "frames": 95})


def test_sim_display_memory_stays_bounded_on_a_long_run():
    clock, sched, display, _ = _sim_display()
    display.play_video(str(HELP_VIDEO))
    started = time.perf_counter()
    for _ in range(12):  # three hours of virtual time, looked at every quarter of an hour
        clock.advance(900)
        sched.run_due()
        assert len(display.frames_shown) <= 2 * display.frames_shown.cap
    display.stop_video()
    assert time.perf_counter() - started < 1.0
    assert display.frame_count == 3 * 3600 * 10 + 1
    assert display.frames_shown[-1] == (pytest.approx(10800.0), (3 * 3600 * 10) % 95)


def test_sim_display_decodes_and_draws_the_overlays_when_asked():
    clock = VirtualClock()
    sched = Scheduler(clock)
    display = create_device("display", "sim://?decode=1&keep=12", DeviceContext(scheduler=sched))
    display.open()
    display.play_video(str(HELP_VIDEO), language="ko", cancel_at=5.0)
    clock.advance_to(1.05)
    assert len(display.frames_shown) == 11
    kept = list(display.frames)
    assert [i for _, i, _ in kept] == list(range(11))
    expected = _frames(VIDEO_DIR / "help_ko.mp4", {0, 10})
    assert np.array_equal(kept[0][2], video_canvas(expected[0], (640, 360), "ko", 5))
    assert np.array_equal(kept[10][2], video_canvas(expected[10], (640, 360), "ko", 4))
    x, y, w, h = overlay_boxes((640, 360), "ko", 5)["countdown"]
    assert _mad(kept[0][2][y : y + h, x : x + w], kept[10][2][y : y + h, x : x + w]) > 0.5  # 5 s, then 4 s
    assert _mad(kept[10][2], expected[10]) > 1  # the overlays are there
    clock.advance_to(10.0)  # the video looped: frame 0 again, decoded after going back to the start
    assert display.frames_shown[-1] == (pytest.approx(10.0), 5)
    assert display.frames[-1][1] == 5 and len(display.frames) == 12
    assert np.array_equal(
        display.frames[-1][2], video_canvas(_frames(VIDEO_DIR / "help_ko.mp4", {5})[5], (640, 360), "ko", 0)
    )
    display.close()
    assert not display.video_playing


# -- the real window under Xvfb -------------------------------------------------


@pytest.fixture
def window(xvfb):
    if shutil.which("xwd") is None or shutil.which("xwininfo") is None:
        pytest.skip("xwd and xwininfo (x11-apps, x11-utils) are needed for screenshots")
    events = []
    display = create_device(
        "display", "opencv://?width=640&height=360", DeviceContext(emit=lambda k, n, d: events.append((n, d)))
    )
    display.open()
    try:
        display.show("menu", "Choose", options=["balance"])
        wait_for(lambda: display.screen_shown_at > 0)
        wait_for(lambda: window_rect(xvfb)[2:] == (640, 360))
        x, y, w, h = window_rect(xvfb)
        menu = display._canvas("menu", "Choose", {"options": ["balance"]})
        for _ in range(3):  # Qt may miss the new window's MapNotify and never paint it
            try:
                wait_for(lambda: _mad(screenshot(xvfb)[y : y + h, x : x + w], menu) < 2, timeout=3)
                break
            except AssertionError:
                display.recreate_window()
        else:
            pytest.fail("the window never showed the menu")
        yield display, events
    finally:
        display.close()


def test_opencv_window_plays_the_video_under_xvfb(xvfb):
    display = create_device("display", "opencv://?width=640&height=360", DeviceContext())
    display.open()
    try:
        display.show("menu", "Choose", options=["balance"])
        display.play_video(str(HELP_VIDEO))
        wait_for(lambda: display.frames_shown >= 10, 10, 0.05, "10 frames shown")
        assert display.status is DeviceStatus.ONLINE
        display.stop_video()
        assert not display.video_playing
    finally:
        display.close()


def test_opencv_window_shows_the_frames_with_overlays_and_stops_at_once(xvfb, window):
    display, events = window
    x, y, w, h = window_rect(xvfb)
    menu = display._canvas("menu", "Choose", {"options": ["balance"]})

    display.show_video(str(HELP_VIDEO), language="ja", cancel_at=time.monotonic() + 4.5)
    frames = _frames(VIDEO_DIR / "help_ja.mp4")
    box = overlay_boxes((640, 360), "ja", 4)["countdown"]

    def matched_shot():
        """A screenshot and the frame record it shows: the best of the frames shown around it."""
        for _ in range(10):
            before = display.frames_shown
            shot = screenshot(xvfb)[y : y + h, x : x + w]
            recent = list(display.shown)[-(display.frames_shown - before + 3) :]
            scored = sorted((_mad(shot, video_canvas(frames[f.index], (640, 360), "ja", f.left)), f) for f in recent)
            if scored and scored[0][0] < 3:
                return shot, scored[0][1]
        pytest.fail(f"the window shows none of the frames just shown (best {scored[0][0]:.1f})")

    wait_for(lambda: display.frames_shown >= 3)
    shot1, first = matched_shot()
    time.sleep(1.1)
    shot2, second = matched_shot()
    assert first.left is not None and second.left is not None and second.left < first.left  # counting down
    bx, by, bw, bh = box
    assert _mad(shot1[by : by + bh, bx : bx + bw], shot2[by : by + bh, bx : bx + bw]) > 0.5
    assert _mad(shot2, frames[second.index]) > 1  # the overlays are on the screen, not the bare frame

    shown = list(display.shown)
    dues = np.array([f.due for f in shown])
    k = np.round((dues - dues[0]) * 10)
    assert np.allclose(dues - dues[0], k / 10)  # due on an absolute 10 fps schedule
    assert np.median([f.t - f.due for f in shown]) < 0.02  # and shown on time
    assert display.frames_dropped == int(k[-1]) + 1 - len(shown)  # every gap is counted as dropped

    stopped = time.monotonic()
    display.stop_video()
    assert not display.video_playing
    while True:
        taken = time.monotonic()
        if _mad(screenshot(xvfb)[y : y + h, x : x + w], menu) < 2:
            break
        assert taken - stopped < 1.0, "the menu did not come back"
    assert taken - stopped < 0.1  # the first screenshot after the stop shows it
    assert display.screen_shown_at - stopped < 0.1
    assert [n for n, _ in events if n.startswith("video")] == ["video_started", "video_stopped"]
    assert events[-1][1]["frames"] == display.frames_shown


def test_opencv_window_goes_fullscreen_without_a_window_manager(xvfb):
    display = create_device("display", "opencv://?fullscreen=1&width=640&height=360", DeviceContext())
    display.open()
    try:
        wait_for(lambda: display.screen_shown_at > 0)
        assert display.size == (1280, 720)  # drawn at the screen's size
        wait_for(lambda: window_rect(xvfb) == (0, 0, 1280, 720))
        display.play_video(str(HELP_VIDEO), language="zh")
        wait_for(lambda: display.frames_shown >= 2)
        frame = _frames(VIDEO_DIR / "help_zh.mp4", {display.shown[-1].index})
        assert len(frame) == 1  # the Chinese file plays
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
