"""Display interface: screens of text and the help video.

The help video comes in one file per language (``help_<lang>.mp4`` next to ``help.mp4``,
the Japanese default). While it plays, every frame carries two overlays drawn by
:func:`video_canvas`: the "call an operator" hint in the video's language and, when the
caller gave a cancel time, a countdown to it read from the device context's clock.

Modules: ``interface`` (the Display device), ``video`` (files and overlays), ``text``
(text drawing), ``playback`` (the frame schedule), ``xserver`` (the X server seen without
a client library) and ``opencv`` (the real window and its thread).
"""

from devices.display.interface import MAX_SIZE, MIN_SIZE, Display
from devices.display.opencv import OpenCVDisplay
from devices.display.playback import FrameShown
from devices.display.video import (
    DEFAULT_VIDEO_LANGUAGE,
    VIDEO_TEXTS,
    overlay_boxes,
    resolve_video,
    seconds_left,
    video_canvas,
)
from devices.display.xserver import x_display_problem, x_screen_size

__all__ = [
    "DEFAULT_VIDEO_LANGUAGE",
    "MAX_SIZE",
    "MIN_SIZE",
    "VIDEO_TEXTS",
    "Display",
    "FrameShown",
    "OpenCVDisplay",
    "overlay_boxes",
    "resolve_video",
    "seconds_left",
    "video_canvas",
    "x_display_problem",
    "x_screen_size",
]
