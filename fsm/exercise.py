"""A field engineer's device exercises (``atm exercise DEVICE ACTION``), run on the loop thread.

Only while the ATM is held out of service (``atm service out``) and between sessions.
Device commands go through :class:`fsm.commands.DeviceCommands`: queued, never waited
for; what moves notes or a card has an intent row before and an outcome row after
(a test dispense saves the cassette counts with its outcome, as a dispense does). The
speaker and the display answer at once by contract and keep their timers on the loop's
scheduler, so they are driven from the loop, as the state machine drives them; the
proximity sensor's readings are status reads, sampled on the loop's timers.

The answer carries an ``outcome`` (``done``, and what the device said), which the
request's ``remote_command`` row keeps, with the engineer who asked. Nothing here ever
holds a card number: a card read gives the masked number only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from devices.base import Action
from devices.card_reader import LED_COLOURS
from devices.dispenser import DispenseResult
from fsm.engineer_gate import when_quiet
from fsm.screens import SCREENS

if TYPE_CHECKING:
    from devices.commands import Completion
    from fsm.atm import ATM

Reply = Callable[[dict[str, Any]], None]

# device -> action -> the options it takes (all required but ``language``)
ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "card_reader": {"eject": (), "capture": (), "read": (), "led": ("colour",)},
    "dispenser": {"test-dispense": ("cassette", "notes"), "purge": (), "reset": ()},
    "speaker": {"play": ("prompt", "language")},
    "display": {"show": ("screen", "language"), "help-video": ("language",)},
    "camera": {"snapshot": ("path",)},
    "proximity": {"readings": ("seconds",)},
    "chip": {"read": ()},
}
OPTIONAL = frozenset({"language"})  # the ATM's first language when not given
OPTIONS = ("cassette", "notes", "colour", "prompt", "language", "screen", "seconds", "path")
ALL_ACTIONS = tuple(dict.fromkeys(a for actions in ACTIONS.values() for a in actions))
MAX_TEST_NOTES = 20  # notes one test dispense may pick (ours: a check, not an emptying)
MAX_SECONDS = 60  # seconds of proximity readings at most
READING_INTERVAL = 0.25  # seconds between two proximity readings (ours)
SNAPSHOT_SUFFIXES = (".png", ".jpg", ".jpeg")
COLOURS = LED_COLOURS
SCREEN_NAMES = tuple(SCREENS)

UNCOUNTED = "a test dispense got no answer; count and replenish the cassettes"


def combination_problem(args: Mapping[str, Any]) -> str | None:
    """What is wrong with this device, action and options together (pure); None if nothing.
    Each option's type and bounds are checked before (``agent.remote.COMMANDS``)."""
    device, action = args.get("device"), args.get("action")
    if device not in ACTIONS:
        return f"device: {device!r} is not a device (devices: {', '.join(ACTIONS)})"
    actions = ACTIONS[device]
    if action not in actions:
        return f"action: {device} has no action {action!r} (actions: {', '.join(actions)})"
    wanted = actions[action]
    for option in wanted:
        if option not in args and option not in OPTIONAL:
            return f"{option}: {device} {action} needs it"
    extra = [o for o in OPTIONS if o in args and o not in wanted]
    if extra:
        return f"{extra[0]}: {device} {action} takes no {extra[0]}"
    return None


def snapshot_path_problem(path: str) -> str | None:
    """Why the agent may not write a snapshot there (ours: a new image file in a folder
    that exists and that it may write; never an existing file); None if it may."""
    if not os.path.isabs(path):
        return f"path: {path!r} is not an absolute path"
    if not path.lower().endswith(SNAPSHOT_SUFFIXES):
        return f"path: {path!r} must end in {', '.join(SNAPSHOT_SUFFIXES)}"
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"path: folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"path: the agent may not write in {folder}"
    if os.path.lexists(path):
        return f"path: {path} exists already (the snapshot never replaces a file)"
    return None


def device_outcome(completion: Completion, describe: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The outcome of one device command: what it gave, or the fault it raised."""
    if completion.ok:
        return {"done": True, **describe(completion.result)}
    fault = completion.fault
    message = fault.message if fault is not None else f"the command failed: {completion.error!r}"
    return {"done": False, "fault": completion.fault_code, "message": message}


def _nothing(result: Any) -> dict[str, Any]:
    return {}


def card_outcome(card: Any) -> dict[str, Any]:
    """A card as an exercise reports it: masked (first 6, last 4), never the number."""
    return {"card": "present", "masked_pan": card.masked, "source": card.source}


def _test_dispensed(result: DispenseResult) -> dict[str, Any]:
    return {
        "picked": result.picked,
        "rejected": result.rejected,
        **({"fault": result.fault_code} if result.fault_code else {}),
    }


class Exercises:
    """Runs ``exercise`` requests: ``handle(args, answer)`` is the operator command."""

    def __init__(self, atm: ATM) -> None:
        self.atm = atm

    def handle(self, args: dict[str, Any], answer: Reply) -> dict[str, Any] | None:
        problem = combination_problem(args) or self.value_problem(args)
        if problem is not None:
            return {"ok": False, "error": "bad_field", "reason": problem}
        return when_quiet(self.atm, answer, lambda: self._start(args, answer))

    def _start(self, args: dict[str, Any], answer: Reply) -> None:
        device, action = args["device"], args["action"]
        run: Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], None]
        run = getattr(self, f"{device}_{action.replace('-', '_')}")
        run(args, lambda outcome: answer({"device": device, "action": action, "outcome": outcome}))

    def value_problem(self, args: Mapping[str, Any]) -> str | None:
        """What the ATM's own figures refuse: a cassette, a language, a prompt, a path."""
        atm = self.atm
        if "language" in args and args["language"] not in atm.cfg.languages:
            return f"language: {args['language']!r} is not a language of this ATM ({', '.join(atm.cfg.languages)})"
        if "cassette" in args:
            return self._cassette_problem(args["cassette"], args["notes"])
        if "prompt" in args and not atm.prompter.library.display(args["prompt"], self._language(args)):
            return f"prompt: {args['prompt']!r} is not a prompt of the catalogue"
        if "path" in args:
            return snapshot_path_problem(args["path"])
        return None

    def _cassette_problem(self, cassette_id: str, notes: int) -> str | None:
        cassettes = {c.id: c for c in self.atm.devices.dispenser.cassettes}
        if cassette_id not in cassettes:
            return f"cassette: {cassette_id!r} is not a cassette (cassettes: {', '.join(cassettes)})"
        if cassettes[cassette_id].count < notes:
            return f"notes: cassette {cassette_id} holds {cassettes[cassette_id].count} notes"
        return None

    def _language(self, args: Mapping[str, Any]) -> str:
        language: str = args.get("language") or self.atm.cfg.languages[0]
        return language

    # -- queued device commands ---------------------------------------------------------
    def _send(self, device: str, name: str, action: Callable[[], Any], done: Reply, describe: Any = _nothing) -> None:
        """A command that moves nothing: queued; the outcome answers."""
        self.atm.commands.send(device, name, action, then=lambda c: done(device_outcome(c, describe)))

    def _run(self, device: str, name: str, action: Callable[[], Any], done: Reply, **intent: Any) -> None:
        """A command that moves a card or notes: an intent before, an outcome after."""
        self.atm.commands.run(
            device, name, action, None, then=lambda c: done(device_outcome(c, _nothing)), exercise=True, **intent
        )

    def card_reader_eject(self, args: dict[str, Any], done: Reply) -> None:
        reader = self.atm.devices.card_reader
        self._run("card_reader", "exercise_eject", reader.eject, done)

    def card_reader_capture(self, args: dict[str, Any], done: Reply) -> None:
        reader = self.atm.devices.card_reader
        self._run("card_reader", "exercise_capture", reader.capture, done)

    def card_reader_read(self, args: dict[str, Any], done: Reply) -> None:
        reader = self.atm.devices.card_reader
        self._send("card_reader", "exercise_read", partial(reader.read, self.atm.cfg.card_key), done, card_outcome)

    def card_reader_led(self, args: dict[str, Any], done: Reply) -> None:
        reader, colour = self.atm.devices.card_reader, args["colour"]
        self._send("card_reader", "exercise_led", partial(reader.set_led, colour), done, lambda r: {"led": colour})

    def chip_read(self, args: dict[str, Any], done: Reply) -> None:
        chip = self.atm.devices.chip
        self._send("chip", "exercise_read", partial(chip.read_card, self.atm.cfg.card_key), done, card_outcome)

    def camera_snapshot(self, args: dict[str, Any], done: Reply) -> None:
        camera = self.atm.devices.camera
        self._send("camera", "exercise_snapshot", partial(write_snapshot, camera, args["path"]), done, dict)

    def dispenser_reset(self, args: dict[str, Any], done: Reply) -> None:
        dispenser = self.atm.devices.dispenser
        self._send("dispenser", "exercise_reset", dispenser.self_test, done, lambda s: {"status": s.value})

    def dispenser_purge(self, args: dict[str, Any], done: Reply) -> None:
        dispenser = self.atm.devices.dispenser
        self._run("dispenser", "exercise_purge", dispenser.reset, done)

    def dispenser_test_dispense(self, args: dict[str, Any], done: Reply) -> None:
        """Notes from one cassette into the reject bin; the counts are saved with the outcome."""
        atm, dispenser = self.atm, self.atm.devices.dispenser
        cassette, notes = args["cassette"], args["notes"]

        def finished(completion: Completion) -> None:
            if not isinstance(completion.result, DispenseResult):  # it raised: notes may have moved unseen
                dispenser.raise_fault("count_unknown", UNCOUNTED, action=Action.REPLENISH)
            atm.publish_cash()
            outcome = device_outcome(completion, _test_dispensed)
            result = completion.result
            if isinstance(result, DispenseResult) and result.fault_code:
                outcome = {**outcome, "done": False, "message": f"the dispenser stopped: {result.fault_code}"}
            done({**outcome, "count": dispenser.cassette(cassette).count})

        atm.commands.run(
            "dispenser",
            "test_dispense",
            partial(dispenser.test_dispense, cassette, notes),
            None,
            then=finished,
            outcome=_test_dispense_outcome,
            cassettes=dispenser.cassettes,
            plan={cassette: notes},
            counts={c.id: c.count for c in dispenser.cassettes},
            exercise=True,
        )

    # -- devices driven from the loop ---------------------------------------------------
    def speaker_play(self, args: dict[str, Any], done: Reply) -> None:
        atm, language = self.atm, self._language(args)
        clip = atm.prompter.library.clip(args["prompt"], language)
        spoken = clip is not None and atm.devices.speaker.usable
        atm.prompter.say(args["prompt"], language)
        seconds = round(clip.duration, 2) if clip is not None else None
        done({"done": spoken, "spoken": spoken, "language": language, "seconds": seconds, **_shown_instead(spoken)})

    def display_show(self, args: dict[str, Any], done: Reply) -> None:
        atm, screen, language = self.atm, args["screen"], self._language(args)
        display = atm.devices.display
        display.show(screen, atm.prompter.library.screen_text(screen, language, {}))
        done({"done": display.usable, "screen": screen, "language": language})

    def display_help_video(self, args: dict[str, Any], done: Reply) -> None:
        atm, language = self.atm, self._language(args)
        videos = atm.cfg.help_videos
        path = videos("general", language) if videos is not None else atm.cfg.help_video
        display = atm.devices.display
        display.play_video(path, loop=False, language=language)
        playing = display.video_playing
        done({"done": playing, "video": os.path.basename(path), "language": language, **_faults(display, playing)})

    def proximity_readings(self, args: dict[str, Any], done: Reply) -> None:
        """``present`` every READING_INTERVAL for ``seconds``; the answer comes at the end."""
        atm, sensor = self.atm, self.atm.devices.proximity
        start, seconds = atm.clock.now(), float(args["seconds"])
        count = reading_count(seconds)
        readings: list[dict[str, Any]] = []

        def sample() -> None:
            readings.append({"t": round(atm.clock.now() - start, 2), "present": sensor.present})
            if len(readings) < count:
                atm.scheduler.call_later(start + len(readings) * READING_INTERVAL - atm.clock.now(), sample)
                return
            seen = [r["present"] for r in readings]
            done(
                {
                    "done": None not in seen,
                    "seconds": seconds,
                    "readings": readings,
                    **_faults(sensor, None not in seen),
                }
            )

        sample()


def reading_count(seconds: float) -> int:
    """Readings in ``seconds``: one at the start and one every READING_INTERVAL to the end."""
    return int(seconds / READING_INTERVAL + 1e-9) + 1


def _test_dispense_outcome(completion: Completion) -> dict[str, Any]:
    """The outcome row of a test dispense: what left the cassette, as a dispense's."""
    result = completion.result
    if isinstance(result, DispenseResult):
        return {
            "ok": not result.fault_code,
            "picked": result.picked,
            "rejected": result.rejected,
            "fault": result.fault_code,
        }
    return {"ok": False, "fault": completion.fault_code, "result": "unknown", "reconcile": "required"}


def write_snapshot(camera: Any, path: str) -> dict[str, Any]:
    """The camera's frame written to ``path``; a file that cannot be written is an outcome
    (not done), not a device fault."""
    try:
        written: dict[str, Any] = camera.save_snapshot(path)
    except OSError as exc:
        return {"done": False, "message": f"{path}: {exc.strerror or exc}"}
    return written


def _shown_instead(spoken: bool) -> dict[str, Any]:
    return {} if spoken else {"message": "no audio for it (or no usable speaker): its text was shown instead"}


def _faults(device: Any, ok: bool) -> dict[str, Any]:
    """The device's faults, when it did not do what was asked."""
    if ok:
        return {}
    faults = list(device.faults.values())
    return {"fault": faults[0].code, "message": faults[0].message} if faults else {"message": "no readings"}
