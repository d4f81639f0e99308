"""The X server seen without a client library: does it answer, and how big is its screen."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def x_display_problem(display: str) -> str:
    """Why no window can open on ``display`` (e.g. ":0"), or "" when its X server answers."""
    if not display:
        return "no DISPLAY to open a window on"
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return f"DISPLAY {display!r} is not of the form [host]:number"
    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(f"/tmp/.X11-unix/X{number}")
        else:
            socket.create_connection((host, 6000 + int(number)), timeout=1).close()
    except OSError as exc:
        return f"the X server of DISPLAY {display!r} does not answer: {exc.strerror or exc}"
    return ""


def _x_cookie(number: str) -> tuple[bytes, bytes]:
    """(auth name, auth data) for local display ``number`` from $XAUTHORITY, or empty ones."""
    path = os.environ.get("XAUTHORITY") or os.path.expanduser("~/.Xauthority")
    try:
        data = Path(path).read_bytes()
    except OSError:
        return b"", b""
    host, pos = socket.gethostname().encode(), 0
    found = (b"", b"")
    while pos + 2 <= len(data):
        family = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        fields: list[bytes] = []
        for _ in range(4):
            n = int.from_bytes(data[pos : pos + 2], "big")
            fields.append(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        address, num, name, cookie = fields
        if num.decode(errors="replace") in (number, "") and (family == 65535 or address == host):
            found = (name, cookie)
            if num:
                break
    return found


def _pad(data: bytes) -> bytes:
    """``data`` padded with zeros to a multiple of 4 bytes, as X11 requests want."""
    return data + bytes(-len(data) % 4)


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "little")


def x_screen_size(display: str) -> tuple[int, int] | None:
    """Width and height in pixels of the first screen of a local X ``display``, or None.

    Reads the X11 connection setup reply (no client library needed), so a fullscreen window
    can cover the screen even with no window manager to honour a fullscreen request."""
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if host not in ("", "unix") or not number.isdigit():
        return None
    name, cookie = _x_cookie(number)
    request = b"l\0" + _u16(11) + _u16(0) + _u16(len(name)) + _u16(len(cookie)) + b"\0\0" + _pad(name) + _pad(cookie)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(f"/tmp/.X11-unix/X{number}")
            sock.sendall(request)
            reply = b""
            while len(reply) < 8 or len(reply) < 8 + 4 * int.from_bytes(reply[6:8], "little"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    if reply[0] != 1:  # refused (authorization) or needs more authentication
        return None
    vendor_len, n_formats = int.from_bytes(reply[24:26], "little"), reply[29]
    screen = 40 + vendor_len + (-vendor_len % 4) + 8 * n_formats
    w = int.from_bytes(reply[screen + 20 : screen + 22], "little")
    h = int.from_bytes(reply[screen + 22 : screen + 24], "little")
    return (w, h) if w and h else None
