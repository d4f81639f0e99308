"""Real backends that run here: ALSA playback through aplay, the terminal keypad."""

import io
import os
import shutil
import time
import wave

import pytest

from devices.base import DeviceContext, DeviceStatus
from devices.registry import create_device
from devices.speaker import Clip
from hw_mocks.servers.wait import wait_for

needs_aplay = pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay (alsa-utils) missing")


def _wav(path, seconds=0.5):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))
    return Clip("take_card", "en", str(path), seconds)


@needs_aplay
def test_aplay_speaker_plays_to_an_alsa_pcm(tmp_path):
    speaker = create_device("speaker", "aplay://null", DeviceContext())
    speaker.open()
    assert speaker.status is DeviceStatus.ONLINE
    speaker.play(_wav(tmp_path / "a.wav"))
    proc = speaker._proc
    assert proc.wait(5) == 0, proc.stderr.read()


@needs_aplay
def test_aplay_speaker_stops_at_once(tmp_path):
    fifo = tmp_path / "never.wav"
    os.mkfifo(fifo)  # aplay blocks reading it: a clip that never ends
    speaker = create_device("speaker", "aplay://null", DeviceContext())
    speaker.open()
    speaker.play(Clip("forgotten_card", "ja", str(fifo), 10.0))
    wait_for(lambda: speaker.playing, 2, message="aplay to start")
    start = time.monotonic()
    speaker.stop()
    assert not speaker.playing and time.monotonic() - start < 1.0


def test_terminal_keypad_turns_lines_into_events(monkeypatch):
    events = []
    monkeypatch.setattr("sys.stdin", io.StringIO("1234\nwithdrawal\n20000\nc\n"))
    keypad = create_device(
        "keypad", "terminal://", DeviceContext(emit=lambda kind, name, data: events.append((name, data)))
    )
    keypad.set_mode("pin")
    keypad.open()
    wait_for(lambda: [e for e in events if e[0] != "key"], 2, message="the PIN event")
    names = [n for n, _ in events if n != "key"]
    assert names[0] == "pin" and "1234" not in repr(events[1][1]["pin"])
    assert events[1][1]["pin"].matches("1234")


def test_keypad_modes_validate_entries():
    events = []
    keypad = create_device("keypad", "sim://", DeviceContext(emit=lambda k, n, d: events.append((n, d))))
    keypad.set_mode("choice", ["balance"])
    keypad.customer_enter("withdrawal")
    keypad.customer_enter("balance")
    keypad.set_mode("amount")
    keypad.customer_enter("12x")
    keypad.customer_enter("5000")
    keypad.customer_enter("cancel")
    assert [n for n, _ in events if n != "key"] == ["invalid_key", "choice", "invalid_key", "amount", "cancel"]
    with pytest.raises(ValueError):
        keypad.set_mode("telepathy")


def test_keypad_refuses_unicode_digits_and_absurd_amounts():
    events = []
    keypad = create_device("keypad", "sim://", DeviceContext(emit=lambda k, n, d: events.append(n)))
    keypad.set_mode("amount")
    keypad.customer_enter("²")
    keypad.customer_enter("9" * 5000)
    keypad.set_mode("pin")
    keypad.customer_enter("١٢٣٤")
    assert [n for n in events if n != "key"] == ["invalid_key"] * 3
