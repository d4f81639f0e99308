"""WAV files of the voice prompts: duration, the chime, louder copies, loudness.

16-bit PCM mono, what espeak-ng renders; standard library only.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import wave
from array import array
from pathlib import Path


def wav_duration(path: str | os.PathLike) -> float | None:
    """Seconds of audio in a WAV file, or None if missing, broken or empty."""
    try:
        with wave.open(str(path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
    except (OSError, EOFError, wave.Error):
        return None
    return frames / rate if frames > 0 and rate > 0 else None


def write_chime(path: str | os.PathLike, rate: int = 22050) -> None:
    """Write a two-tone "pin-pon" chime (E6 then C6, decaying), atomically."""
    samples = []
    for freq, length in ((1318.5, 0.35), (1046.5, 0.6)):
        n = int(rate * length)
        for i in range(n):
            t = i / rate
            env = min(1.0, t / 0.005) * math.exp(-t * 5.0)
            tone = math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(4 * math.pi * freq * t)
            samples.append(int(32767 * 0.35 * env * tone))
    tmp = f"{path}.{os.getpid()}.tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    os.replace(tmp, path)


LIMIT_KNEE = 0.7  # of full scale: above it, louder samples are bent softly below full scale


def _limit(value: float, knee: float, top: float) -> int:
    """Soft limiter: linear up to ``knee``, then a tanh curve that never reaches ``top``."""
    size = abs(value)
    if size > knee:
        size = knee + (top - knee) * math.tanh((size - knee) / (top - knee))
    return int(round(size if value >= 0 else -size))


def scale_wav(src: str | os.PathLike, dst: str | os.PathLike, gain: float) -> None:
    """Write ``src`` with its samples times ``gain`` to ``dst``, atomically.

    16-bit PCM only (what espeak-ng and the chime give). Peaks pushed past
    :data:`LIMIT_KNEE` are soft-limited rather than clipped, so a louder clip
    is louder (higher RMS) without harsh distortion.
    """
    with wave.open(str(src), "rb") as w:
        params = w.getparams()
        data = w.readframes(w.getnframes())
    if params.sampwidth != 2:
        raise wave.Error(f"{Path(src).name}: {8 * params.sampwidth}-bit audio, only 16-bit is supported")
    samples = array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    top, knee = 32767.0, 32767.0 * LIMIT_KNEE
    scaled = array("h", (_limit(x * gain, knee, top) for x in samples))
    if sys.byteorder == "big":
        scaled.byteswap()
    tmp = f"{dst}.{os.getpid()}.tmp"
    try:
        with wave.open(tmp, "wb") as w:
            w.setparams(params)
            w.writeframes(scaled.tobytes())
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def wav_rms(path: str | os.PathLike) -> float:
    """Root mean square of a 16-bit WAV's samples (0 for an empty file)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise wave.Error("only 16-bit audio is supported")
        samples = array("h")
        samples.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0
