"""Text drawing with OpenCV: its "sans" font face draws kana, kanji, hanzi and hangul too,
and the screen canvas the OpenCV display shows between videos."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import cv2
    import cv2.typing

Image: TypeAlias = "cv2.typing.MatLike"  # an OpenCV BGR image, height x width x 3


@cache
def font_face() -> cv2.FontFace:
    """OpenCV's sans font face (made once: loading it is slow)."""
    import cv2

    return cv2.FontFace("sans")


@lru_cache(maxsize=64)
def fit_text(text: str, size: int, width: int, weight: int) -> tuple[int, int]:
    """(font size, text width): the largest size <= ``size`` whose text fits in ``width``."""
    import cv2

    while True:
        w: int = cv2.getTextSize((width, 100), text, (0, 0), font_face(), size, weight)[2]
        if w <= width or size <= 8:
            return size, w
        size -= 1


def screen_canvas(size: tuple[int, int], screen: str, text: str, fields: Mapping[str, object]) -> Image:
    """A screen as the OpenCV display draws it: its name as a title, then its text and fields."""
    import cv2
    import numpy as np

    w, h = size
    img = np.full((h, w, 3), (60, 40, 20), dtype=np.uint8)
    cv2.putText(
        img, screen.replace("_", " ").upper(), (40, 90), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 3, cv2.LINE_AA
    )
    lines = [text] if text else []  # OpenCV 5's built-in font draws kana and kanji too
    lines += [f"{k}: {v}" for k, v in fields.items()]
    for i, line in enumerate(lines[:10]):
        cv2.putText(
            img, str(line)[:60], (40, 170 + 50 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (230, 230, 230), 2, cv2.LINE_AA
        )
    return img
