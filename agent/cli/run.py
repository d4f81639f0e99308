"""``atm run`` (the agent on the real clock) and ``atm demo`` (a scripted scenario)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from agent import config as configmod
from agent.cli.common import RIG_HELP, UsageError, duration, load_config, make_agent, printer, say
from agent.journald import Journald, JournaldHandler, JournaldSink, under_journald
from agent.output import Recorder
from agent.rig import is_simulated
from fsm.clock import RealClock, VirtualClock


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
    recorder.sinks.append(printer(args.json))
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
STOP_POLL = 0.05  # seconds between looks at the stop flag
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


class StopSignal:
    """SIGINT and SIGTERM as a flag the main thread looks at. Never an Event: its ``set()``
    takes a lock the main thread may hold in ``wait()`` when the signal comes, and the
    handler, run on that thread, would then wait for itself forever (an agent that never
    stops)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less once a stop is asked for; True when it is."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(STOP_POLL)
        return self.requested


def _run(args, cfg, customers: str, watch: str = "") -> int:
    from hw_mocks.crowd import Crowd

    clock = RealClock()
    recorder = Recorder(clock, keep=False)
    if under_journald():  # systemd: the records to journald with their fields, not as lines
        journald = Journald()
        recorder.sinks.append(JournaldSink(journald))
        logging.getLogger().handlers = [JournaldHandler(journald)]  # not again through stderr
    else:
        recorder.sinks.append(printer(False, wall=True))
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
    stop = StopSignal()
    ready = threading.Event()

    def started(record: dict) -> None:  # on the loop: the start-up (self-tests) is done
        if record["type"] == "state" and record["previous"] == "starting":
            if record["state"] in ("idle", "out_of_service") and not ready.is_set():
                ready.set()
                agent.notifier.send(READY="1")  # systemd (Type=notify): the speech cache was warmed before

    recorder.sinks.append(started)
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


def register(sub) -> None:
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
        type=duration,
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
