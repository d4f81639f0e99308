"""Display interface: screens of text and the help video."""
from __future__ import annotations

from devices.base import Device


class Display(Device):
    kind = "display"

    def show(self, screen: str, text: str, **fields) -> None:
        """Show a screen; ``fields`` carry values the screen displays."""
        raise NotImplementedError

    def play_video(self, path: str, loop: bool = True) -> None:
        """Start the video at once; never blocks the caller."""
        raise NotImplementedError

    def stop_video(self) -> None:
        raise NotImplementedError

    @property
    def video_playing(self) -> bool:
        raise NotImplementedError
