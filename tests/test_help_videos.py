"""The help of the screen where the customer is stuck: one video per topic and language, drawn
at the display's size into the cache, every text inside the frame, and a countdown that says
the card will be returned."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from agent.help_videos import HelpVideos
from agent.resources import HELP_VIDEO
from devices.display import VIDEO_TEXTS, overlay_boxes
from fsm.screens import HELP_TOPICS
from hw_mocks.customer import Visit
from hw_mocks.sim_display import probe
from tests.helpers import run_visits
from tests.test_video import make_help_video

LANGS = ("ja", "en", "zh", "ko")
TOPICS = make_help_video.TOPICS
SIZES = [(640, 360), (1280, 720), (800, 600)]


def test_every_input_state_has_a_help_topic_the_script_draws():
    assert set(HELP_TOPICS.values()) <= set(TOPICS)
    assert {"pin", "amount", "deposit", "menu"} <= set(HELP_TOPICS.values())
    for lang in LANGS:
        titles = {make_help_video.topic_texts(lang, topic)[0] for topic in TOPICS}
        assert len(titles) == len(TOPICS), lang  # each topic is its own help
        assert [s for s in make_help_video.all_strings(lang) if make_help_video.missing_glyphs(s)] == [], lang


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_text_of_any_help_runs_off_the_frame(size):
    """The band along the right and bottom edges holds only the background and the title bar."""
    w, h = size
    view = make_help_video.View(size)
    right = int(view.ox + (make_help_video.W - 18) * view.k)
    allowed = np.array([make_help_video.BG, make_help_video.BAR], np.int16)
    for topic in TOPICS:
        for lang in LANGS:
            for n in range(0, int(make_help_video.duration(topic) * make_help_video.FPS), 3):
                img = make_help_video.frame(n, lang, topic, size)
                assert img.shape == (h, w, 3)
                band = img[:, right:].reshape(-1, 3).astype(np.int16)
                stray = ~(band[:, None, :] == allowed[None]).all(axis=2).any(axis=1)
                assert not stray.any(), (topic, lang, n)


def test_the_countdown_says_the_card_will_be_returned():
    assert VIDEO_TEXTS["en"]["countdown"].format(n=33) == "Your card will be returned in 33 s"
    for lang in LANGS:
        assert "{n}" in VIDEO_TEXTS[lang]["countdown"]
        for size in SIZES:
            x, y, bw, bh = overlay_boxes(size, lang, 33)["countdown"]
            assert x >= 0 and x + bw <= size[0] and y >= 0, (lang, size)


def test_a_screens_help_is_drawn_once_at_the_displays_size(tmp_path):
    size = [(800, 450)]
    videos = HelpVideos(tmp_path, lambda: size[0], HELP_VIDEO, wait=False)
    assert videos.path("pin", "ko") == str(HELP_VIDEO)  # not drawn yet: the general help meanwhile
    assert videos.path("general", "ko") == str(HELP_VIDEO)
    started = time.perf_counter()
    videos.warm(["pin"], ["ko"])
    took = time.perf_counter() - started
    path = videos.path("pin", "ko")
    assert path.endswith("/800x450/help_pin_ko.mp4") and path.startswith(str(tmp_path))
    fps, count, w, h = probe(path)
    assert (w, h) == (800, 450) and fps == pytest.approx(10) and count == 75
    assert (tmp_path / path).stat().st_size < 1024 * 1024 and took < 10
    mtime = (tmp_path / path).stat().st_mtime_ns
    videos.warm(["pin"], ["ko"])
    assert (tmp_path / path).stat().st_mtime_ns == mtime  # drawn once
    size[0] = (1024, 768)  # another display: drawn at its size, at once when asked to wait
    waiting = HelpVideos(tmp_path, lambda: size[0], HELP_VIDEO, wait=True)
    assert waiting.path("pin", "ko").endswith("/1024x768/help_pin_ko.mp4")
    cap = cv2.VideoCapture(waiting.path("pin", "ko"))
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (768, 1024, 3)


def test_stopping_ends_the_drawing_between_frames_and_leaves_no_half_file(tmp_path):
    videos = HelpVideos(tmp_path, lambda: (1280, 720), HELP_VIDEO, wait=False)
    thread = videos.warm_in_background(["pin", "amount", "deposit", "menu"], LANGS)
    time.sleep(0.3)  # well inside the first of sixteen videos
    started = time.perf_counter()
    videos.stop()
    assert not thread.is_alive() and time.perf_counter() - started < 1.0
    drawn = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(drawn) < 16 and all(name.startswith("help_") for name in drawn), drawn  # no temporary file


def test_atm_run_with_a_window_stops_cleanly_while_the_help_is_being_drawn(tmp_path, xvfb):
    """OpenCV's encoder still running at exit aborts the process (SIGABRT, exit 134)."""
    import os
    import subprocess
    import sys

    config = tmp_path / "atm.toml"
    config.write_text(f'[devices]\ndisplay = "opencv://"\n[speech]\ncache_dir = "{tmp_path / "cache"}"\n')
    atm = os.path.join(os.path.dirname(sys.executable), "atm")
    proc = subprocess.run(
        [atm, "run", "--config", str(config), "--no-customers", "--duration", "1", "--journal", ":memory:"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.rstrip().endswith("stopped")


@pytest.mark.parametrize(
    "visit, topic",
    [
        (Visit("balance", idle_at="enter_pin", idle_for=20.0), "pin"),
        (Visit("balance", idle_at="menu", idle_for=20.0), "menu"),
        (Visit("withdrawal", idle_at="enter_amount", idle_for=20.0), "amount"),
        (Visit("deposit", idle_at="insert_notes", idle_for=20.0), "deposit"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.idle_at,
)
def test_a_stuck_customer_sees_the_help_of_that_screen_at_the_displays_size(visit, topic):
    run = run_visits([visit], {"devices": {"display": "sim://?width=800&height=450"}})
    started = run.videos("started")
    assert len(started) == 1
    path = started[0]["path"]
    assert path.endswith(f"/800x450/help_{topic}_ja.mp4"), path
    assert probe(path)[2:] == (800, 450)
