"""Draw the customer help videos with OpenCV, one per language (deterministic, no assets needed).

Writes ``help_<lang>.mp4`` for every language in ``TEXTS`` and ``help.mp4``, a byte-identical
copy of the Japanese one (the default the agent points at; git stores the blob once).

Text is drawn with OpenCV 5's built-in Unicode font (``cv2.FontFace("sans")``), which has
kana, kanji, hanzi and hangul; :func:`missing_glyphs` finds characters it would draw as '?'.

Usage: python assets/video/make_help_video.py [--out-dir DIR] [--lang ja --lang en ...]
"""

from __future__ import annotations

import argparse
import math
import shutil
from functools import cache
from pathlib import Path

import cv2
import numpy as np

W, H, FPS = 640, 360, 10
INTRO, STEP_LEN = 1.5, 2.0
N_STEPS = 4
DURATION = INTRO + STEP_LEN * N_STEPS  # 9.5 s
DEFAULT_LANGUAGE = "ja"  # help.mp4 is a copy of this one

# Per language: title, intro caption, the CANCEL and CALL button labels, four steps of two lines.
TEXTS = {
    "ja": {
        "title": "お困りですか？",
        "intro": "カードが入っています",
        "cancel": "取消",
        "call": "呼出",
        "steps": [
            ["画面の案内に", "従って操作してください"],
            ["取消ボタンを押すと", "カードが戻ります"],
            ["呼出ボタンを押すか受話器を取ると", "係員と話せます"],
            ["係員デスク：", "0120-000-000"],
        ],
    },
    "en": {
        "title": "Need help?",
        "intro": "Card inserted",
        "cancel": "CANCEL",
        "call": "CALL",
        "steps": [
            ["Follow the instructions", "on the screen"],
            ["Press CANCEL to get", "your card back"],
            ["Press CALL or pick up the phone", "to talk to an operator"],
            ["Operator desk:", "0120-000-000"],
        ],
    },
    "zh": {
        "title": "需要帮助吗？",
        "intro": "银行卡已插入",
        "cancel": "取消",
        "call": "呼叫",
        "steps": [
            ["请按照屏幕上的", "提示进行操作"],
            ["按取消键", "取回您的银行卡"],
            ["按呼叫键或拿起电话", "与工作人员通话"],
            ["客服电话：", "0120-000-000"],
        ],
    },
    "ko": {
        "title": "도움이 필요하십니까?",
        "intro": "카드가 삽입되었습니다",
        "cancel": "취소",
        "call": "호출",
        "steps": [
            ["화면의 안내에", "따라 주십시오"],
            ["취소 버튼을 누르면", "카드가 반환됩니다"],
            ["호출 버튼을 누르거나 수화기를 들면", "상담원과 통화할 수 있습니다"],
            ["상담원 전화:", "0120-000-000"],
        ],
    },
}

BG, BAR, WHITE, DIM = (70, 40, 20), (150, 90, 20), (255, 255, 255), (170, 150, 130)
GOLD, RED, GREEN, DARK = (60, 190, 240), (60, 60, 220), (80, 180, 60), (40, 25, 15)
AA, SHIFT = cv2.LINE_AA, 4


@cache
def face() -> cv2.FontFace:
    return cv2.FontFace("sans")


def text_width(s: str, size: int, weight: int = 400) -> int:
    return cv2.getTextSize((W, H), s, (0, 0), face(), size, weight)[2]


def fit(s: str, size: int, width: int, weight: int = 400) -> int:
    """The largest font size <= ``size`` at which ``s`` fits in ``width`` pixels."""
    while size > 8 and text_width(s, size, weight) > width:
        size -= 1
    return size


def text(img, s, x, y, size=20, color=WHITE, weight=400, width=None) -> None:
    """Draw ``s`` with its baseline at (x, y), shrunk to fit ``width`` if given."""
    if width is not None:
        size = fit(s, size, width, weight)
    cv2.putText(img, s, (int(round(x)), int(round(y))), color, face(), size, weight)


@cache
def _glyph(ch: str) -> bytes:
    img = np.zeros((48, 48), np.uint8)
    cv2.putText(img, ch, (4, 38), 255, face(), 32, 400)
    return img.tobytes()


def missing_glyphs(s: str) -> list[str]:
    """Characters of ``s`` the built-in font cannot draw (OpenCV puts '?' in their place)."""
    return sorted({c for c in s if ord(c) > 127 and not c.isspace() and _glyph(c) == _glyph("?")})


def all_strings(lang: str) -> list[str]:
    t = TEXTS[lang]
    return [t["title"], t["intro"], t["cancel"], t["call"]] + [s for step in t["steps"] for s in step]


def ease(x: float) -> float:
    """Smoothstep, clamped to 0..1."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def fill(img, pts, color) -> None:
    """Fill a float polygon with sub-pixel precision (smooth motion)."""
    p = np.round(np.asarray(pts, np.float64) * (1 << SHIFT)).astype(np.int32)
    cv2.fillPoly(img, [p], color, AA, SHIFT)


def rect_pts(cx, cy, w, h, angle=0.0, r=6.0):
    """Corner points of a rounded rectangle centred at (cx, cy), rotated by angle (rad)."""
    pts = []
    for qx, qy, a0 in ((1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)):
        ox, oy = qx * (w / 2 - r), qy * (h / 2 - r)
        for a in range(a0, a0 + 91, 15):
            pts.append((ox + r * math.cos(math.radians(a)), oy + r * math.sin(math.radians(a))))
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def draw_card(img, cx, cy) -> None:
    fill(img, rect_pts(cx, cy, 90, 56, r=7), (200, 120, 40))
    fill(img, rect_pts(cx - 22, cy - 4, 18, 14, r=3), GOLD)
    cv2.line(img, (int(cx - 35), int(cy + 16)), (int(cx + 35), int(cy + 16)), WHITE, 2, AA)


def card_in_slot(img, cx, slot_y, out: float) -> None:
    """A card standing in a slot; ``out`` 0..1 is how much of it shows."""
    draw_card(img, cx, slot_y + 28 - 56 * out)
    cv2.rectangle(img, (int(cx - 60), int(slot_y)), (int(cx + 60), int(slot_y + 60)), BG, -1)
    fill(img, rect_pts(cx, slot_y, 120, 10, r=4), DARK)


def draw_button(img, cx, cy, label, color, press=0.0) -> None:
    """A keypad button; ``press`` 0..1 sinks it into its shadow."""
    fill(img, rect_pts(cx, cy + 5, 110, 40, r=8), DARK)
    fill(img, rect_pts(cx, cy + 5 * press, 110, 40, r=8), color)
    size = fit(label, 18, 96, 600)
    text(img, label, cx - text_width(label, size, 600) / 2, cy + 7 + 5 * press, size, WHITE, 600)


def draw_handset(img, cx, cy, angle) -> None:
    """Phone handset: a curved grip with ear and mouth pieces, rotated by angle (rad)."""
    c, s = math.cos(angle), math.sin(angle)
    arc = [(52 * math.cos(math.radians(a)), 30 - 52 * math.sin(math.radians(a)) * 0.55) for a in range(20, 161, 10)]
    pts = [(cx + x * c - y * s, cy + x * s + y * c) for x, y in arc]
    p = np.round(np.asarray(pts) * (1 << SHIFT)).astype(np.int32)
    cv2.polylines(img, [p], False, WHITE, 14, AA, SHIFT)
    for ex in (-48, 48):
        x, y = ex, 26
        fill(img, rect_pts(cx + x * c - y * s, cy + x * s + y * c, 34, 18, angle, r=8), WHITE)


def draw_screen(img, cx, cy, t) -> None:
    """Small ATM screen with a blinking prompt and a pointer sliding to a key."""
    fill(img, rect_pts(cx, cy, 150, 100, r=8), DARK)
    fill(img, rect_pts(cx, cy, 136, 86, r=5), (120, 80, 40))
    for i, w in enumerate((90, 70, 80)):
        cv2.line(
            img,
            (int(cx - 55), int(cy - 25 + 18 * i)),
            (int(cx - 55 + w), int(cy - 25 + 18 * i)),
            WHITE if i != 1 or int(t * 4) % 2 == 0 else DIM,
            3,
            AA,
        )
    k = 0.5 - 0.5 * math.cos(2 * math.pi * min(t / 1.6, 1.0))
    x = cx + 95 - 20 * k
    fill(img, [(x, cy + 25), (x + 22, cy + 15), (x + 22, cy + 35)], GOLD)


def scene(img, i: int, t: float, lang: str) -> None:
    """Pictogram for step ``i`` at ``t`` seconds into the step (left panel)."""
    cx, cy = 130, 210
    labels = TEXTS[lang]
    if i == 0:
        draw_screen(img, cx, cy, t)
    elif i == 1:
        card_in_slot(img, cx, cy - 30, ease((t - 0.5) / 0.9))
        draw_button(img, cx, cy + 45, labels["cancel"], RED, math.sin(math.pi * min(t / 0.6, 1.0)))
    elif i == 2:
        lift = ease(t / 0.8)
        draw_handset(img, cx, cy - 40 - 25 * lift, -0.5 * lift + 0.08 * math.sin(t * 9) * lift)
        pulse = 0.5 + 0.5 * math.sin(t * 2 * math.pi)
        cv2.circle(img, (cx, cy + 50), int(30 + 10 * pulse), GREEN, 2, AA)
        draw_button(img, cx, cy + 50, labels["call"], GREEN, ease((t - 1.0) / 0.3) * (1 - ease((t - 1.5) / 0.3)))
    else:
        draw_handset(img, cx, cy, 0.0)
        for k in range(3):
            r = 40 + ((t * 30 + k * 22) % 66)
            a = 1 - (r - 40) / 66  # fade into the background
            col = tuple(int(b + (w - b) * a) for b, w in zip(BG, WHITE))
            cv2.ellipse(img, (cx, cy + 10), (int(r), int(r)), 0, 210, 330, col, 3, AA)


def frame(n: int, lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
    t = n / FPS
    labels = TEXTS[lang]
    img = np.full((H, W, 3), BG, np.uint8)
    cv2.rectangle(img, (0, 0), (W, 64), BAR, -1)
    k = ease(t / 0.8)
    text(img, labels["title"], 24 - 40 * (1 - k), 44, 32, tuple(int(c * k) for c in WHITE), 700, W - 48)
    cv2.line(img, (260, 90), (260, 340), DIM, 1, AA)
    if t < INTRO:  # intro: the card goes into its slot
        card_in_slot(img, 130, 230, 1 - ease((t - 0.2) / 1.0))
        intro = labels["intro"]
        size = fit(intro, 18, 230)
        text(img, intro, 130 - text_width(intro, size) / 2, 290, size, DIM)
    cur = int((t - INTRO) // STEP_LEN) if t >= INTRO else -1
    for i, lines in enumerate(labels["steps"]):
        if i > cur:
            break
        local = t - INTRO - i * STEP_LEN
        slide = ease(local / 0.5)
        x = 290 + 60 * (1 - slide)
        y = 105 + 62 * i
        active = i == cur
        col = WHITE if active else DIM
        cv2.circle(img, (int(x + 12), y - 6), 14, GOLD if active else DIM, -1, AA)
        text(img, str(i + 1), x + 6, y + 1, 18, DARK, 700)
        for j, line in enumerate(lines):
            big = i == 3 and j == 1
            text(
                img,
                line,
                x + 38,
                y + 24 * j,
                26 if big else 19,
                GOLD if big and active else col,
                700 if big else 400,
                W - 12 - 328,
            )
    if cur >= 0:
        scene(img, cur, t - INTRO - cur * STEP_LEN, lang)
    return img


def write(out: Path, lang: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {out}")
    for n in range(int(round(DURATION * FPS))):
        writer.write(frame(n, lang))
    writer.release()
    return out


def main(argv=None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=str(Path(__file__).parent))
    ap.add_argument(
        "--lang", action="append", choices=sorted(TEXTS), help="a language to draw (repeatable; default: all)"
    )
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    written = []
    for lang in args.lang or list(TEXTS):
        missing = [c for s in all_strings(lang) for c in missing_glyphs(s)]
        if missing:
            raise SystemExit(f"{lang}: the built-in font has no glyph for {''.join(sorted(set(missing)))}")
        out = write(out_dir / f"help_{lang}.mp4", lang)
        written.append(out)
        if lang == DEFAULT_LANGUAGE:
            shutil.copyfile(out, out_dir / "help.mp4")
            written.append(out_dir / "help.mp4")
    for out in written:
        print(f"{out}: {out.stat().st_size} bytes, {DURATION:.1f} s")
    return written


if __name__ == "__main__":
    main()
