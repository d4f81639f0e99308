"""Child process that renders speech to WAV files with pyttsx3 (espeak-ng).

Reads a JSON list of jobs ``{"text", "voice", "rate", "out"}`` on stdin and
prints one JSON line per job: ``{"out", "ok", "frames"|"error", "attempts"}``. Each job is
one ``save_to_file`` + ``runAndWait`` (pyttsx3 keeps only the last queued
file), written to a temporary name and renamed into place. The parent runs
this with a timeout because pyttsx3 can hang.

Pitfall (pyttsx3 2.99, espeak driver): espeak synthesises on its own thread
and the WAV is saved from its callback, so ``runAndWait()`` may return before
the file exists. Worse, if espeak still reports "playing" when the next
``runAndWait()`` starts, pyttsx3 cancels the *next* utterance. So each job
waits for espeak to go idle, then for a completed ``finished-utterance``, and
is retried if it was cancelled.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import wave

JOB_TIMEOUT = 30.0
ATTEMPTS = 3


def _frames(path: str) -> int:
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes()
    except (OSError, EOFError, wave.Error):
        return 0


class Renderer:
    def __init__(self) -> None:
        import pyttsx3

        try:
            from pyttsx3.drivers import _espeak

            self._is_playing = _espeak.IsPlaying
        except (ImportError, AttributeError):  # other pyttsx3 layout: skip settling
            self._is_playing = lambda: 0
        self.engine = pyttsx3.init("espeak")
        self.voices = {v.id for v in self.engine.getProperty("voices")}
        self._done = threading.Event()
        self._cancelled = False
        self._props: dict = {}
        self.engine.connect("finished-utterance", self._finished)

    def _finished(self, completed=True, **_):
        if not completed:
            self._cancelled = True
        self._done.set()

    def _settle(self, timeout: float = 5.0) -> None:
        """Wait until espeak's command queue and synthesis thread are idle."""
        end = time.monotonic() + timeout
        while self._is_playing() and time.monotonic() < end:
            time.sleep(0.002)

    def _set(self, name: str, value) -> None:
        # Setting a property queues an espeak command; set only on change.
        if self._props.get(name) != value:
            self.engine.setProperty(name, value)
            self._props[name] = value

    def _once(self, job: dict, tmp: str) -> str | None:
        """Render one job into ``tmp``; return an error or None."""
        self._set("voice", job["voice"])
        self._set("rate", int(job["rate"]))
        self._settle()
        self._done.clear()
        self._cancelled = False
        self.engine.save_to_file(job["text"], tmp)
        self.engine.runAndWait()
        finished = self._done.wait(JOB_TIMEOUT)
        self._settle()
        if not finished:
            return "espeak never finished the utterance"
        if self._cancelled:
            return "utterance was cancelled"
        return None if _frames(tmp) > 0 else "empty or missing WAV"

    def render(self, job: dict) -> dict:
        out = job["out"]
        if job["voice"] not in self.voices:
            return {"out": out, "ok": False, "error": f"unknown voice {job['voice']!r}"}
        # A fresh name per attempt, so a cancelled attempt cannot write late into the next.
        tmps = [f"{out}.{os.getpid()}.{n}.tmp.wav" for n in range(ATTEMPTS)]
        try:
            for attempt, tmp in enumerate(tmps, 1):
                error = self._once(job, tmp)
                if error is None:
                    frames = _frames(tmp)
                    os.replace(tmp, out)
                    return {"out": out, "ok": True, "frames": frames, "attempts": attempt}
            return {"out": out, "ok": False, "error": error, "attempts": ATTEMPTS}
        except Exception as exc:  # one bad job must not stop the others
            return {"out": out, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for tmp in tmps:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def main() -> int:
    # pyttsx3 prints "Audio saved to ..." on stdout: keep fd 1 for results only.
    results = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    jobs = json.loads(sys.stdin.buffer.read() or b"[]")
    try:
        renderer = Renderer()
    except Exception as exc:
        for job in jobs:
            print(
                json.dumps({"out": job.get("out"), "ok": False, "error": f"pyttsx3 espeak unavailable: {exc}"}),
                file=results,
            )
        return 1
    for job in jobs:
        print(json.dumps(renderer.render(job), ensure_ascii=False), file=results)
    results.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
