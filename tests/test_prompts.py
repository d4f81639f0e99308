"""Voice prompts: catalogue validation, the WAV cache and the sim speaker."""

from __future__ import annotations

import shutil
import sys
import time
import wave
from pathlib import Path

import pytest

from agent.prompts import ASSETS_DIR, PROMPT_IDS, Catalogue, PromptCache, PromptError, cache_key, default_cache_dir
from devices.base import DeviceContext
from devices.registry import create_device
from devices.speaker import Clip
from fsm.clock import Scheduler, VirtualClock


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.load(ASSETS_DIR)


@pytest.fixture(scope="session")
def warmed(tmp_path_factory, catalogue):
    """A cache rendered once for the whole session, with its first report."""
    cache = PromptCache(tmp_path_factory.mktemp("prompts"), catalogue, timeout=60)
    return cache, cache.warm()


def test_japanese_forgotten_card_is_a_real_wav(warmed):
    cache, report = warmed
    assert report.ok, report.failed
    assert len(report.rendered) == 4 * len(PROMPT_IDS)
    clip = cache.clip("forgotten_card", "ja")
    assert clip is not None and clip.language == "ja"
    with wave.open(clip.path, "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
        seconds = w.getnframes() / w.getframerate()
    assert seconds > 0.5
    assert clip.duration == pytest.approx(seconds)


def test_cache_is_keyed_and_second_warm_renders_nothing(warmed, catalogue):
    cache, _ = warmed
    report = cache.warm()
    assert report.rendered == [] and report.failed == {}
    assert report.cached == 4 * len(PROMPT_IDS)
    assert cache.missing() == []
    ja = catalogue.language("ja")
    key = cache_key(catalogue.speech("forgotten_card", "ja"), ja.voice, ja.rate)
    assert Path(cache.clip("forgotten_card", "ja").path).name == f"{key}.wav"
    assert cache_key("a", ja.voice, ja.rate) != cache_key("a", ja.voice, ja.rate + 1)
    assert cache.clip("forgotten_card", "ja") is cache.clip("forgotten_card", "ja")


def test_display_keeps_kanji_and_speech_is_kana(catalogue):
    assert catalogue.languages == ["en", "ja", "ko", "zh"]
    assert catalogue.display("forgotten_card", "ja") == "お客さま、お忘れものはございませんか？カードをお取りください。"
    assert "詐欺" in catalogue.display("transfer_caution", "ja")
    for pid in PROMPT_IDS:
        speech = catalogue.speech(pid, "ja")
        assert all(not "\u4e00" <= ch <= "\u9fff" for ch in speech), (pid, speech)


def test_chime_is_a_short_two_tone_wav(warmed):
    cache, _ = warmed
    clip = cache.chime()
    assert clip.prompt_id == "chime" and Path(clip.path).parent == cache.directory
    assert 0.3 < clip.duration < 2.0
    with wave.open(clip.path, "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)


def test_patterns_load_and_deposit_pattern_differs(warmed, catalogue):
    cache, _ = warmed
    card, deposit = catalogue.pattern("forgotten_card"), catalogue.pattern("forgotten_card_deposit")
    assert deposit.prompt == "forgotten_card_deposit"
    assert deposit.chime and not card.chime
    assert deposit.interval < card.interval and deposit.repeats > card.repeats
    for name in catalogue.patterns:  # the next start must not cut the words short
        pattern = catalogue.pattern(name)
        chime = cache.chime().duration if pattern.chime else 0.0
        for lang in catalogue.languages:
            assert chime + cache.clip(pattern.prompt, lang).duration < pattern.interval, (name, lang)


def _edit(tmp_path, file, old, new) -> Path:
    target = tmp_path / "cat"
    shutil.copytree(ASSETS_DIR, target)
    path = target / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


@pytest.mark.parametrize(
    "file, old, new, field",
    [
        ("ja.toml", 'speech = "かーどを おとりください。"', "", "take_card.speech"),
        ("ja.toml", "rate = 140", 'rate = "slow"', "meta.rate"),
        ("en.toml", 'voice = "gmw/en"', "", "meta.voice"),
        ("en.toml", "[declined]", "[declinde]", "declined"),
        ("patterns.toml", 'prompt = "forgotten_cash"', 'prompt = "forgoten_cash"', "forgotten_cash.prompt"),
        ("patterns.toml", "repeats = 3", 'repeats = "3"', "forgotten_card.repeats"),
        ("patterns.toml", "chime = false", "chime = 0", "forgotten_card.chime"),
        ("patterns.toml", "interval = 7.0", "interval = true", "forgotten_card_deposit.interval"),
    ],
)
def test_bad_catalogue_names_file_and_field(tmp_path, file, old, new, field):
    directory = _edit(tmp_path, file, old, new)
    with pytest.raises(PromptError) as info:
        Catalogue.load(directory)
    assert (info.value.file, info.value.field) == (file, field)
    assert file in str(info.value) and field in str(info.value)


HANG_AFTER_ONE = """
import json, shutil, sys, time
jobs = json.load(sys.stdin)
shutil.copy(sys.argv[1], jobs[0]["out"])
print(json.dumps({"out": jobs[0]["out"], "ok": True}), flush=True)
open(jobs[1]["out"] + ".999.0.tmp.wav", "wb").write(b"RIFF")
time.sleep(30)
"""


def test_hanging_renderer_is_reported_not_raised(tmp_path, catalogue, warmed):
    cache = PromptCache(tmp_path, catalogue, timeout=1.0)
    cache.command = (sys.executable, "-c", HANG_AFTER_ONE, warmed[0].chime().path)
    start = time.monotonic()
    report = cache.warm()
    assert time.monotonic() - start < 5
    assert report.rendered == ["en/card_blocked"]  # the first in order, finished before the hang
    assert len(report.failed) == 4 * len(PROMPT_IDS) - 1
    assert all("timed out after 1 s" in reason for reason in report.failed.values())
    assert cache.clip("forgotten_card", "ja") is None  # caller shows the text
    assert cache.chime().duration > 0  # the chime needs no speech engine
    assert not list(tmp_path.glob("*.tmp.wav"))


def test_crashing_renderer_is_reported(tmp_path, catalogue):
    cache = PromptCache(tmp_path, catalogue)
    cache.command = (sys.executable, "-c", "import sys; sys.exit('boom')")
    report = cache.warm()
    assert not report.ok and "exited with 1: boom" in report.failed["ja/welcome"]


def test_unknown_voice_fails_instead_of_falling_back(tmp_path):
    directory = _edit(tmp_path, "en.toml", 'voice = "gmw/en"', 'voice = "xx/none"')
    cache = PromptCache(tmp_path / "cache", Catalogue.load(directory))
    report = cache.warm()
    assert "unknown voice" in report.failed["en/welcome"]
    assert "ja/welcome" in report.rendered


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "atm-agent" / "prompts"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "atm-agent" / "prompts"


def test_sim_speaker_records_plays_and_stop():
    clock = VirtualClock()
    scheduler = Scheduler(clock)
    events = []
    ctx = DeviceContext(scheduler=scheduler, emit=lambda kind, name, data: events.append((kind, name, data)))
    speaker = create_device("speaker", "sim://", ctx)
    speaker.open()
    clip = Clip("forgotten_card", "ja", "/x/a.wav", 2.5)
    clock.advance(1.0)
    speaker.play(clip)
    assert speaker.playing
    clock.advance(2.5)
    scheduler.run_due()
    assert not speaker.playing
    speaker.play(clip)
    clock.advance(1.0)
    speaker.stop()
    assert not speaker.playing
    speaker.stop()  # idle: nothing more recorded
    assert [p["t"] for p in speaker.played] == [1.0, 3.5]
    assert speaker.played[0] == {
        "t": 1.0,
        "prompt_id": "forgotten_card",
        "language": "ja",
        "path": "/x/a.wav",
        "duration": 2.5,
    }
    assert speaker.stopped == [4.5]
    assert events == []  # like a real speaker: the prompter reports what plays


def test_sim_speaker_without_scheduler():
    speaker = create_device("speaker", "sim://", DeviceContext())
    speaker.play(Clip("chime", "", "/x/chime.wav", 60.0))
    assert speaker.playing and speaker.played[0]["t"] == 0.0
    speaker.stop()
    assert not speaker.playing and speaker.stopped == [0.0]


def test_an_unusable_cache_directory_fails_at_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = PromptCache(blocker / "prompts", Catalogue.load(), timeout=60)
    report = cache.warm()
    assert report.seconds < 5 and not report.ok
    assert "cannot write the cache" in report.failed["chime"]
    assert cache.clip("forgotten_card", "ja") is None
