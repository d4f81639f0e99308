"""Screenshots of an X server (``xwd``) as BGR images, and where the ATM window is on it."""

from __future__ import annotations

import re
import subprocess

import numpy as np


def read_xwd(data: bytes) -> np.ndarray:
    """A BGR image from an X window dump (ZPixmap, 24 or 32 bits per pixel)."""
    header = np.frombuffer(data[:100], ">u4").astype(np.int64)
    header_size, _, fmt, _, width, height, _, byte_order, _, _, _, bpp, bpl = header[:13]
    masks, ncolors = header[14:17], header[19]
    assert fmt == 2 and bpp in (24, 32), (fmt, bpp)
    nb, start = int(bpp) // 8, int(header_size + 12 * ncolors)
    raw = np.frombuffer(data, np.uint8, int(bpl * height), start).reshape(height, bpl)
    raw = raw[:, : width * nb].reshape(height, width, nb).astype(np.uint32)
    order = range(nb) if byte_order == 0 else range(nb - 1, -1, -1)
    pixels = sum(raw[:, :, b] << (8 * i) for i, b in enumerate(order))
    channels = []
    for mask in masks[::-1]:  # blue, green, red
        shift = (int(mask) & -int(mask)).bit_length() - 1
        channels.append(((pixels >> shift) & 0xFF).astype(np.uint8))
    return np.dstack(channels)


def screenshot(display_name: str) -> np.ndarray:
    """The whole X screen (the root window), as the customer would see it."""
    dump = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display_name], capture_output=True, check=True, timeout=10
    ).stdout
    return read_xwd(dump)


def window_rect(display_name: str) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the window named ATM; (0, 0, 0, 0) while there is none yet (a
    loaded machine maps it late), so ``wait_for(lambda: window_rect(d)[2:] == size)`` waits."""
    proc = subprocess.run(
        ["xwininfo", "-name", "ATM", "-display", display_name], capture_output=True, text=True, timeout=10
    )
    if proc.returncode != 0:
        return 0, 0, 0, 0
    get = lambda key: int(re.search(rf"{key}:\s+(-?\d+)", proc.stdout).group(1))  # noqa: E731
    return get("Absolute upper-left X"), get("Absolute upper-left Y"), get("Width"), get("Height")
