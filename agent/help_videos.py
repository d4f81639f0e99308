"""The help video of each topic and language at the display's size, drawn at first use.

Only the general help (``assets/video/help_<lang>.mp4``, 640x360) is committed. The help of
a screen (``pin``, ``amount``, ``deposit``, ``menu``: :data:`fsm.screens.HELP_TOPICS`) is
drawn by ``assets/video/make_help_video.py`` at the size the display draws at, into
``<cache>/<script digest>/<w>x<h>/help_<topic>_<lang>.mp4``, so a new script or a new
display size draws them again and nothing stretches. On the real clock the agent draws
them at start-up on a thread and, until one is there, plays the general video; on the
virtual clock one is drawn when first asked for, so every run shows the same thing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from types import ModuleType

from agent.resources import asset_path

log = logging.getLogger(__name__)
DEFAULT_SIZE = (640, 360)  # a display that does not say its size (the headless one)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atm-agent" / "help-videos"


@cache
def _script() -> tuple[ModuleType, str]:
    """The video script, loaded from the shipped assets, and the digest of its source."""
    path = asset_path("video", "make_help_video.py")
    spec = importlib.util.spec_from_file_location("make_help_video", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class HelpVideos:
    """``path(topic, language)``: the file to play; see the module's docstring."""

    def __init__(
        self,
        directory: str | os.PathLike | None,
        size: Callable[[], tuple[int, int] | None],
        general: Path,
        wait: bool,
    ):
        self.directory = Path(directory) if directory else default_cache_dir()
        self.size = size  # the display's drawing size, asked each time (fullscreen learns it late)
        self.general = general  # help.mp4: the display picks help_<lang>.mp4 beside it
        self.wait = wait  # draw a missing video at once (virtual clock) or play the general one
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def file(self, topic: str, language: str, size: tuple[int, int]) -> Path:
        module, digest = _script()
        return self.directory / digest / f"{size[0]}x{size[1]}" / module.video_name(topic, language)

    def draw(self, topic: str, language: str, size: tuple[int, int]) -> Path:
        """The video, drawn now unless it already is (OSError if it cannot be)."""
        out = self.file(topic, language, size)
        with self._lock:
            if not out.is_file() and _script()[0].write(out, language, topic, size, self._stopping.is_set) is None:
                raise OSError("stopped before it was drawn")
        return out

    def path(self, topic: str, language: str) -> str:
        size = self.size() or DEFAULT_SIZE
        module = _script()[0]
        if topic not in module.SCENES or language not in module.TEXTS or topic == module.DEFAULT_TOPIC:
            return str(self.general)
        out = self.file(topic, language, size)
        if out.is_file():
            return str(out)
        if self.wait:
            try:
                return str(self.draw(topic, language, size))
            except OSError as exc:
                log.warning("cannot draw the %s help video: %s", topic, exc)
        return str(self.general)

    def warm(self, topics: Iterable[str], languages: Iterable[str]) -> None:
        """Draw every missing video of these topics and languages at the display's size."""
        size = self.size() or DEFAULT_SIZE
        for topic in topics:
            for language in languages:
                if self._stopping.is_set():
                    return
                try:
                    self.draw(topic, language, size)
                except OSError as exc:
                    if not self._stopping.is_set():
                        log.warning("cannot draw the %s help video in %s: %s", topic, language, exc)
                    return

    def warm_in_background(self, topics: Iterable[str], languages: Iterable[str]) -> threading.Thread:
        """Draw them on a thread of their own (the real clock). The script is loaded here,
        before the loop runs, not on the loop's thread at first use."""
        _script()
        self._thread = threading.Thread(
            target=self.warm, args=(list(topics), list(languages)), name="help-videos", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """Stop drawing (between two frames) and wait for the thread: OpenCV's encoder must
        not be running when the process exits (it aborts with SIGABRT)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
