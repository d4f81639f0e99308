"""The help video's files and overlays: which file plays for a language, the countdown and
the frame as shown, with the operator hint and the countdown drawn over it."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from devices.display.text import fit_text, font_face

if TYPE_CHECKING:
    from devices.display.text import Image

DEFAULT_VIDEO_LANGUAGE = "ja"  # help.mp4 is the Japanese video
# Overlay texts, per language of the video: the operator hint and the countdown to the
# idle cancel, which hands the card back (every state with help has the card inside).
VIDEO_TEXTS = {
    "ja": {
        "hint": "係員をお呼びの際は、呼出ボタンを押すか受話器をお取りください",
        "countdown": "あと{n}秒でカードをお返しします",
    },
    "en": {
        "hint": "To call an operator, press CALL or pick up the phone",
        "countdown": "Your card will be returned in {n} s",
    },
    "zh": {"hint": "如需帮助，请按呼叫键或拿起电话联系工作人员", "countdown": "{n}秒后退还您的银行卡"},
    "ko": {
        "hint": "상담원을 부르시려면 호출 버튼을 누르거나 수화기를 드십시오",
        "countdown": "{n}초 후 카드가 반환됩니다",
    },
}
_LANG_SUFFIX = re.compile(r"(.+)_([a-z]{2,3})")


def resolve_video(path: str, language: str | None = None) -> tuple[str, str]:
    """The file to play for ``language`` and the language it is in.

    ``help.mp4`` with ``language="en"`` plays ``help_en.mp4`` when it exists; otherwise the
    given file plays, in the language its name ends with (``_ko``) or the default one."""
    p = Path(path)
    m = _LANG_SUFFIX.fullmatch(p.stem)
    own = m.group(2) if m and m.group(2) in VIDEO_TEXTS else None
    if language and language != own:
        base = m.group(1) if m and own else p.stem
        candidate = p.with_name(f"{base}_{language}{p.suffix}")
        if candidate.is_file():
            return str(candidate), language
    return str(path), own or DEFAULT_VIDEO_LANGUAGE


def seconds_left(cancel_at: float | None, now: float) -> int | None:
    """Whole seconds shown by the countdown (rounded up, never below 0); None: no countdown."""
    if cancel_at is None:
        return None
    return max(0, math.ceil(cancel_at - now - 1e-9))


def overlay_boxes(size: tuple[int, int], language: str, left: int | None) -> dict[str, tuple[int, int, int, int]]:
    """Where the overlays go on a canvas of ``size`` (x, y, w, h): ``hint`` and ``countdown``."""
    w, h = size
    band = max(24, round(h * 0.1))
    boxes = {"hint": (0, h - band, w, band)}
    if left is not None:
        texts = VIDEO_TEXTS.get(language, VIDEO_TEXTS["en"])
        fs, tw = fit_text(texts["countdown"].format(n=left), max(10, round(h * 0.05)), w // 2, 600)
        bw, bh = tw + 2 * round(h * 0.03), round(fs * 1.6)
        boxes["countdown"] = (w - bw - round(h * 0.03), round(h * 0.03), bw, bh)
    return boxes


def video_canvas(frame: Image, size: tuple[int, int], language: str, left: int | None) -> Image:
    """The help-video frame as shown: scaled to ``size`` (letterboxed), with the operator
    hint along the bottom and, when ``left`` is not None, the countdown top right."""
    import cv2
    import numpy as np

    w, h = size
    fh, fw = frame.shape[:2]
    if (fw, fh) == (w, h):
        img = frame.copy()
    else:
        scale = min(w / fw, h / fh)
        sw, sh = max(1, round(fw * scale)), max(1, round(fh * scale))
        img = np.zeros((h, w, 3), np.uint8)
        x0, y0 = (w - sw) // 2, (h - sh) // 2
        img[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(
            frame, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
    texts = VIDEO_TEXTS.get(language, VIDEO_TEXTS["en"])
    boxes = overlay_boxes(size, language, left)
    x, y, bw, bh = boxes["hint"]
    band = img[y : y + bh, x : x + bw]
    band[:] = (band.astype(np.uint16) * 3 // 10).astype(np.uint8)  # darken what lies under it
    fs, tw = fit_text(texts["hint"], max(10, round(bh * 0.42)), bw - 2 * round(h * 0.03), 500)
    cv2.putText(
        img, texts["hint"], ((w - tw) // 2, y + (bh + fs * 7 // 10) // 2), (255, 255, 255), font_face(), fs, 500
    )
    if left is not None:
        x, y, bw, bh = boxes["countdown"]
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (40, 40, 200), -1, cv2.LINE_AA)
        label = texts["countdown"].format(n=left)
        fs, tw = fit_text(label, max(10, round(h * 0.05)), w // 2, 600)
        cv2.putText(
            img, label, (x + (bw - tw) // 2, y + (bh + fs * 7 // 10) // 2), (255, 255, 255), font_face(), fs, 600
        )
    return img
