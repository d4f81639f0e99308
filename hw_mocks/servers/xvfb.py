"""An Xvfb X server for tests and benchmarks: a free display number, no TCP."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

from hw_mocks.servers import started


def start_xvfb(screen: str = "1280x720x24") -> tuple[subprocess.Popen, str]:
    """Start Xvfb (it dies with this process, even one that aborts); returns it and ``:N``."""
    read, write = os.pipe()
    libc = ctypes.CDLL(None, use_errno=True)
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: libc.prctl(1, signal.SIGTERM),
    )  # PR_SET_PDEATHSIG
    os.close(write)
    started["xvfb"] += 1
    number = b""
    # Xvfb writes the number and the newline separately: closing the pipe after the number
    # alone makes its second write fail, and Xvfb exits ("Cannot write display number").
    while not number.endswith(b"\n"):
        chunk = os.read(read, 16)
        if not chunk:
            break
        number += chunk
    os.close(read)
    return proc, f":{number.decode().strip()}"
