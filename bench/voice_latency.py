"""Customer walked away -> first sample of the forgotten-card prompt written to ALSA.

The edge is the state machine's debounced ``customer_left``: the moment
``Prompter.start("forgotten_card", lang)`` is called (``ATM.start_forgotten_prompt``).
The Prompter runs on the real clock and scheduler, with a headless ``sim://``
display and the real ``aplay://`` speaker, side by side in one run:

1. Cached: the WAV rendered beforehand by ``PromptCache.warm()`` (into a private
   temporary cache), as the firmware does (target: p99 <= 100 ms).
2. On demand: the prompt is rendered with pyttsx3 + espeak-ng at the edge, then
   played the same way; once with the engine already initialised in this
   process, once in a fresh renderer child (``agent.render_speech``, which is how
   the firmware runs pyttsx3, under a time-out because it can hang).

"First sample written to ALSA": the speaker's PCM is alsa.conf's ``pcm.file``
(``file:FILE=<fifo>,FORMAT=raw``: the ``file`` plugin over the ``null`` PCM), so
the samples aplay writes to ALSA are copied, raw, into a FIFO this process
polls. No sound card and no private ALSA configuration are needed.

    .venv/bin/python bench/voice_latency.py [--rounds N] [--demand-rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.prompts import Catalogue, PromptCache, wav_duration  # noqa: E402
from agent.runtime import ASSETS, VoiceLibrary  # noqa: E402
from devices.base import DeviceContext  # noqa: E402
from devices.display import Display  # noqa: E402
from devices.registry import create_device  # noqa: E402
from devices.speaker import Clip, Speaker  # noqa: E402
from fsm.clock import RealClock, Scheduler  # noqa: E402
from fsm.prompter import Prompter  # noqa: E402

PATTERN = "forgotten_card"  # no chime on the first repeat: the words come first
LANGUAGE = "en"
FIRST_SAMPLE_TIMEOUT = 5.0  # seconds; a round without a sample by then is counted as failed
SAFE_PATH = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-.")


class FifoPcm:
    """An ALSA PCM whose samples arrive on a FIFO that this process watches.

    alsa.conf defines ``pcm.file`` with arguments FILE and FORMAT: the ``file``
    plugin, which passes the samples to the ``null`` PCM and copies them into
    FILE. With FORMAT=raw the first bytes on the FIFO are the first samples
    (no WAV header). Two caveats, both negligible here:

    * the plugin copies a write to FILE once more than one ALSA buffer is
      queued (so aplay's pre-fill before start), and the ``null`` slave takes
      samples as fast as aplay writes them, so the first bytes follow the first
      ``snd_pcm_writei`` by the CPU time of a few periods (aplay writes a whole
      clip through it in ~3 ms);
    * a FIFO holds 64 KiB, so aplay then blocks until it is read or killed.

    The FIFO stays open here for reading, and for writing too, so that aplay
    closing it does not leave a permanent end-of-file between rounds.
    """

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "pcm_fifo")
        if not set(self.path) <= SAFE_PATH:
            raise RuntimeError(f"{self.path!r}: ALSA's argument syntax needs a plainer temporary path")
        os.mkfifo(self.path, 0o600)
        self.rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.keep = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self.poller = select.poll()
        self.poller.register(self.rfd, select.POLLIN)

    @property
    def pcm(self) -> str:
        return f"file:FILE={self.path},FORMAT=raw"

    def wait_first(self, timeout: float) -> tuple[float, int] | None:
        """``(perf_counter when bytes were readable, bytes read)``, or None on time-out."""
        if not self.poller.poll(timeout * 1000):
            return None
        now = time.perf_counter()
        return now, len(os.read(self.rfd, 1 << 20))

    def drain(self) -> int:
        n = 0
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 20)
            except BlockingIOError:
                return n
            n += len(chunk)

    def close(self) -> None:
        os.close(self.keep)
        os.close(self.rfd)
        os.unlink(self.path)


class InProcessRenderer:
    """pyttsx3 (espeak driver) initialised once in this process: the fastest on-demand case."""

    def __init__(self):
        from agent.render_speech import Renderer

        self.renderer = Renderer()

    def render(self, job: dict) -> bool:
        with contextlib.redirect_stdout(io.StringIO()):  # pyttsx3 prints "Audio saved to ..."
            return bool(self.renderer.render(job).get("ok"))


class ChildRenderer:
    """A fresh ``agent.render_speech`` child per prompt, as PromptCache runs pyttsx3."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), self.env.get("PYTHONPATH")]))

    def render(self, job: dict) -> bool:
        proc = subprocess.run(
            [sys.executable, "-m", "agent.render_speech"],
            input=json.dumps([job]).encode(),
            capture_output=True,
            timeout=self.timeout,
            env=self.env,
        )
        lines = proc.stdout.decode(errors="replace").splitlines()
        return bool(lines) and bool(json.loads(lines[-1]).get("ok"))


class OnDemandVoice(VoiceLibrary):
    """The firmware's voice library, except that ``clip()`` renders the speech now."""

    def __init__(self, catalogue: Catalogue, cache: PromptCache, renderer, directory: str):
        super().__init__(catalogue, cache)
        self.renderer = renderer
        self.directory = directory
        self.rendered = 0
        self.clip = self._render

    def _render(self, prompt_id: str, lang: str, volume: float = 1.0) -> Clip | None:
        meta = self.catalogue.language(lang)
        self.rendered += 1
        out = os.path.join(self.directory, f"on-demand-{self.rendered}.wav")  # never a cached file
        job = {"text": self.catalogue.speech(prompt_id, lang), "voice": meta.voice, "rate": meta.rate, "out": out}
        if not self.renderer.render(job):
            return None
        duration = wav_duration(out)
        return Clip(prompt_id, lang, out, duration) if duration else None


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"rounds": 0}
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
        "rounds": len(ordered),
    }


def measure(library, fifo: FifoPcm, rounds: int, rng: random.Random) -> dict:
    """``rounds`` times: customer left -> first sample on the FIFO, then stop the prompt."""
    scheduler = Scheduler(RealClock())
    ctx = DeviceContext(scheduler=scheduler)
    speaker = create_device("speaker", f"aplay://{fifo.pcm}", ctx)
    assert isinstance(speaker, Speaker)
    display = create_device("display", "sim://", ctx)
    assert isinstance(speaker, Speaker) and isinstance(display, Display)  # what the locators name
    speaker.open()
    display.open()
    if not speaker.usable:
        raise RuntimeError(f"speaker not usable: {speaker.describe()['faults']}")
    events: list[tuple[str, dict]] = []
    prompter = Prompter(scheduler, speaker, display, library, lambda kind, **f: events.append((kind, f)))
    edge_to_sample, edge_to_spawned, first_bytes = [], [], []
    failed = killed = 0
    try:
        for _ in range(rounds):
            fifo.drain()
            events.clear()
            t0 = time.perf_counter()  # debounced customer_left
            prompter.start(PATTERN, LANGUAGE)
            spawned = time.perf_counter()  # aplay forked and exec'd
            first = fifo.wait_first(FIRST_SAMPLE_TIMEOUT)
            plays = [f for kind, f in events if kind == "prompt" and f.get("action") == "play"]
            if not plays or not plays[0]["spoken"]:
                raise RuntimeError(f"the prompt was not spoken (shown instead?): {events}")
            if first is None:
                failed += 1
            else:
                edge_to_sample.append(first[0] - t0)
                edge_to_spawned.append(spawned - t0)
                first_bytes.append(first[1])
            killed += speaker.playing  # still writing (blocked on the FIFO)
            prompter.stop("bench")  # cancels the repeats; speaker.stop() kills aplay
            if speaker.playing:
                raise RuntimeError("aplay is still running after stop()")
            scheduler.run_due()
            fifo.drain()
            time.sleep(rng.uniform(0.02, 0.06))  # let the next edge fall at no fixed phase
    finally:
        prompter.stop("bench")
        speaker.close()
        display.close()
    result = _stats(edge_to_sample)
    result.update(
        failed=failed,
        killed=killed,
        spawn_p50_ms=statistics.median(edge_to_spawned) * 1000 if edge_to_spawned else None,
        first_read_bytes=statistics.median(first_bytes) if first_bytes else None,
    )
    return result


def run(rounds: int = 50, demand_rounds: int = 10, seed: int = 1) -> dict:
    rng = random.Random(seed)
    catalogue = Catalogue.load(ASSETS / "prompts")
    with tempfile.TemporaryDirectory(prefix="voice_latency_") as directory:
        cache = PromptCache(os.path.join(directory, "cache"), catalogue)
        warm = cache.warm()
        if not warm.ok or cache.clip(catalogue.pattern(PATTERN).prompt, LANGUAGE) is None:
            raise RuntimeError(f"warming the prompt cache failed: {warm.failed}")
        fifo = FifoPcm(directory)
        try:
            cached = measure(VoiceLibrary(catalogue, cache), fifo, rounds, rng)
            renders = os.path.join(directory, "renders")
            os.mkdir(renders)
            in_process = measure(
                OnDemandVoice(catalogue, cache, InProcessRenderer(), renders), fifo, demand_rounds, rng
            )
            child = measure(OnDemandVoice(catalogue, cache, ChildRenderer(), renders), fifo, demand_rounds, rng)
        finally:
            fifo.close()
    return {
        "warm_seconds": warm.seconds,
        "warm_rendered": len(warm.rendered),
        "cached": cached,
        "on_demand": in_process,
        "on_demand_child": child,
    }


def report(r: dict) -> None:
    def line(label: str, s: dict, extra: str = "") -> None:
        if not s.get("rounds"):
            print(f"{label:<52}: no first sample in any round ({s.get('failed', 0)} failed)")
            return
        print(
            f"{label:<52}: p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  (min {s['min_ms']:.1f},"
            f" max {s['max_ms']:.1f}; {s['rounds']} rounds, {s['failed']} failed;"
            f" start() returned after {s['spawn_p50_ms']:.1f} ms p50){extra}"
        )

    c, d, k = r["cached"], r["on_demand"], r["on_demand_child"]
    print(f"prompt cache warmed beforehand: {r['warm_rendered']} WAVs in {r['warm_seconds']:.2f} s (not timed below)")
    line("customer left -> first sample, cached WAV", c, "  target p99 <= 100 ms")
    line("... on demand, pyttsx3 in process (engine ready)", d)
    line("... on demand, pyttsx3 renderer child", k)
    for label, s in (("in process", d), ("renderer child", k)):
        if c.get("rounds") and s.get("rounds"):
            print(
                f"{'ratio cached / on demand, ' + label:<52}: p50 {c['p50_ms'] / s['p50_ms']:.2f}"
                f"  p99 {c['p99_ms'] / s['p99_ms']:.2f}"
            )
    print(
        f"(first sample = first bytes on the FIFO of the ALSA 'file' PCM; median first read"
        f" {c['first_read_bytes']:.0f} bytes; aplay still running and killed by stop(): {c['killed']}/{c['rounds']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--demand-rounds", type=int, default=10)
    args = parser.parse_args()
    report(run(args.rounds, args.demand_rounds))


if __name__ == "__main__":
    main()
