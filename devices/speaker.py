"""Speaker interface and the ALSA backend (``aplay://default``)."""

from __future__ import annotations

import abc
import logging
import shutil
import subprocess
from dataclasses import dataclass

from devices.base import Device, DeviceContext, Severity
from devices.locator import Locator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """A rendered voice prompt (or chime) ready to play."""

    prompt_id: str
    language: str
    path: str
    duration: float


class Speaker(Device):
    kind = "speaker"

    @abc.abstractmethod
    def play(self, clip: Clip) -> None:
        """Start playing at once, replacing anything playing; never blocks."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop playback at once."""

    @property
    @abc.abstractmethod
    def playing(self) -> bool:
        """Whether a clip is playing."""


class AplaySpeaker(Speaker):
    """Plays WAV files with ``aplay -D <pcm>``; the path names the ALSA PCM."""

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.pcm = self.loc.path or "default"
        self._proc: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        super().open()
        if shutil.which("aplay") is None:
            self.raise_fault("no_aplay", "aplay is not installed (alsa-utils)", Severity.ERROR)

    def play(self, clip: Clip) -> None:
        self.stop()
        try:
            self._proc = subprocess.Popen(
                ["aplay", "-q", "-D", self.pcm, clip.path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self.raise_fault("play_failed", f"aplay failed to start: {exc}", Severity.WARNING)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()  # at once: aplay can sit out SIGTERM while blocked
            proc.wait()

    @property
    def playing(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self.stop()
        super().close()
