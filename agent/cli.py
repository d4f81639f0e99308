"""The ``atm`` command: run, demo, status, and the field engineer's faults and counters."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from agent import config as configmod
from agent.config import ConfigError
from agent.errors import PromptError
from agent.journal import JournalBusy, JournalError
from agent.outbox import OutboxError
from agent.output import Recorder, human_line, rounded, to_json
from agent.rig import RigError, is_simulated
from devices.registry import LocatorError
from fsm.clock import RealClock, VirtualClock

RIG_HELP = (
    "a shipped rig (sim, pcsc, pi-kiosk) or a rig file naming each device's backend (default: the config's, else sim)"
)
JSON_TYPES = ("state", "device", "card", "prompt", "video", "telemetry")


_print_lock = threading.Lock()


def say(text: str, stream=None) -> None:
    """Print one whole line; the loop thread and the main thread both print."""
    stream = stream or sys.stdout
    with _print_lock:
        stream.write(text + "\n")
        stream.flush()


class UsageError(Exception):
    """A bad command line; printed as one line."""


def load_config(path: str | None, overrides: dict | None = None, rig: str | None = None) -> configmod.Config:
    """The config file (or the defaults) with a scenario's overrides on top.

    ``rig`` replaces the config's rig; with neither a config nor a rig the
    shipped rig ``sim`` (serial drivers on emulators) is used.
    """
    from agent.rig import DEFAULT_RIG, read_toml

    raw: dict = {}
    base_dir = None
    if path is not None:
        base = configmod.load(path, rig)  # validates and names the file in errors
        raw = read_toml(Path(path), ConfigError, "config file")
        source, base_dir = base.source, Path(path).parent
    else:
        source, rig = "<defaults>", rig or str(DEFAULT_RIG)
    raw.update(overrides or {})
    return configmod.from_dict(raw, source, base_dir, rig)


def make_agent(cfg, clock, recorder, brokers: list[str] | None):
    from agent.runtime import Agent

    try:
        return Agent(cfg, clock, recorder, brokers=brokers)
    except ValueError as exc:  # a malformed broker URL
        if isinstance(exc, ConfigError):
            raise
        raise UsageError(str(exc)) from None


def _printer(as_json: bool, wall: bool = False):
    """A recorder sink printing each record; a closed pipe stops the printing, not the ATM."""
    closed = False

    def sink(record: dict) -> None:
        nonlocal closed
        if closed or (as_json and record["type"] not in JSON_TYPES):
            return
        try:
            say(to_json(rounded(record)) if as_json else human_line(record, wall))
        except BrokenPipeError:
            closed = True
        except OSError as exc:  # e.g. a full disk behind a redirect
            closed = True
            say(f"atm: output stopped: {exc.strerror or exc}", sys.stderr)

    return sink


# -- atm demo ------------------------------------------------------------------
def cmd_demo(args) -> int:
    from agent.scenarios import SCENARIOS, ScenarioRun

    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        raise UsageError(f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})")
    cfg = load_config(args.config, scenario.config, args.rig)
    not_sim = [k for k, text in cfg.devices.items() if not is_simulated(text)]
    if not_sim:
        raise UsageError(
            f"scenarios drive simulated or emulated devices; devices.{not_sim[0]} is {cfg.devices[not_sim[0]]!r}"
        )
    if args.journal:
        cfg.journal_path = args.journal
    clock = VirtualClock()
    recorder = Recorder(clock)
    recorder.sinks.append(_printer(args.json))
    agent = make_agent(cfg, clock, recorder, args.mqtt)
    agent.warm_prompts()
    agent.publisher.start()  # connect before the scenario starts
    agent.publisher.wait_first_attempt(5.0)
    problems = ScenarioRun(scenario, agent).run()
    agent.stop()
    if problems:
        print(f"atm: scenario {scenario.name} did not end as scripted: {'; '.join(problems)}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"scenario {scenario.name}: ended as scripted")
    return 0


# -- atm run -------------------------------------------------------------------
CROWD_DEVICES = ("card_reader", "chip", "keypad", "proximity", "acceptor", "dispenser")  # what customers touch


def _customers(cfg, asked: bool | None) -> str:
    """Whether ``atm run`` simulates customers, as the banner says it: on a rig whose every
    device a customer acts through is simulated or emulated, unless ``--no-customers``; a
    ``--customers`` on real devices is a usage error."""
    real = [k for k in CROWD_DEVICES if not is_simulated(cfg.devices[k])]
    if asked is False:
        return "none (--no-customers)"
    if real and asked:
        raise UsageError(
            f"--customers: devices.{real[0]} is {cfg.devices[real[0]]!r}, a real device;"
            " simulated customers act only through simulated or emulated devices"
        )
    if real:
        return f"none: real {', '.join(real)}; waiting for real people"
    return "simulated" + (" (--customers)" if asked else "")


def _default_journal(atm_id: str) -> str:
    """The default journal's path; in a source tree its ``var/<atm id>/`` folder is made."""
    path = configmod.default_journal_path(atm_id)
    if path != configmod.INSTALLED_JOURNAL:
        path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def cmd_run(args) -> int:
    cfg = load_config(args.config, rig=args.rig)
    if args.journal:
        cfg.journal_path = args.journal
    customers = _customers(cfg, args.customers)  # refused before anything is opened
    if not args.local_broker:
        return _run(args, cfg, customers)
    broker = _local_broker()
    args.mqtt = [*(args.mqtt or []), broker.url]
    try:
        return _run(args, cfg, customers, watch=f"mosquitto_sub -h {broker.host} -p {broker.port} -t 'atm/v1/#' -v")
    finally:
        broker.close()


def _local_broker():
    """A mosquitto for this run on a free loopback port; it dies with the agent."""
    from hw_mocks.servers.broker import Mosquitto

    try:
        return Mosquitto(die_with_parent=True).start()
    except (OSError, RuntimeError) as exc:  # not installed, or it would not start
        raise UsageError(f"--local-broker: mosquitto did not start: {exc}") from None


def _run(args, cfg, customers: str, watch: str = "") -> int:
    from hw_mocks.crowd import Crowd

    clock = RealClock()
    recorder = Recorder(clock, keep=False)
    recorder.sinks.append(_printer(False, wall=True))
    if not cfg.journal_path:  # atm run keeps its journal: the default file, not memory
        cfg.journal_path = _default_journal(cfg.atm_id)
    agent = make_agent(cfg, clock, recorder, args.mqtt)
    report = agent.warm_prompts()
    say(
        f"speech cache: {len(report.rendered)} rendered, {report.cached} cached,"
        f" {len(report.failed)} failed ({report.seconds:.2f} s)"
    )
    if configmod.uses_demo_key(cfg):
        say("security: security.card_key is the public demo key; set your own secret before this ATM sees a real card")
    say(f"rig: {cfg.rig or 'devices from ' + cfg.source}")
    say(f"journal: {agent.journal_path}")
    brokers = args.mqtt or cfg.telemetry["brokers"]
    say(f"telemetry: {', '.join(brokers) if brokers else 'no broker configured (--mqtt URL); kept in memory'}")
    if watch:
        say(f"watch: {watch}   (a local mosquitto for this run; it stops with the agent)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ready = threading.Event()
    recorder.sinks.append(
        lambda r: (
            ready.set()
            if r["type"] == "state" and r["state"] in ("idle", "out_of_service") and r["previous"] == "starting"
            else None
        )
    )
    say(f"customers: {customers}")
    try:
        agent.serve_control()
    except OSError as exc:  # the socket is another agent's, or its folder is missing
        agent.close()
        raise UsageError(str(exc)) from None
    if agent.control_path:
        say(f"control: {agent.control_path} (atm status, atm service ... talk to this agent there)")
    agent.start()
    if customers.startswith("simulated"):
        Crowd(agent, cfg, seed=args.seed).start(first_within=3.0)
    agent.start_thread()
    if ready.wait(10):
        say(f"ready: ATM {cfg.atm_id} is {agent.atm.service.service} (Ctrl-C to stop)")
    deadline = clock.now() + args.duration if args.duration else None
    while not stop.wait(0.5) and agent.running:
        if deadline is not None and clock.now() >= deadline:
            break
    failed, link_failure = agent.loop.failed, agent.publisher.failure
    agent.stop()
    if failed is not None:
        print(f"atm: error: the state machine stopped: {failed!r}", file=sys.stderr)
        return 1
    if link_failure is not None:
        print(f"atm: error: the telemetry link stopped: {link_failure}", file=sys.stderr)
        return 1
    say("stopped")
    return 0


# -- atm status ----------------------------------------------------------------
def status_report(cfg: configmod.Config) -> dict:
    """Open each device, self-test it and report, without starting sessions."""
    from agent.runtime import Agent

    agent = Agent(cfg, VirtualClock())
    agent.open(persist=False)
    try:
        for device in agent.devices.values():
            device.self_test()
        agent.atm.service.refresh(announce=False)
        return {
            "atm_id": cfg.atm_id,
            "rig": cfg.rig or "(config devices)",
            "service": agent.atm.service.service,
            "functions": agent.atm.service.functions,
            "devices": {k: d.describe() for k, d in agent.devices.items()},
            "cassettes": agent.atm.cash_levels(),
            "journal": cfg.journal_path,
        }
    finally:
        agent.close()


def _journal_of(cfg: configmod.Config, given: str | None) -> str:
    """The journal ``atm run`` of this config uses: ``--journal FILE``, else the config's
    ``journal.path``, else the default file (named, never made here)."""
    return given or cfg.journal_path or str(configmod.default_journal_path(cfg.atm_id))


def _control_path(cfg: configmod.Config, journal: str | None = None) -> str:
    """The socket a running ``atm run`` of this config (and ``--journal``) serves."""
    from agent.control import control_socket_path

    return control_socket_path(cfg.control["socket"], _journal_of(cfg, journal))


def _ask_agent(
    cfg: configmod.Config, method: str, params: dict | None = None, journal: str | None = None
) -> dict | None:
    """The running agent's answer, or None when no agent runs for this config (no socket,
    or a stale one). A refusal, or an agent that is there and does not answer, is a usage
    error (one line, exit 2): never a reason to open its devices behind its back."""
    from agent.control.client import ControlRefused, ControlSilent, ControlUnavailable, call

    path = _control_path(cfg, journal)
    if not path:
        return None
    try:
        return call(path, method, params, timeout=5.0)
    except ControlUnavailable:
        return None
    except ControlSilent as exc:
        raise UsageError(str(exc)) from None
    except ControlRefused as exc:
        raise UsageError(f"{method}: {exc} ({exc.error})") from None


def cmd_status(args) -> int:
    cfg = load_config(args.config, rig=args.rig)
    live = _ask_agent(cfg, "status", journal=args.journal)
    report = {"agent": "running", **live} if live is not None else {"agent": "not running", **status_report(cfg)}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    if live is not None:
        held = f", held: {live['hold_reason'] or 'by request'}" if live["held"] else ""
        print(
            f"ATM {cfg.atm_id} (running): {live['state']}, {live['service']}"
            f" ({', '.join(live['functions']) or 'no functions'}){held}"
            + (", a customer session is open" if live["session_active"] else "")
        )
        for kind, d in live["devices"].items():
            print(f"  {kind:<12} {d['status']:<15}" + (f"  [{', '.join(d['faults'])}]" if d["faults"] else ""))
    else:
        print(
            f"ATM {report['atm_id']} (not running; devices opened by this command):"
            f" {report['service']} ({', '.join(report['functions']) or 'no functions'}) on rig {report['rig']}"
        )
        for kind, d in report["devices"].items():
            faults = "; ".join(f"{f['code']}: {f['message']}" for f in d["faults"])
            print(f"  {kind:<12} {d['status']:<15} {d['locator']}" + (f"  [{faults}]" if faults else ""))
    for c in report["cassettes"]:
        print(f"  cassette {c['id']}: {c['count']} x {c['denomination']} ({c['status']}, {c['accuracy']})")
    return 0


def cmd_service(args) -> int:
    """``atm service out|in``: through the running agent; at once when idle, else after the session."""
    cfg = load_config(args.config, rig=args.rig)
    params: dict = {"engineer": _engineer(args.engineer)} if args.engineer is not None else {}
    if args.direction == "out":
        method, params = "out_of_service", {**params, "reason": args.reason or ""}
    else:
        method = "in_service"
    answer = _ask_agent(cfg, method, params, journal=args.journal)
    if answer is None:
        raise UsageError(
            f"no agent is running for ATM {cfg.atm_id} (control socket {_control_path(cfg, args.journal)})"
        )
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
    else:
        when = "now" if answer.get("effective") == "now" else "when the customer's session ends"
        print(f"ATM {cfg.atm_id}: {'out of' if args.direction == 'out' else 'back in'} service {when}")
    return 0


# -- atm faults, atm counters --------------------------------------------------
def _journal_to_read(args) -> str:
    """``--journal FILE``, else the config's ``journal.path``, else the file ``atm run``
    keeps by default (never made here: a journal that is not there is refused)."""
    if args.journal:
        return args.journal  # no config needed (nor read)
    return _journal_of(load_config(args.config), None)


def _print_report(report: dict, as_json: bool, text) -> None:
    print(json.dumps(report, ensure_ascii=False, indent=2) if as_json else text(report))


def cmd_faults(args) -> int:
    from agent.fault_history import parse_since
    from agent.service import faults_report, faults_text

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    _print_report(faults_report(_journal_to_read(args), args.active, since), args.json, faults_text)
    return 0


def _engineer(name: str | None) -> str:
    """The engineer named, else the Unix user."""
    if name is None:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no user name in the environment nor the password file
            name = f"uid {os.getuid()}"
    if not 1 <= len(name) <= 64 or not name.isprintable() or name != name.strip():
        raise UsageError(f"--engineer: {name!r} is not a name (1 to 64 printable characters)")
    return name


def cmd_counters(args) -> int:
    from agent.service import counters_report, counters_text, reset_counters, reset_text

    if args.action is None:
        if args.engineer is not None:
            raise UsageError("--engineer goes with `atm counters reset`")
        _print_report(counters_report(_journal_to_read(args)), args.json, counters_text)
        return 0
    engineer = _engineer(args.engineer)
    try:
        reset = reset_counters(_journal_to_read(args), engineer)
    except JournalBusy as exc:
        raise UsageError(f"counters reset: {exc}; reset the counters while the agent is stopped") from None
    _print_report(reset, args.json, reset_text)
    return 0


# -- atm prompts ---------------------------------------------------------------
def cmd_prompts(args) -> int:
    """Render every prompt of every language into the WAV cache (a child process)."""
    from agent.prompts import Catalogue, PromptCache

    cfg = load_config(args.config)
    cache = PromptCache(cfg.speech["cache_dir"] or None, Catalogue.load(), timeout=cfg.speech["render_timeout"])
    if args.force:
        cache.forget()
    report = cache.warm()
    print(
        f"speech cache {cache.directory}: {len(report.rendered)} rendered, {report.cached} cached,"
        f" {len(report.failed)} failed ({report.seconds:.2f} s)"
    )
    for entry, reason in sorted(report.failed.items()):
        print(f"  failed {entry}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


# -- atm emulate ---------------------------------------------------------------
def cmd_emulate(args) -> int:
    from hw_mocks.emulate import EmulateError, serve

    try:
        return serve(args.device, faults=args.fault or [], timing=args.timing, commands=sys.stdin, out=sys.stdout)
    except EmulateError as exc:
        raise UsageError(str(exc)) from None


# -- atm diagram ---------------------------------------------------------------
def cmd_diagram(args) -> int:
    """The state diagram from fsm.states, to stdout or ``-o FILE``."""
    from agent.diagram import DiagramError, from_fsm

    try:
        text = from_fsm(args.format)
    except DiagramError as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# -- entry point ---------------------------------------------------------------
def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 366 * 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 < s <= 1 year)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atm", description="ATM firmware simulator and edge agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the agent on the configured rig with simulated customers")
    run.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    run.add_argument("--config", help="TOML config file (default: built-in simulated rig)")
    run.add_argument("--mqtt", action="append", metavar="URL", help="broker URL (mqtt://host:port)")
    run.add_argument(
        "--local-broker",
        action="store_true",
        help="start a mosquitto on a free 127.0.0.1 port for this run and publish to it (make run)",
    )
    run.add_argument("--journal", help="journal file (default: from the config)")
    run.add_argument("--seed", type=int, default=None, help="seed for the simulated customers")
    run.add_argument(
        "--customers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="simulated customers (default: on when every device they act through is simulated or emulated)",
    )
    run.add_argument(
        "--duration",
        type=_duration,
        default=0,
        metavar="SECONDS",
        help="stop by itself after this long (default: run until Ctrl-C)",
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="run a scripted scenario on the virtual clock")
    from agent.scenarios import SCENARIOS

    demo.add_argument("--scenario", required=True, metavar="NAME", help=f"one of: {', '.join(SCENARIOS)}")
    demo.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    demo.add_argument("--config", help="TOML config file")
    demo.add_argument("--json", action="store_true", help="one JSON object per line")
    demo.add_argument("--mqtt", action="append", metavar="URL", help="also publish telemetry there")
    demo.add_argument("--journal", help="journal file (default: from the config, in memory)")
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", help="devices, service state and cassette levels")
    status.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    status.add_argument("--config", help="TOML config file")
    status.add_argument("--json", action="store_true")
    status.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")
    status.set_defaults(func=cmd_status)

    service = sub.add_parser("service", help="take the running ATM out of service, or back in")
    service.add_argument("direction", choices=("out", "in"))
    service.add_argument("--reason", help="why (journalled, and shown by atm status)")
    service.add_argument("--engineer", help="your name, for the journal (default: your Unix user)")
    service.add_argument("--config", help="TOML config file")
    service.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    service.add_argument("--json", action="store_true", help="the agent's answer as JSON")
    service.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")
    service.set_defaults(func=cmd_service)

    faults = sub.add_parser("faults", help="the faults raised and cleared, from the journal")
    faults.add_argument("--active", action="store_true", help="only the faults raised and not cleared since")
    faults.add_argument("--since", metavar="TIME", help="from an ISO time, or a time ago: 45s, 30m, 2h, 1d")
    faults.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    faults.add_argument("--config", help="TOML config file (journal.path, atm.id)")
    faults.add_argument("--json", action="store_true")
    faults.set_defaults(func=cmd_faults)

    counters = sub.add_parser("counters", help="the service counters from the journal; `atm counters reset`")
    counters.add_argument("action", nargs="?", choices=("reset",), help="reset: start the counters again")
    counters.add_argument("--engineer", metavar="NAME", help="who resets them (default: the Unix user)")
    counters.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    counters.add_argument("--config", help="TOML config file (journal.path, atm.id)")
    counters.add_argument("--json", action="store_true")
    counters.set_defaults(func=cmd_counters)

    prompts = sub.add_parser("prompts", help="voice prompts: `atm prompts build` renders the WAV cache")
    prompts.add_argument("action", choices=("build",))
    prompts.add_argument("--config", help="TOML config file (speech.cache_dir, speech.render_timeout)")
    prompts.add_argument("--force", action="store_true", help="render everything again")
    prompts.set_defaults(func=cmd_prompts)

    emulate = sub.add_parser("emulate", help="serve one device emulator on a new pty (prints its path first)")
    emulate.add_argument("device", choices=("lcdm2000", "ict3q8"))
    emulate.add_argument("--fault", action="append", metavar="NAME", help="start with this fault present")
    emulate.add_argument("--timing", action="store_true", help="keep real baud-rate timing")
    emulate.set_defaults(func=cmd_emulate)

    from agent.diagram import FORMATS

    diagram = sub.add_parser("diagram", help="the state diagram, drawn from the state table")
    diagram.add_argument("--format", choices=FORMATS, default="mermaid", help="default: mermaid")
    diagram.add_argument("-o", "--output", metavar="FILE", help="write there (default: stdout)")
    diagram.set_defaults(func=cmd_diagram)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except (ConfigError, JournalError, LocatorError, OutboxError, PromptError, RigError, UsageError) as exc:
        print(f"atm: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"atm: error: journal: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `atm demo | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"atm: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
