"""Text drawing with OpenCV: its "sans" font face draws kana, kanji, hanzi and hangul too,
and the screen canvas the OpenCV display shows between videos."""

from __future__ import annotations

import re
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


@lru_cache(maxsize=4096)
def text_width(text: str, size: int, weight: int) -> int:
    """Width in pixels of ``text`` drawn at ``size`` (its ink lies within it)."""
    import cv2

    w: int = cv2.getTextSize((4096, 100), text, (0, 0), font_face(), size, weight)[2]
    return w


# A run of Latin letters, digits and signs stays together; a CJK character stands alone.
_TOKEN = re.compile(r"\s+|[\x21-\x7e\u00a5\u00b7-\u00ff]+|.")
_NO_LINE_START = set("、。，．！？）」』：；,.!?:;)%")  # punctuation that never starts a line


def wrap(text: str, size: int, width: int, weight: int) -> list[str]:
    """``text`` broken into lines that fit ``width`` at ``size``: between words, or between
    CJK characters (never before closing punctuation); a word too long alone is cut."""
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if tokens and token[0] in _NO_LINE_START:
            tokens[-1] += token
        else:
            tokens.append(token)
    lines, line = [], ""
    for token in tokens:
        if text_width((line + token).strip(), size, weight) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.strip())
        line = token.lstrip()
        while len(line) > 1 and text_width(line, size, weight) > width:  # a word wider than the line
            cut = 1
            while cut < len(line) and text_width(line[: cut + 1], size, weight) <= width:
                cut += 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.strip())
    return lines


class Line(tuple[str, int, int, int, int]):
    """One drawn line of a screen: ``(text, x, baseline, size, weight)``."""

    __slots__ = ()

    def __new__(cls, text: str, x: int, baseline: int, size: int, weight: int) -> Line:
        return tuple.__new__(cls, (text, x, baseline, size, weight))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Where its ink can be: (x, y, w, h)."""
        text, x, baseline, size, weight = self
        return x, baseline - size, text_width(text, size, weight), round(size * 1.35)


TITLE_WEIGHT, BODY_WEIGHT = 700, 400
BACKGROUND, TITLE_COLOUR, BODY_COLOUR, RULE_COLOUR = (60, 40, 20), (255, 255, 255), (230, 230, 230), (150, 110, 60)


def margin(size: tuple[int, int]) -> int:
    """The empty band along every edge of a screen, in pixels."""
    return max(8, round(min(size) * 0.05))


@lru_cache(maxsize=256)
def screen_layout(size: tuple[int, int], text: str) -> tuple[Line, ...]:
    """Where each line of ``text`` goes on a screen of ``size``: the first line is the title,
    the others the body; every line is wrapped, and both shrink until all fit inside the margin."""
    w, h = size
    m = margin(size)
    paragraphs = [p for p in text.split("\n") if p.strip()]
    title_size, body_size = max(8, round(h * 0.085)), max(8, round(h * 0.06))
    while True:
        lines: list[Line] = []
        y = m
        for i, paragraph in enumerate(paragraphs):
            fs, weight = (title_size, TITLE_WEIGHT) if i == 0 else (body_size, BODY_WEIGHT)
            for part in wrap(paragraph, fs, w - 2 * m, weight):
                lines.append(Line(part, m, y + fs, fs, weight))
                y += round(fs * 1.45)
            if i == 0:
                y += round(body_size * 0.8)  # the rule under the title
        bottom = lines[-1].box[1] + lines[-1].box[3] if lines else 0
        if bottom <= h - m or (title_size, body_size) == (8, 8):
            return tuple(lines)
        title_size, body_size = max(8, round(title_size * 0.9)), max(8, round(body_size * 0.9))


def screen_canvas(size: tuple[int, int], text: str) -> Image:
    """A screen as the OpenCV display draws it: ``text``'s first line as the title, a rule,
    then the other lines, wrapped to fit inside the margin."""
    import cv2
    import numpy as np

    w, h = size
    img = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
    lines = screen_layout(size, text)
    for i, line in enumerate(lines):
        part, x, baseline, fs, weight = line
        colour = TITLE_COLOUR if weight == TITLE_WEIGHT else BODY_COLOUR
        cv2.putText(img, part, (x, baseline), colour, font_face(), fs, weight)
        if weight == TITLE_WEIGHT and (i + 1 == len(lines) or lines[i + 1][4] != TITLE_WEIGHT):
            y = baseline + round(fs * 0.45)
            cv2.rectangle(img, (x, y), (w - margin(size) - 1, y + max(1, h // 240) - 1), RULE_COLOUR, -1)
    return img


@cache
def _glyph(ch: str) -> bytes:
    import cv2
    import numpy as np

    img = np.zeros((48, 48), np.uint8)
    cv2.putText(img, ch, (4, 38), 255, font_face(), 32, 400)
    return bytes(img.tobytes())


def missing_glyphs(text: str) -> list[str]:
    """Characters of ``text`` the built-in font cannot draw (OpenCV puts '?' in their place)."""
    return sorted({c for c in text if ord(c) > 127 and not c.isspace() and _glyph(c) == _glyph("?")})
