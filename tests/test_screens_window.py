"""Every screen in every language as drawn: all its text inside the display's margin, at
several resolutions, with every glyph in the font; and on the real OpenCV window under
Xvfb, where screenshots show each screen's text."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from agent.prompts import ASSETS_DIR, PROMPT_IDS, Catalogue
from devices.base import DeviceContext
from devices.display.text import BACKGROUND, margin, missing_glyphs, screen_canvas, screen_layout
from devices.registry import create_device
from fsm.screens import SCREENS
from hw_mocks.servers.wait import wait_for
from tests.screenshots import screenshot, window_rect
from tests.test_screens import LANGUAGES, example_fields

SIZES = [(640, 360), (1280, 720), (800, 600), (320, 240)]


def every_screen() -> list[tuple[str, str, dict, str]]:
    """(language, screen, fields, text) of every screen and of every prompt shown as text."""
    catalogue = Catalogue.load(ASSETS_DIR)
    cases = []
    for lang in LANGUAGES:
        for screen in SCREENS:
            fields = example_fields(screen)
            cases.append((lang, screen, fields, catalogue.screen_text(screen, lang, fields)))
        for pid in PROMPT_IDS:  # the prompter's fallback when a prompt has no audio
            cases.append((lang, "prompt", {"prompt": pid}, catalogue.display(pid, lang)))
    return cases


CASES = every_screen()


def outside_margin(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The pixels of the band along the edges, where no text may be."""
    w, h = size
    m = margin(size)
    band = np.ones((h, w), bool)
    band[m : h - m, m : w - m] = False
    return image[band]


def ink(image: np.ndarray) -> np.ndarray:
    """Where the image is not background (text, the rule)."""
    return np.abs(image.astype(np.int16) - np.array(BACKGROUND, np.int16)).max(axis=2) > 40


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_text_runs_past_the_margin_at_any_size(size):
    w, h = size
    m = margin(size)
    for lang, screen, _, text in CASES:
        lines = screen_layout(size, text)
        assert len(lines) >= len([p for p in text.split("\n") if p.strip()]), (lang, screen)
        for line in lines:
            x, y, bw, bh = line.box
            assert m <= x and x + bw <= w - m and m <= y and y + bh <= h - m, (lang, screen, size, line)
        image = screen_canvas(size, text)
        assert (outside_margin(image, size) == BACKGROUND).all(), (lang, screen, size)
        assert ink(image).mean() > 0.002, (lang, screen, size)  # something is written


def test_every_screen_text_is_in_the_font():
    assert missing_glyphs("係員 \u0e01") == ["\u0e01"]  # Thai: not in the font
    assert [(lang, screen, text) for lang, screen, _, text in CASES if missing_glyphs(text)] == []


def test_long_texts_are_wrapped_not_shrunk_to_nothing():
    catalogue = Catalogue.load(ASSETS_DIR)
    for lang in LANGUAGES:
        lines = screen_layout((640, 360), catalogue.screen_text("transfer_caution", lang, {}))
        assert min(line[3] for line in lines) >= 14, lang
        if lang == "en":
            assert len(lines) > 4  # the caution's first sentence takes two lines


@pytest.fixture(scope="module")
def screen_window(xvfb):
    if shutil.which("xwd") is None or shutil.which("xwininfo") is None:
        pytest.skip("xwd and xwininfo (x11-apps, x11-utils) are needed for screenshots")
    display = create_device("display", "opencv://?width=640&height=360", DeviceContext())
    display.open()
    try:
        wait_for(lambda: display.screen_shown_at > 0)
        wait_for(lambda: window_rect(xvfb)[2:] == (640, 360))
        yield display
    finally:
        display.close()


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def shown_on_the_window(xvfb: str, display, expected: np.ndarray) -> np.ndarray:
    """A screenshot of the window once it shows ``expected`` (the window is made again if
    Qt missed mapping it and never paints it)."""
    size = expected.shape[1], expected.shape[0]
    shot = None
    for _ in range(6):  # Qt under Xvfb now and then misses painting a new window
        deadline = time.monotonic() + 5  # a loaded machine paints late
        while time.monotonic() < deadline:
            x, y, w, h = window_rect(xvfb)  # asked each time: Qt may still be resizing it
            shot = screenshot(xvfb)[y : y + h, x : x + w]
            if shot.shape == expected.shape and _mad(shot, expected) < 1.5:
                return shot
            time.sleep(0.02)
        display.recreate_window()
        wait_for(lambda: window_rect(xvfb)[2:] == size)
    off = f"off by {_mad(shot, expected):.2f}" if shot is not None and shot.shape == expected.shape else "wrong size"
    pytest.fail(f"the window never showed the screen ({off}: {None if shot is None else shot.shape})")


def test_screenshots_show_every_screens_text_inside_the_window(xvfb, screen_window):
    display = screen_window
    size = (640, 360)
    previous = None
    for lang, screen, fields, text in CASES:
        display.show(screen, text, **fields)
        shot = shown_on_the_window(xvfb, display, screen_canvas(size, text))
        assert (np.abs(outside_margin(shot, size).astype(int) - BACKGROUND) <= 2).all(), (lang, screen)
        assert ink(shot).mean() > 0.002, (lang, screen)
        if previous is not None and previous[1] != text:
            assert _mad(shot, previous[0]) > 0.1, (lang, screen)  # a new screen is a new picture
        previous = (shot, text)
