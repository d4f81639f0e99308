"""Voice prompts in Chinese and Korean, escalating patterns, louder clips and
the issuer-country language choice."""

from __future__ import annotations

import array
import math
import shutil
import sys
import unicodedata
import wave
from pathlib import Path

import pytest

from agent.prompts import (
    ASSETS_DIR,
    PROMPT_IDS,
    Catalogue,
    Pattern,
    PromptCache,
    PromptError,
    cache_key,
    language_for_country,
    scale_wav,
    wav_rms,
)
from devices.speaker import Clip
from fsm.clock import Scheduler, VirtualClock
from fsm.prompter import Prompter

LANGUAGES = ["en", "ja", "ko", "zh"]
VOICES = {"en": "gmw/en", "ja": "jpx/ja", "ko": "ko", "zh": "sit/cmn-latn-pinyin"}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(ASSETS_DIR)


class SpyCache(PromptCache):
    """Records the jobs handed to the renderer."""

    def _run(self, jobs):
        self.jobs = list(jobs)
        return super()._run(jobs)


@pytest.fixture(scope="module")
def warmed(tmp_path_factory, catalogue):
    cache = SpyCache(tmp_path_factory.mktemp("prompts-i18n"), catalogue, timeout=60)
    return cache, cache.warm()


# --- the catalogue -------------------------------------------------------------


def test_four_languages_with_every_prompt(catalogue):
    assert catalogue.languages == LANGUAGES
    assert "forgotten_card_urgent" in PROMPT_IDS and "forgotten_cash_urgent" in PROMPT_IDS
    assert sorted(catalogue.prompt_ids) == sorted(PROMPT_IDS)
    for lang in LANGUAGES:
        assert catalogue.language(lang).voice == VOICES[lang]
        for pid in PROMPT_IDS:
            prompt = catalogue.prompt(pid, lang)
            assert prompt.display.strip() and prompt.speech.strip(), (lang, pid)


def _scripts(text: str) -> set[str]:
    return {unicodedata.name(ch).split()[0] for ch in text if ch.isalpha()}


def test_scripts_fit_the_voices(catalogue):
    assert catalogue.display("forgotten_card", "zh") == "您好，请不要忘记您的物品。请取回您的银行卡。"
    assert catalogue.display("forgotten_card", "ko") == "고객님, 잊으신 물건은 없으십니까? 카드를 받아 가십시오."
    for pid in PROMPT_IDS:
        assert _scripts(catalogue.speech(pid, "ko")) == {"HANGUL"}, pid
        assert _scripts(catalogue.display(pid, "zh")) == {"CJK"}, pid
        # Mandarin speech: hanzi, plus pinyin for words espeak-ng misreads
        assert _scripts(catalogue.speech(pid, "zh")) <= {"CJK", "LATIN"}, pid
        ja = catalogue.speech(pid, "ja")  # espeak-ng reads kana only
        assert all(not "\u4e00" <= ch <= "\u9fff" for ch in ja), (pid, ja)


def test_patterns_escalate(catalogue):
    card, deposit, cash = (catalogue.pattern(n) for n in ("forgotten_card", "forgotten_card_deposit", "forgotten_cash"))
    assert deposit != card and cash.prompt == "forgotten_cash"
    for pattern in (card, deposit, cash):
        assert pattern.escalate_after is not None and pattern.escalate_after <= pattern.repeats
        before, after = pattern.step(pattern.escalate_after - 1), pattern.step(pattern.escalate_after)
        assert not before.escalated and after.escalated
        assert after.volume > before.volume == 1.0
        assert after.prompt.endswith("_urgent")
        assert pattern.step(pattern.repeats) == after
    assert card.step(1).chime is False and card.step(card.escalate_after).chime is True
    assert deposit.step(deposit.escalate_after).volume == 1.6


def _edit(tmp_path, file, old, new) -> Path:
    target = tmp_path / "cat"
    if not target.exists():
        shutil.copytree(ASSETS_DIR, target)
    path = target / file
    text = path.read_text(encoding="utf-8")
    assert old in text, (file, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


DEPOSIT_ESCALATION = 'escalate_after = 3\nescalate_prompt = "forgotten_card_urgent"\nescalate_volume = 1.6'


@pytest.mark.parametrize(
    "old, new, field, problem",
    [
        (
            "escalate_volume = 1.6",
            "escalate_volume = 1.6\nescalate_loudness = 2.0",
            "forgotten_card_deposit.escalate_loudness",
            "unknown field",
        ),
        (
            '6\nescalate_after = 3\nescalate_prompt = "forgotten_card_urgent"',
            '6\nescalate_after = 3\nescalate_prompt = "forgotten_card_urgnet"',
            "forgotten_card_deposit.escalate_prompt",
            "unknown prompt id 'forgotten_card_urgnet'",
        ),
        (
            "escalate_volume = 1.6",
            'escalate_volume = "loud"',
            "forgotten_card_deposit.escalate_volume",
            "must be int or float",
        ),
        (
            "escalate_volume = 1.6",
            "escalate_volume = true",
            "forgotten_card_deposit.escalate_volume",
            "must be int or float",
        ),
        ("escalate_volume = 1.6", "escalate_volume = 5.0", "forgotten_card_deposit.escalate_volume", "outside 0.1..3"),
        ("escalate_volume = 1.6", "escalate_volume = 0", "forgotten_card_deposit.escalate_volume", "outside 0.1..3"),
        (
            "escalate_volume = 1.6",
            "escalate_volume = 1.625",
            "forgotten_card_deposit.escalate_volume",
            "more than two decimals",
        ),
        ("escalate_volume = 1.6", "escalate_volume = nan", "forgotten_card_deposit.escalate_volume", "outside"),
        (
            "6\nescalate_after = 3",
            "6\nescalate_after = 7",
            "forgotten_card_deposit.escalate_after",
            "from 2 to repeats (6)",
        ),
        (
            "6\nescalate_after = 3",
            "6\nescalate_after = 1",
            "forgotten_card_deposit.escalate_after",
            "from 2 to repeats",
        ),
        ("6\nescalate_after = 3", "6\nescalate_after = 2.5", "forgotten_card_deposit.escalate_after", "must be int"),
        (
            "6\nescalate_after = 3\n",
            "6\n",
            "forgotten_card_deposit.escalate_after",
            "missing field (needed by escalate_prompt)",
        ),
        (DEPOSIT_ESCALATION, "escalate_after = 3", "forgotten_card_deposit.escalate_after", "needs escalate_prompt"),
        (
            DEPOSIT_ESCALATION,
            'escalate_after = 3\nescalate_prompt = "forgotten_card_deposit"',
            "forgotten_card_deposit.escalate_prompt",
            "plays the same",
        ),
        ("escalate_chime = true", 'escalate_chime = "yes"', "forgotten_card.escalate_chime", "must be bool"),
        ("chime = false", "chime = false\nvolume = 0.05", "forgotten_card.volume", "outside"),
    ],
)
def test_bad_escalation_names_file_and_field(tmp_path, old, new, field, problem):
    directory = _edit(tmp_path, "patterns.toml", old, new)
    with pytest.raises(PromptError) as info:
        Catalogue.load(directory)
    assert (info.value.file, info.value.field) == ("patterns.toml", field)
    assert problem in info.value.problem
    assert str(info.value).startswith(f"patterns.toml: {field}: ")


@pytest.mark.parametrize(
    "file, pid",
    [
        ("ko.toml", "forgotten_cash_urgent"),
        ("zh.toml", "forgotten_card_urgent"),
        ("en.toml", "forgotten_card_urgent"),
        ("ja.toml", "forgotten_cash_urgent"),
    ],
)
def test_every_language_needs_the_urgent_prompts(tmp_path, file, pid):
    directory = tmp_path / "cat"
    shutil.copytree(ASSETS_DIR, directory)
    path = directory / file
    text = path.read_text(encoding="utf-8")
    start = text.index(f"[{pid}]")
    end = text.find("\n[", start + 1)
    path.write_text(text[:start] + (text[end + 1 :] if end != -1 else ""), encoding="utf-8")
    with pytest.raises(PromptError) as info:
        Catalogue.load(directory)
    assert (info.value.file, info.value.field, info.value.problem) == (file, pid, "missing prompt")


def test_bad_voice_file_fields(tmp_path):
    directory = _edit(tmp_path, "zh.toml", 'language = "zh"', 'language = "cn"')
    with pytest.raises(PromptError) as info:
        Catalogue.load(directory)
    assert (info.value.file, info.value.field) == ("zh.toml", "meta.language")


# --- rendering -------------------------------------------------------------------


def test_zh_and_ko_render_real_wavs_with_their_voices(warmed, catalogue):
    cache, report = warmed
    assert report.ok, report.failed
    assert len(report.rendered) == len(LANGUAGES) * len(PROMPT_IDS)
    voices = {job["voice"] for job in cache.jobs}
    assert voices == set(VOICES.values())
    for lang in ("zh", "ko"):
        meta = catalogue.language(lang)
        for pid in ("forgotten_card", "forgotten_card_urgent", "welcome"):
            clip = cache.clip(pid, lang)
            assert clip is not None and clip.language == lang and clip.prompt_id == pid
            key = cache_key(catalogue.speech(pid, lang), VOICES[lang], meta.rate)
            assert Path(clip.path).name == f"{key}.wav"  # rendered with that voice
            jobs = [j for j in cache.jobs if j["out"] == clip.path]
            assert jobs and jobs[0]["voice"] == VOICES[lang]
            with wave.open(clip.path, "rb") as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
                seconds = w.getnframes() / w.getframerate()
            assert seconds > 1.0 and clip.duration == pytest.approx(seconds)
            assert wav_rms(clip.path) > 500  # speech, not silence


def test_escalated_clips_are_louder_and_warmed(warmed, catalogue):
    cache, report = warmed
    assert sorted(report.derived) == sorted(
        [f"{lang}/{pid}@{vol:g}" for pid, lang, vol in cache.variants()]
        + [f"chime@{vol:g}" for vol in cache.chime_volumes()]
    )
    assert ("forgotten_card_urgent", "zh", 1.6) in cache.variants()
    assert cache.chime_volumes() == [1.3, 1.6]
    assert cache.missing() == []
    for lang in LANGUAGES:
        normal = cache.clip("forgotten_card_urgent", lang)
        loud = cache.clip("forgotten_card_urgent", lang, volume=1.6)
        assert loud is not None and loud.path != normal.path
        assert loud.duration == pytest.approx(normal.duration)
        assert wav_rms(loud.path) > 1.4 * wav_rms(normal.path), lang
        assert cache.clip("forgotten_card_urgent", lang, 1.6) is loud  # memoised lookup
        louder = cache.clip("forgotten_card_urgent", lang, 1.3)
        assert wav_rms(normal.path) < wav_rms(louder.path) < wav_rms(loud.path)
        assert cache.clip("forgotten_card_urgent", lang, 2.0) is None  # no pattern plays it
    assert wav_rms(cache.chime(1.6).path) > 1.5 * wav_rms(cache.chime().path)
    again = cache.warm()
    assert again.rendered == [] and again.derived == [] and again.ok


def _write(path, samples, rate=8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        data = array.array("h", samples)
        if sys.byteorder == "big":
            data.byteswap()
        w.writeframes(data.tobytes())


def _read(path):
    with wave.open(str(path), "rb") as w:
        data = array.array("h")
        data.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        data.byteswap()
    return list(data)


def test_scale_wav_gain_and_soft_limit(tmp_path):
    quiet = [int(8000 * math.sin(i / 7)) for i in range(800)]
    _write(tmp_path / "q.wav", quiet)
    scale_wav(tmp_path / "q.wav", tmp_path / "q2.wav", 2.0)
    assert _read(tmp_path / "q2.wav") == [2 * x for x in quiet]  # below the knee: exact
    loud = [-32768, -30000, -20000, 0, 20000, 25000, 30000, 32767]
    _write(tmp_path / "l.wav", loud)
    scale_wav(tmp_path / "l.wav", tmp_path / "l2.wav", 1.6)
    out = _read(tmp_path / "l2.wav")
    assert all(abs(y) <= 32767 for y in out) and out == sorted(out)  # no wrap, still monotonic
    assert all(abs(y) > abs(x) for x, y in zip(loud, out) if 0 < abs(x) < 32767)
    assert not list(tmp_path.glob("*.tmp"))


# --- the prompter ---------------------------------------------------------------


class FakeSpeaker:
    usable = True

    def __init__(self, clock):
        self.clock = clock
        self.played: list[tuple[float, str, str]] = []  # (t, prompt_id, path)
        self.stopped: list[float] = []
        self._until = 0.0

    def play(self, clip):
        self.played.append((self.clock.now(), clip.prompt_id, clip.path))
        self._until = self.clock.now() + clip.duration

    def stop(self):
        self.stopped.append(self.clock.now())
        self._until = 0.0

    @property
    def playing(self):
        return self.clock.now() < self._until


class FakeDisplay:
    def __init__(self):
        self.shown = []

    def show(self, screen, text, **fields):
        self.shown.append((screen, text, fields))


class FakeLibrary:
    """Clips by (prompt_id, volume); patterns by name."""

    def __init__(self, patterns, clips):
        self.patterns, self.clips = patterns, clips

    def clip(self, prompt_id, language, volume=1.0):
        return self.clips.get((prompt_id, volume))

    def chime(self, volume=1.0):
        return self.clips.get(("chime", volume))

    def pattern(self, name):
        return self.patterns[name]

    def display(self, prompt_id, language):
        return f"<{prompt_id}>"


def _clip(pid, volume=1.0, duration=2.0):
    return Clip(pid, "zh", f"/c/{pid}@{volume:g}.wav", duration)


def _rig(pattern, clips):
    clock = VirtualClock()
    scheduler = Scheduler(clock)
    events = []
    speaker, display = FakeSpeaker(clock), FakeDisplay()
    library = FakeLibrary({pattern.name: pattern}, {(c.prompt_id, v): c for c, v in clips})
    prompter = Prompter(
        scheduler, speaker, display, library, lambda kind, **f: events.append({"type": kind, "t": clock.now(), **f})
    )
    return clock, scheduler, speaker, display, prompter, events


def _run_until(clock, scheduler, end):
    while (deadline := scheduler.next_deadline()) is not None and deadline <= end:
        clock.advance_to(deadline)
        scheduler.run_due()
    clock.advance_to(end)


ESCALATING = Pattern(
    "forgotten_card_deposit",
    "forgotten_card_deposit",
    chime=True,
    interval=7.0,
    repeats=4,
    escalate_after=3,
    escalate_prompt="forgotten_card_urgent",
    escalate_volume=1.6,
)
ALL_CLIPS = [
    (_clip("chime", 1.0, 1.0), 1.0),
    (_clip("chime", 1.6, 1.0), 1.6),
    (_clip("forgotten_card_deposit"), 1.0),
    (_clip("forgotten_card_urgent", 1.6), 1.6),
    (_clip("forgotten_card_urgent"), 1.0),
]


def test_prompter_chimes_then_escalates_on_the_configured_repeat():
    clock, scheduler, speaker, display, prompter, events = _rig(ESCALATING, ALL_CLIPS)
    prompter.start("forgotten_card_deposit", "zh")
    assert speaker.played == [(0.0, "chime", "/c/chime@1.wav")]  # the chime, then the words
    _run_until(clock, scheduler, 40.0)
    assert speaker.played == [
        (0.0, "chime", "/c/chime@1.wav"),
        (1.0, "forgotten_card_deposit", "/c/forgotten_card_deposit@1.wav"),
        (7.0, "chime", "/c/chime@1.wav"),
        (8.0, "forgotten_card_deposit", "/c/forgotten_card_deposit@1.wav"),
        (14.0, "chime", "/c/chime@1.6.wav"),
        (15.0, "forgotten_card_urgent", "/c/forgotten_card_urgent@1.6.wav"),
        (21.0, "chime", "/c/chime@1.6.wav"),
        (22.0, "forgotten_card_urgent", "/c/forgotten_card_urgent@1.6.wav"),
    ]
    plays = [e for e in events if e["action"] == "play"]
    assert [(e["t"], e["prompt"], e["repeat"], e["volume"], e["escalated"]) for e in plays] == [
        (1.0, "forgotten_card_deposit", 1, 1.0, False),
        (8.0, "forgotten_card_deposit", 2, 1.0, False),
        (15.0, "forgotten_card_urgent", 3, 1.6, True),
        (22.0, "forgotten_card_urgent", 4, 1.6, True),
    ]
    for e in plays:
        assert e["type"] == "prompt" and e["language"] == "zh"
        assert e["pattern"] == "forgotten_card_deposit" and e["spoken"] and e["chime"]
        assert "requested_volume" not in e
    assert display.shown == []


def test_prompter_escalation_can_add_the_chime_and_stop_cancels():
    pattern = Pattern(
        "forgotten_card",
        "forgotten_card",
        chime=False,
        interval=10.0,
        repeats=3,
        escalate_after=2,
        escalate_prompt="forgotten_card_urgent",
        escalate_volume=1.6,
        escalate_chime=True,
    )
    clips = ALL_CLIPS + [(_clip("forgotten_card"), 1.0)]
    clock, scheduler, speaker, display, prompter, events = _rig(pattern, clips)
    prompter.start("forgotten_card", "zh")
    assert [p[1] for p in speaker.played] == ["forgotten_card"]  # no chime at first
    _run_until(clock, scheduler, 11.5)
    assert [p[:2] for p in speaker.played] == [
        (0.0, "forgotten_card"),
        (10.0, "chime"),
        (11.0, "forgotten_card_urgent"),
    ]
    prompter.stop("customer_returned")
    assert speaker.stopped == [11.5]
    _run_until(clock, scheduler, 60.0)
    assert len(speaker.played) == 3
    assert events[-1] == {
        "type": "prompt",
        "t": 11.5,
        "action": "stop",
        "pattern": "forgotten_card",
        "reason": "customer_returned",
    }
    assert [e.get("chime") for e in events if e["action"] == "play"] == [False, True]


def test_prompter_falls_back_to_normal_volume_then_to_text():
    clips = [c for c in ALL_CLIPS if c[1] == 1.0]  # no louder copies in the cache
    clock, scheduler, speaker, display, prompter, events = _rig(ESCALATING, clips)
    prompter.start("forgotten_card_deposit", "zh")
    _run_until(clock, scheduler, 16.0)
    assert speaker.played[-2:] == [
        (14.0, "chime", "/c/chime@1.wav"),
        (15.0, "forgotten_card_urgent", "/c/forgotten_card_urgent@1.wav"),
    ]
    last = [e for e in events if e["action"] == "play"][-1]
    assert (last["prompt"], last["volume"], last["requested_volume"]) == ("forgotten_card_urgent", 1.0, 1.6)
    prompter.stop("done")
    prompter.say("take_card", "ko")  # not rendered: the text is shown
    assert display.shown == [("prompt", "<take_card>", {"prompt": "take_card"})]
    assert events[-1] == {
        "type": "prompt",
        "t": 16.0,
        "action": "play",
        "prompt": "take_card",
        "language": "ko",
        "pattern": None,
        "repeat": 0,
        "volume": 1.0,
        "spoken": False,
    }


def test_prompter_with_the_real_cache_plays_the_louder_files(warmed, catalogue):
    cache, _ = warmed
    clock = VirtualClock()
    scheduler = Scheduler(clock)
    speaker, events = FakeSpeaker(clock), []

    class Library:
        clip, chime, pattern = cache.clip, cache.chime, catalogue.pattern
        display = catalogue.display

    prompter = Prompter(scheduler, speaker, FakeDisplay(), Library(), lambda kind, **f: events.append(f))
    pattern = catalogue.pattern("forgotten_cash")
    prompter.start("forgotten_cash", "ko")
    _run_until(clock, scheduler, pattern.interval * pattern.repeats)
    words = [(pid, path) for _, pid, path in speaker.played if pid != "chime"]
    assert len(words) == pattern.repeats
    normal = cache.clip("forgotten_cash", "ko").path
    urgent = cache.clip("forgotten_cash_urgent", "ko", pattern.escalate_volume).path
    k = pattern.escalate_after
    assert words == [("forgotten_cash", normal)] * (k - 1) + [("forgotten_cash_urgent", urgent)] * (
        pattern.repeats - k + 1
    )
    chimes = [path for _, pid, path in speaker.played if pid == "chime"]
    assert chimes[k - 1] == cache.chime(pattern.escalate_volume).path != chimes[0]
    assert [e["volume"] for e in events] == [1.0] * (k - 1) + [pattern.escalate_volume] * (pattern.repeats - k + 1)


def test_every_step_fits_its_interval(warmed, catalogue):
    cache, _ = warmed
    for name in catalogue.patterns:
        pattern = catalogue.pattern(name)
        for step in pattern.steps():
            chime = cache.chime(step.volume).duration if step.chime else 0.0
            for lang in LANGUAGES:
                words = cache.clip(step.prompt, lang, step.volume).duration
                assert chime + words < pattern.interval, (name, step, lang)


# --- issuer country -> language ------------------------------------------------------

ALL = ["ja", "en", "zh", "ko"]


@pytest.mark.parametrize(
    "country, available, default, expected",
    [
        ("0392", ALL, "ja", "ja"),
        ("392", ALL, "en", "ja"),
        ("0156", ALL, "ja", "zh"),
        ("0158", ALL, "ja", "zh"),
        ("0344", ALL, "ja", "zh"),
        ("0702", ALL, "ja", "zh"),
        ("0410", ALL, "ja", "ko"),
        ("0840", ALL, "ja", "en"),
        ("0826", ALL, "ja", "en"),
        ("0250", ALL, "ja", "en"),
        ("0408", ALL, "ja", "en"),  # North Korea is not 0410
        ("0156", ["ja", "en"], "ja", "en"),  # no Chinese here: English
        ("0410", ["ja"], "ja", "ja"),  # neither: the default
        ("0840", ["ja", "zh"], "ja", "ja"),
        ("", ALL, "ja", "ja"),
        ("0000", ALL, "ko", "ko"),
        ("0999", ALL, "ja", "ja"),
        ("JP", ALL, "ja", "ja"),
        ("03920", ALL, "zh", "zh"),
        (" 0392 ", ALL, "en", "ja"),
        ("１５６", ALL, "ja", "ja"),  # full-width digits are not a code
    ],
)
def test_language_for_country(country, available, default, expected):
    assert language_for_country(country, available, default) == expected


def test_language_for_country_tolerates_none():
    assert language_for_country(None, ALL, "en") == "en"
