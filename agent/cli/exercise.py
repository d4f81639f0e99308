"""``atm exercise DEVICE ACTION``: a field engineer works one device of an ATM out of service.

With an agent running it goes through the control socket (the agent checks that the ATM is
held out of service and between sessions, runs the action on the device's queue and
journals it). With none running, the actions that move nothing and need nothing of the
agent (:data:`DIRECT`) open only that device here and journal the action themselves; the
others need the agent (ours), and say so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from agent.cli.common import RIG_HELP, UsageError, ask_agent, control_path, engineer_name, journal_of, load_config
from fsm import exercise as ex

# What runs without an agent: reads and signals of a device that stays where it is (ours).
DIRECT = frozenset(
    {
        ("card_reader", "led"),
        ("card_reader", "read"),
        ("chip", "read"),
        ("camera", "snapshot"),
        ("proximity", "readings"),
    }
)
INTEGER_OPTIONS = ("notes", "seconds")


def request(args) -> dict[str, Any]:
    """The request's fields from the command line, checked as the agent checks them."""
    from agent.remote import BadRequest, parse_request

    params: dict[str, Any] = {"device": args.device, "action": args.action}
    if args.value is not None:
        if (args.device, args.action) != ("card_reader", "led"):
            raise UsageError(f"exercise: unexpected {args.value!r} (only `card_reader led COLOUR` takes a value)")
        params["colour"] = args.value
    for option in ex.OPTIONS:
        value = getattr(args, option, None)
        if value is not None:
            params[option] = _integer(option, value) if option in INTEGER_OPTIONS else value
    if "path" in params:
        params["path"] = os.path.abspath(params["path"])  # the agent's folder is not the engineer's
    try:
        parse_request("exercise", json.dumps(params).encode())
    except BadRequest as exc:
        raise UsageError(f"exercise: {exc.reason}") from None
    problem = ex.combination_problem(params)
    if problem is not None:
        raise UsageError(f"exercise: {problem}")
    return params


def _integer(option: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"exercise: --{option}: {text!r} is not a whole number") from None


def cmd_exercise(args) -> int:
    params = request(args)
    engineer = engineer_name(args.engineer)
    cfg = load_config(args.config, rig=args.rig)
    wait = 60.0 + params.get("seconds", 0)  # a 20-note test dispense takes ~13 s, behind any queued command
    who = {"engineer": engineer} if args.engineer is not None else {}
    answer = ask_agent(cfg, "exercise", {**params, **who}, journal=args.journal, timeout=wait)
    if answer is None:
        answer = run_direct(cfg, journal_of(cfg, args.journal), params, engineer, control_path(cfg, args.journal))
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        print(text(answer))
    return 0 if answer["outcome"]["done"] else 1


# -- without an agent ------------------------------------------------------------------
def run_direct(cfg, journal_path: str, params: dict[str, Any], engineer: str, socket: str) -> dict[str, Any]:
    """Open only that device, do the action, journal it (the journal's lock is the agent's
    own: a running agent without a socket is refused by it)."""
    from agent.direct import EngineerJournal

    device, action = params["device"], params["action"]
    if (device, action) not in DIRECT:
        raise UsageError(
            f"exercise {device} {action} needs the running agent (no agent answers on {socket or 'a control socket'}):"
            " start it (atm run), then take it out of service (atm service out)"
        )
    if "path" in params and (problem := ex.snapshot_path_problem(params["path"])):
        raise UsageError(f"exercise: {problem}")
    with EngineerJournal(journal_path, cfg.signing_key) as held:
        outcome = _direct_outcome(cfg, params)
        held.command_row("exercise", params, engineer, outcome=outcome)
    return {
        "ok": True,
        "command": "exercise",
        "agent": "not running",
        "device": device,
        "action": action,
        "outcome": outcome,
    }


def _direct_outcome(cfg, params: dict[str, Any]) -> dict[str, Any]:
    from devices.base import DeviceContext
    from devices.commands import CommandQueue
    from devices.registry import create_device
    from fsm.clock import RealClock, Scheduler

    kind = params["device"]
    scheduler = Scheduler(RealClock())
    locator = cfg.devices[kind]
    if locator.startswith("ict3q8"):  # opening it initialises it: a card inside stays where it is
        locator = with_option(locator, "init", "keep")
    device = create_device(kind, locator, DeviceContext(scheduler=scheduler))
    device.open()
    try:
        held = device.faults.get("port_busy") or device.faults.get("port_unavailable")
        if held is not None:
            raise UsageError(f"{kind}: {held.message}")
        if kind == "proximity":
            return _readings(device, scheduler, params["seconds"])
        action, describe = _direct_action(device, params, cfg.card_key)
        done: list[Any] = []
        CommandQueue(kind, inline=True).submit(params["action"], action, done.append)
        return ex.device_outcome(done[0], describe)
    finally:
        device.close()


def with_option(locator: str, name: str, value: str) -> str:
    """``locator`` with ``name=value`` in its query (replacing one given)."""
    base, _, query = locator.partition("?")
    kept = [part for part in query.split("&") if part and part.split("=")[0] != name]
    return f"{base}?{'&'.join([*kept, f'{name}={value}'])}"


def _direct_action(device, params: dict[str, Any], key: bytes) -> tuple[Callable[[], Any], Callable[[Any], dict]]:
    kind, action = params["device"], params["action"]
    if kind == "card_reader" and action == "led":
        return (lambda: device.set_led(params["colour"])), (lambda result: {"led": params["colour"]})
    if kind == "camera":
        return (lambda: ex.write_snapshot(device, params["path"])), dict
    reader = device.read if kind == "card_reader" else device.read_card
    return (lambda: reader(key)), ex.card_outcome


def _readings(sensor, scheduler, seconds: int) -> dict[str, Any]:
    """``present`` every READING_INTERVAL for ``seconds``, the sensor's own timers run here."""
    start = time.monotonic()
    readings = []
    for k in range(ex.reading_count(seconds)):
        time.sleep(max(0.0, start + k * ex.READING_INTERVAL - time.monotonic()))
        scheduler.run_due()
        readings.append({"t": round(time.monotonic() - start, 2), "present": sensor.present})
    done = all(r["present"] is not None for r in readings)
    return {"done": done, "seconds": float(seconds), "readings": readings}


# -- the answer as text ----------------------------------------------------------------
def text(answer: dict[str, Any]) -> str:
    device, action, outcome = answer["device"], answer["action"], answer["outcome"]
    head = f"{device} {action}:"
    if not outcome["done"]:
        code = f" ({outcome['fault']})" if outcome.get("fault") else ""
        return f"{head} not done: {outcome.get('message', 'the device did not do it')}{code}"
    shown = TEXTS.get((device, action))
    return f"{head} {shown(outcome)}" if shown is not None else f"{head} done"


def _test_dispensed(o: dict[str, Any]) -> str:
    ((cassette, notes),) = o["rejected"].items()
    return f"{notes} notes from cassette {cassette} into the reject bin; cassette {cassette} now holds {o['count']}"


def _readings_text(o: dict[str, Any]) -> str:
    rows = [f"  {r['t']:6.2f} s  {_presence(r['present'])}" for r in o["readings"]]
    return "\n".join([f"{len(rows)} readings in {o['seconds']:g} s", *rows])


def _presence(present: bool | None) -> str:
    return "no reading" if present is None else "present" if present else "absent"


TEXTS: dict[tuple[str, str], Callable[[dict[str, Any]], str]] = {
    ("dispenser", "test-dispense"): _test_dispensed,
    ("dispenser", "reset"): lambda o: f"done, the dispenser is {o['status']}",
    ("card_reader", "led"): lambda o: f"the LED is {o['led']}",
    ("card_reader", "read"): lambda o: f"track 2 present, card {o['masked_pan']}",
    ("chip", "read"): lambda o: f"chip read, card {o['masked_pan']}",
    ("camera", "snapshot"): lambda o: f"wrote {o['path']} ({o['width']}x{o['height']}, {o['bytes']} bytes)",
    ("speaker", "play"): lambda o: f"playing ({o['language']}, {o['seconds']} s)",
    ("display", "show"): lambda o: f"showing {o['screen']} ({o['language']})",
    ("display", "help-video"): lambda o: f"playing {o['video']} ({o['language']})",
    ("proximity", "readings"): _readings_text,
}


def register(sub) -> None:
    p = sub.add_parser(
        "exercise",
        help="work one device of an ATM out of service (test-dispense, eject, LED, snapshot...)",
        description="Devices and actions: "
        + "; ".join(f"{d}: {', '.join(a)}" for d, a in ex.ACTIONS.items())
        + ". Only while the ATM is out of service (atm service out) and between sessions.",
    )
    p.add_argument("device", metavar="DEVICE", help=", ".join(ex.ACTIONS))
    p.add_argument("action", metavar="ACTION", help="what the device does (see above)")
    p.add_argument("value", nargs="?", metavar="COLOUR", help=f"card_reader led: {', '.join(ex.COLOURS)}")
    p.add_argument("--cassette", metavar="ID", help="dispenser test-dispense: the cassette")
    p.add_argument("--notes", metavar="N", help=f"dispenser test-dispense: 1 to {ex.MAX_TEST_NOTES} notes")
    p.add_argument("--prompt", metavar="ID", help="speaker play: the prompt's id")
    p.add_argument("--language", metavar="LANG", help="speaker play, display: the language (default: the first)")
    p.add_argument("--screen", metavar="NAME", help="display show: the screen")
    p.add_argument("-o", "--output", dest="path", metavar="FILE", help="camera snapshot: a new .png or .jpg file")
    p.add_argument("--seconds", metavar="N", help=f"proximity readings: 1 to {ex.MAX_SECONDS} seconds")
    p.add_argument("--engineer", metavar="NAME", help="your name, for the journal (default: your Unix user)")
    p.add_argument("--json", action="store_true", help="the answer as JSON")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    p.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")
    p.set_defaults(func=cmd_exercise)
