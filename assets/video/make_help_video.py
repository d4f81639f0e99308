"""Draw the customer help videos with OpenCV: one per help topic and language, at any size
(deterministic, no assets needed).

Topics: ``general`` (the committed ``help_<lang>.mp4`` at 640x360, and ``help.mp4``, a
byte-identical copy of the Japanese one: the fallback) and ``pin``, ``amount``, ``deposit``
and ``menu``, the help of the screen where the customer is stuck. Those are drawn at the
display's size into a cache at first use (``agent/help_videos.py``); ``--size`` and
``--topic`` draw them here. Everything is laid out on a 640x360 design scaled to the
size, and every text is fitted to its panel at the size drawn, so none runs off the edge.

Text is drawn with OpenCV 5's built-in Unicode font (``cv2.FontFace("sans")``), which has
kana, kanji, hanzi and hangul; :func:`missing_glyphs` finds characters it would draw as '?'.

Usage: python assets/video/make_help_video.py [--out-dir DIR] [--lang ja ...] [--topic pin ...] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from devices.display.text import missing_glyphs, text_width

__all__ = ["missing_glyphs", "main", "frame", "write"]

W, H, FPS = 640, 360, 10  # the design (and the committed videos' size) and the frame rate
INTRO, STEP_LEN = 1.5, 2.0
N_STEPS = 4
DURATION = INTRO + STEP_LEN * N_STEPS  # 9.5 s: the general video
DEFAULT_LANGUAGE = "ja"  # help.mp4 is a copy of this one
DEFAULT_TOPIC = "general"
# The pictogram of each step of each topic (the same in every language).
SCENES = {
    "general": ["screen", "cancel", "call", "phone"],
    "pin": ["keypad", "confirm", "cancel"],
    "amount": ["keypad", "confirm", "cancel"],
    "deposit": ["notes", "confirm", "cancel"],
    "menu": ["screen", "screen", "cancel"],
}
TOPICS = tuple(SCENES)

# Per language: the intro caption, the CANCEL, CALL and CONFIRM labels, and per topic a
# title and its steps of two lines (the general topic's are "title" and "steps").
TEXTS = {
    "ja": {
        "title": "お困りですか？",
        "intro": "カードが入っています",
        "cancel": "取消",
        "call": "呼出",
        "confirm": "確認",
        "steps": [
            ["画面の案内に", "従って操作してください"],
            ["取消ボタンを押すと", "カードが戻ります"],
            ["呼出ボタンを押すか", "受話器を取ると係員と話せます"],
            ["係員デスク：", "0120-000-000"],
        ],
        "topics": {
            "pin": (
                "暗証番号の入力",
                [
                    ["4桁の暗証番号を", "テンキーで入力してください"],
                    ["入力が終わったら", "確認を押してください"],
                    ["取消ボタンを押すと", "カードが戻ります"],
                ],
            ),
            "amount": (
                "金額の入力",
                [
                    ["金額をテンキーで", "円単位で入力してください"],
                    ["確認を押すと", "金額が確定します"],
                    ["取消ボタンを押すと", "カードが戻ります"],
                ],
            ),
            "deposit": (
                "お預け入れ",
                [
                    ["紙幣をそろえて", "入金口に入れてください"],
                    ["金額を確かめて", "確認を押してください"],
                    ["取消ボタンを押すと", "紙幣とカードが戻ります"],
                ],
            ),
            "menu": (
                "お取引の選択",
                [
                    ["ご希望のお取引の", "ボタンを押してください"],
                    ["画面の下で", "言語を選べます"],
                    ["取消ボタンを押すと", "カードが戻ります"],
                ],
            ),
        },
    },
    "en": {
        "title": "Need help?",
        "intro": "Card inserted",
        "cancel": "CANCEL",
        "call": "CALL",
        "confirm": "CONFIRM",
        "steps": [
            ["Follow the instructions", "on the screen"],
            ["Press CANCEL to get", "your card back"],
            ["Press CALL or pick up the phone", "to talk to an operator"],
            ["Operator desk:", "0120-000-000"],
        ],
        "topics": {
            "pin": (
                "Entering your PIN",
                [
                    ["Type your 4-digit PIN", "on the keypad"],
                    ["Press CONFIRM", "when you are done"],
                    ["Press CANCEL to get", "your card back"],
                ],
            ),
            "amount": (
                "Entering the amount",
                [
                    ["Type the amount in yen", "on the keypad"],
                    ["Press CONFIRM", "to confirm the amount"],
                    ["Press CANCEL to get", "your card back"],
                ],
            ),
            "deposit": (
                "Making a deposit",
                [
                    ["Put your notes into", "the note slot"],
                    ["Check the amount,", "then press CONFIRM"],
                    ["Press CANCEL to get", "your notes and card back"],
                ],
            ),
            "menu": (
                "Choosing a service",
                [
                    ["Press the button of", "the service you want"],
                    ["Choose your language", "at the bottom of the screen"],
                    ["Press CANCEL to get", "your card back"],
                ],
            ),
        },
    },
    "zh": {
        "title": "需要帮助吗？",
        "intro": "银行卡已插入",
        "cancel": "取消",
        "call": "呼叫",
        "confirm": "确认",
        "steps": [
            ["请按照屏幕上的", "提示进行操作"],
            ["按取消键", "取回您的银行卡"],
            ["按呼叫键或拿起电话", "与工作人员通话"],
            ["客服电话：", "0120-000-000"],
        ],
        "topics": {
            "pin": (
                "输入密码",
                [["请用数字键", "输入4位密码"], ["输入完毕后", "请按确认键"], ["按取消键", "取回您的银行卡"]],
            ),
            "amount": (
                "输入金额",
                [["请用数字键", "以日元输入金额"], ["按确认键", "确定金额"], ["按取消键", "取回您的银行卡"]],
            ),
            "deposit": (
                "存款",
                [["请将纸币整理好", "放入存款口"], ["确认金额后", "请按确认键"], ["按取消键", "退还纸币和银行卡"]],
            ),
            "menu": (
                "选择业务",
                [["请按下您需要的", "业务按钮"], ["可在屏幕下方", "选择语言"], ["按取消键", "取回您的银行卡"]],
            ),
        },
    },
    "ko": {
        "title": "도움이 필요하십니까?",
        "intro": "카드가 삽입되었습니다",
        "cancel": "취소",
        "call": "호출",
        "confirm": "확인",
        "steps": [
            ["화면의 안내에", "따라 주십시오"],
            ["취소 버튼을 누르면", "카드가 반환됩니다"],
            ["호출 버튼을 누르거나 수화기를 들면", "상담원과 통화할 수 있습니다"],
            ["상담원 전화:", "0120-000-000"],
        ],
        "topics": {
            "pin": (
                "비밀번호 입력",
                [
                    ["숫자 키로 4자리", "비밀번호를 입력하십시오"],
                    ["입력이 끝나면", "확인을 누르십시오"],
                    ["취소 버튼을 누르면", "카드가 반환됩니다"],
                ],
            ),
            "amount": (
                "금액 입력",
                [
                    ["숫자 키로 금액을", "엔 단위로 입력하십시오"],
                    ["확인을 누르면", "금액이 확정됩니다"],
                    ["취소 버튼을 누르면", "카드가 반환됩니다"],
                ],
            ),
            "deposit": (
                "입금",
                [
                    ["지폐를 가지런히 하여", "입금구에 넣으십시오"],
                    ["금액을 확인하고", "확인을 누르십시오"],
                    ["취소 버튼을 누르면", "지폐와 카드가 반환됩니다"],
                ],
            ),
            "menu": (
                "거래 선택",
                [
                    ["원하시는 거래의", "버튼을 누르십시오"],
                    ["화면 아래에서", "언어를 선택할 수 있습니다"],
                    ["취소 버튼을 누르면", "카드가 반환됩니다"],
                ],
            ),
        },
    },
}


def topic_texts(lang: str, topic: str = DEFAULT_TOPIC) -> tuple[str, list[list[str]]]:
    """(title, steps) of a topic in a language."""
    t = TEXTS[lang]
    return (t["title"], t["steps"]) if topic == DEFAULT_TOPIC else t["topics"][topic]


def duration(topic: str = DEFAULT_TOPIC) -> float:
    return INTRO + STEP_LEN * len(SCENES[topic])


BG, BAR, WHITE, DIM = (70, 40, 20), (150, 90, 20), (255, 255, 255), (170, 150, 130)
GOLD, RED, GREEN, DARK = (60, 190, 240), (60, 60, 220), (80, 180, 60), (40, 25, 15)
AA, SHIFT = cv2.LINE_AA, 4


class View:
    """The 640x360 design placed on a frame of ``size``: scaled by ``k``, centred."""

    def __init__(self, size: tuple[int, int]):
        self.w, self.h = size
        self.k = min(self.w / W, self.h / H)
        self.ox, self.oy = (self.w - W * self.k) / 2, (self.h - H * self.k) / 2

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return self.ox + x * self.k, self.oy + y * self.k

    def ipt(self, x: float, y: float) -> tuple[int, int]:
        px, py = self.pt(x, y)
        return int(round(px)), int(round(py))

    def n(self, length: float) -> int:
        """A length of the design in pixels (at least 1)."""
        return max(1, int(round(length * self.k)))


@cache
def face() -> cv2.FontFace:
    return cv2.FontFace("sans")


def fit(s: str, size: int, width: int, weight: int = 400) -> int:
    """The largest font size <= ``size`` at which ``s`` fits in ``width`` pixels."""
    while size > 8 and text_width(s, size, weight) > width:
        size -= 1
    return size


def text(img, v: View, s, x, y, size=20, color=WHITE, weight=400, width=None) -> None:
    """Draw ``s`` with its baseline at design (x, y), at ``size`` design units, shrunk to fit
    ``width`` design units if given (measured at the size drawn)."""
    px_size = max(8, v.n(size))
    if width is not None:
        px_size = fit(s, px_size, int(width * v.k), weight)
    cv2.putText(img, s, v.ipt(x, y), color, face(), px_size, weight)


def centred_text(img, v: View, s, cx, y, size, color, weight, width) -> None:
    px_size = fit(s, max(8, v.n(size)), int(width * v.k), weight)
    px, py = v.ipt(cx, y)
    cv2.putText(img, s, (px - text_width(s, px_size, weight) // 2, py), color, face(), px_size, weight)


def all_strings(lang: str) -> list[str]:
    t = TEXTS[lang]
    out = [t["title"], t["intro"], t["cancel"], t["call"], t["confirm"]]
    for topic in TOPICS:
        title, steps = topic_texts(lang, topic)
        out += [title] + [line for step in steps for line in step]
    return out


def ease(x: float) -> float:
    """Smoothstep, clamped to 0..1."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def fill(img, v: View, pts, color) -> None:
    """Fill a float polygon (design units) with sub-pixel precision (smooth motion)."""
    p = np.round(np.asarray([v.pt(x, y) for x, y in pts], np.float64) * (1 << SHIFT)).astype(np.int32)
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


def draw_card(img, v: View, cx, cy) -> None:
    fill(img, v, rect_pts(cx, cy, 90, 56, r=7), (200, 120, 40))
    fill(img, v, rect_pts(cx - 22, cy - 4, 18, 14, r=3), GOLD)
    cv2.line(img, v.ipt(cx - 35, cy + 16), v.ipt(cx + 35, cy + 16), WHITE, v.n(2), AA)


def in_slot(img, v: View, cx, slot_y, out: float, draw) -> None:
    """Something standing in a slot; ``out`` 0..1 is how much of it shows."""
    draw(img, v, cx, slot_y + 28 - 56 * out)
    cv2.rectangle(img, v.ipt(cx - 62, slot_y), v.ipt(cx + 62, slot_y + 62), BG, -1)
    fill(img, v, rect_pts(cx, slot_y, 120, 10, r=4), DARK)


def card_in_slot(img, v: View, cx, slot_y, out: float) -> None:
    in_slot(img, v, cx, slot_y, out, draw_card)


def draw_notes(img, v: View, cx, cy) -> None:
    for dx in (6, 0):
        fill(img, v, rect_pts(cx + dx, cy - dx / 2, 100, 50, r=3), (90, 160, 90) if dx else (120, 200, 120))
    cv2.circle(img, v.ipt(cx, cy), v.n(12), (70, 130, 70), v.n(2), AA)


def draw_button(img, v: View, cx, cy, label, color, press=0.0) -> None:
    """A keypad button; ``press`` 0..1 sinks it into its shadow."""
    fill(img, v, rect_pts(cx, cy + 5, 110, 40, r=8), DARK)
    fill(img, v, rect_pts(cx, cy + 5 * press, 110, 40, r=8), color)
    centred_text(img, v, label, cx, cy + 7 + 5 * press, 18, WHITE, 600, 96)


def draw_keypad(img, v: View, cx, cy, t) -> None:
    """A 3x4 keypad; the keys light up one after the other, as a PIN is typed."""
    lit = int(t * 3) % 4
    order = (0, 4, 8, 10)  # keys 1, 5, 9, 0
    for r in range(4):
        for c in range(3):
            i = r * 3 + c
            x, y = cx - 44 + 44 * c, cy - 66 + 40 * r
            fill(img, v, rect_pts(x, y, 38, 32, r=5), GOLD if i == order[lit] else (120, 80, 40))
            label = "*0#"[c] if r == 3 else str(i + 1)
            centred_text(img, v, label, x, y + 7, 16, WHITE, 600, 30)


def draw_handset(img, v: View, cx, cy, angle) -> None:
    """Phone handset: a curved grip with ear and mouth pieces, rotated by angle (rad)."""
    c, s = math.cos(angle), math.sin(angle)
    arc = [(52 * math.cos(math.radians(a)), 30 - 52 * math.sin(math.radians(a)) * 0.55) for a in range(20, 161, 10)]
    pts = [v.pt(cx + x * c - y * s, cy + x * s + y * c) for x, y in arc]
    p = np.round(np.asarray(pts) * (1 << SHIFT)).astype(np.int32)
    cv2.polylines(img, [p], False, WHITE, v.n(14), AA, SHIFT)
    for ex in (-48, 48):
        x, y = ex, 26
        fill(img, v, rect_pts(cx + x * c - y * s, cy + x * s + y * c, 34, 18, angle, r=8), WHITE)


def draw_screen(img, v: View, cx, cy, t) -> None:
    """Small ATM screen with a blinking prompt and a pointer sliding to a key."""
    fill(img, v, rect_pts(cx, cy, 150, 100, r=8), DARK)
    fill(img, v, rect_pts(cx, cy, 136, 86, r=5), (120, 80, 40))
    for i, w in enumerate((90, 70, 80)):
        colour = WHITE if i != 1 or int(t * 4) % 2 == 0 else DIM
        cv2.line(img, v.ipt(cx - 55, cy - 25 + 18 * i), v.ipt(cx - 55 + w, cy - 25 + 18 * i), colour, v.n(3), AA)
    k = 0.5 - 0.5 * math.cos(2 * math.pi * min(t / 1.6, 1.0))
    x = cx + 95 - 20 * k
    fill(img, v, [(x, cy + 25), (x + 22, cy + 15), (x + 22, cy + 35)], GOLD)


def scene(img, v: View, name: str, t: float, lang: str) -> None:
    """Pictogram ``name`` at ``t`` seconds into its step (left panel)."""
    cx, cy = 130, 210
    labels = TEXTS[lang]
    if name == "screen":
        draw_screen(img, v, cx, cy, t)
    elif name == "cancel":
        card_in_slot(img, v, cx, cy - 30, ease((t - 0.5) / 0.9))
        draw_button(img, v, cx, cy + 45, labels["cancel"], RED, math.sin(math.pi * min(t / 0.6, 1.0)))
    elif name == "confirm":
        pulse = 0.5 + 0.5 * math.sin(t * 2 * math.pi)
        cv2.circle(img, v.ipt(cx, cy), v.n(34 + 10 * pulse), GREEN, v.n(2), AA)
        draw_button(img, v, cx, cy, labels["confirm"], GREEN, ease((t - 0.8) / 0.3) * (1 - ease((t - 1.3) / 0.3)))
    elif name == "keypad":
        draw_keypad(img, v, cx, cy, t)
    elif name == "notes":
        in_slot(img, v, cx, cy - 10, 1 - ease((t - 0.3) / 1.0), draw_notes)
    elif name == "call":
        lift = ease(t / 0.8)
        draw_handset(img, v, cx, cy - 40 - 25 * lift, -0.5 * lift + 0.08 * math.sin(t * 9) * lift)
        pulse = 0.5 + 0.5 * math.sin(t * 2 * math.pi)
        cv2.circle(img, v.ipt(cx, cy + 50), v.n(30 + 10 * pulse), GREEN, v.n(2), AA)
        press = ease((t - 1.0) / 0.3) * (1 - ease((t - 1.5) / 0.3))
        draw_button(img, v, cx, cy + 50, labels["call"], GREEN, press)
    else:  # the phone ringing
        draw_handset(img, v, cx, cy, 0.0)
        for k in range(3):
            r = 40 + ((t * 30 + k * 22) % 66)
            a = 1 - (r - 40) / 66  # fade into the background
            col = tuple(int(b + (w - b) * a) for b, w in zip(BG, WHITE))
            cv2.ellipse(img, v.ipt(cx, cy + 10), (v.n(r), v.n(r)), 0, 210, 330, col, v.n(3), AA)


def blend(colour, k: float):
    """``colour`` faded in from the background by ``k`` (0..1)."""
    return tuple(int(b + (c - b) * k) for b, c in zip(BG, colour))


PANEL_RIGHT = W - 16  # the text panel ends here (design units): nothing is drawn beyond it


def frame(n: int, lang: str = DEFAULT_LANGUAGE, topic: str = DEFAULT_TOPIC, size: tuple[int, int] = (W, H)):
    """Frame ``n`` of a topic's video in a language, drawn at ``size``."""
    t = n / FPS
    v = View(size)
    labels = TEXTS[lang]
    title, steps = topic_texts(lang, topic)
    img = np.full((v.h, v.w, 3), BG, np.uint8)
    cv2.rectangle(img, (0, 0), (v.w, v.ipt(0, 64)[1]), BAR, -1)
    text(img, v, title, 24, 44, 32, blend(WHITE, ease(t / 0.8)), 700, W - 48)
    cv2.line(img, v.ipt(260, 90), v.ipt(260, 340), DIM, 1, AA)
    if t < INTRO:  # intro: the card goes into its slot
        card_in_slot(img, v, 130, 230, 1 - ease((t - 0.2) / 1.0))
        centred_text(img, v, labels["intro"], 130, 290, 18, DIM, 400, 230)
    cur = int((t - INTRO) // STEP_LEN) if t >= INTRO else -1
    pitch = 248 / max(len(steps), 1)  # the steps share the panel from y=90 to 338
    for i, lines in enumerate(steps):
        if i > cur:
            break
        shown = ease((t - INTRO - i * STEP_LEN) / 0.5)  # fades in where it stays: never off the panel
        x, y = 290, 105 + pitch * i
        active = i == cur
        col = blend(WHITE if active else DIM, shown)
        cv2.circle(img, v.ipt(x + 12, y - 6), v.n(14), blend(GOLD if active else DIM, shown), -1, AA)
        centred_text(img, v, str(i + 1), x + 12, y + 1, 18, blend(DARK, shown), 700, 24)
        for j, line in enumerate(lines):
            big = topic == DEFAULT_TOPIC and i == 3 and j == 1
            colour = blend(GOLD, shown) if big and active else col
            text(img, v, line, x + 38, y + 24 * j, 26 if big else 19, colour, 700 if big else 400, PANEL_RIGHT - x - 38)
    if cur >= 0:
        scene(img, v, SCENES[topic][cur], t - INTRO - cur * STEP_LEN, lang)
    return img


def write(
    out: Path,
    lang: str,
    topic: str = DEFAULT_TOPIC,
    size: tuple[int, int] = (W, H),
    cancelled=lambda: False,
) -> Path | None:
    """Write the video (through a temporary file, so a reader never sees half of one); None,
    and no file, when ``cancelled()`` turns true between two frames. OSError if it cannot."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    if not writer.isOpened():
        raise OSError(f"cannot write {out}")
    for n in range(int(round(duration(topic) * FPS))):
        if cancelled():
            writer.release()
            tmp.unlink(missing_ok=True)
            return None
        writer.write(frame(n, lang, topic, size))
    writer.release()
    os.replace(tmp, out)
    return out


def video_name(topic: str, lang: str) -> str:
    return f"help_{lang}.mp4" if topic == DEFAULT_TOPIC else f"help_{topic}_{lang}.mp4"


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main(argv=None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=str(Path(__file__).parent))
    ap.add_argument(
        "--lang", action="append", choices=sorted(TEXTS), help="a language to draw (repeatable; default: all)"
    )
    ap.add_argument("--topic", action="append", choices=TOPICS, help="a topic to draw (repeatable; default: general)")
    ap.add_argument("--size", type=_size, default=(W, H), help="WIDTHxHEIGHT in pixels (default 640x360)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    written = []
    for topic in args.topic or [DEFAULT_TOPIC]:
        for lang in args.lang or list(TEXTS):
            missing = [c for s in all_strings(lang) for c in missing_glyphs(s)]
            if missing:
                raise SystemExit(f"{lang}: the built-in font has no glyph for {''.join(sorted(set(missing)))}")
            out = write(out_dir / video_name(topic, lang), lang, topic, args.size)
            written.append(out)
            if lang == DEFAULT_LANGUAGE and topic == DEFAULT_TOPIC:
                shutil.copyfile(out, out_dir / "help.mp4")
                written.append(out_dir / "help.mp4")
    for out in written:
        print(f"{out}: {out.stat().st_size} bytes")
    return written


if __name__ == "__main__":
    main()
