"""Builds and runs one ATM: devices, event loop, journal, telemetry, voice.

:class:`Agent` is the composition root: it builds the clock's scheduler, the
loop's inbox, the journal, the telemetry and its publisher, the devices and
their command queues, the bank host, the voice and the state machine, in
that order, and then the loop, with nothing patched afterwards. The clock
decides the mode: a virtual clock for demos and tests, the real clock for
``atm run`` and kiosks.
"""

from __future__ import annotations

import logging
import platform
import threading
from pathlib import Path
from typing import Any

from agent.config import Config, ConfigError, missing_folder
from agent.control import control_socket_path
from agent.control.server import ControlServer
from agent.control.streams import Streams
from agent.evidence import EvidenceFolder, default_folder, folder_problem
from agent.help_videos import HelpVideos
from agent.host import create_host
from agent.journal import Journal
from agent.logbook import LogBook
from agent.outbox import Outbox, OutboxError
from agent.output import Recorder
from agent.prompts import Catalogue, PromptCache
from agent.remote import CommandHandler
from agent.systemd import Notifier, Supervision, status_text
from agent.telemetry import MemoryPublisher, Publisher, Telemetry
from devices.base import Device, DeviceContext
from devices.commands import Activity, CommandQueue, WorkerScheduler
from devices.deviceset import DeviceSet
from devices.registry import LocatorError, create_device
from devices.serial_trace import FrameTrace
from fsm import events as ev
from fsm.atm import ATM, Settings
from fsm.clock import Scheduler
from fsm.commands import DeviceCommands, Queue
from fsm.loop import EventLoop, Inbox
from fsm.prompter import Prompter
from fsm.screens import HELP_TOPICS

log = logging.getLogger(__name__)

from agent.resources import ASSETS, HELP_VIDEO  # noqa: E402  (shipped data, see agent/resources.py)


class VoiceLibrary:
    """Prompt texts, patterns and rendered clips, as the state machine asks for them."""

    def __init__(self, catalogue: Catalogue, cache: PromptCache):
        self.catalogue = catalogue
        self.cache = cache
        self.clip = cache.clip
        self.chime = cache.chime
        self.pattern = catalogue.pattern

    def display(self, prompt_id: str, language: str) -> str:
        try:
            return self.catalogue.display(prompt_id, language)
        except KeyError:
            return ""

    def screen_text(self, screen: str, language: str, fields: dict[str, object]) -> str:
        return self.catalogue.screen_text(screen, language, fields)


# Devices whose commands can take a while (serial lines, pcscd, a camera): their timers
# and polls run on their own worker. The others answer at once by contract (a screen on
# its own thread, aplay in a child process, a keypad buffer, a sensor sampled in memory).
QUEUED_KINDS = ("card_reader", "chip", "dispenser", "acceptor", "camera")
STOP_TIMEOUT = 30.0  # seconds a stopping agent waits for the open session to close


def _frames(device: Device) -> FrameTrace | None:
    """The frame trace of a serial device's link; None for any other device."""
    link = getattr(device, "link", None)
    return getattr(link, "frames", None)


def _check_brokers(brokers: list[str]) -> None:
    """ValueError naming the first URL the link could not use."""
    if brokers:
        from agent.mqtt import parse_broker_url

        for url in brokers:
            parse_broker_url(url)


def versions(devices: DeviceSet) -> dict:
    """The agent's version, Python's, and what each device reports of its firmware."""
    from agent import __version__

    firmware = {}
    for kind, device in devices.items():
        described = device.describe()
        reported = described.get("rom_version") or described.get("firmware")
        if reported:
            firmware[kind] = reported
    return {"agent": __version__, "python": platform.python_version(), "devices": firmware}


class Agent:
    """One ATM on one clock."""

    def __init__(
        self,
        config: Config,
        clock,
        recorder: Recorder | None = None,
        brokers: list[str] | None = None,
        catalogue: Catalogue | None = None,
        workers: bool | None = None,
    ):
        """``workers``: run device commands on worker threads (the default on the real
        clock); on the virtual clock they run inline unless asked (see devices.commands).
        A journal path of '' is in memory (``atm run`` names the default file itself)."""
        self.config = config
        self.clock = clock
        self.workers = not clock.virtual if workers is None else workers
        self.scheduler = Scheduler(clock)
        self.started_at = clock.now()
        self.started_wall = clock.utcnow()
        self.command_handler: CommandHandler | None = None  # the remote commands' (with a broker)
        self.recorder = recorder or Recorder(clock)
        self.inbox = Inbox()
        brokers = brokers if brokers is not None else config.telemetry["brokers"]
        _check_brokers(brokers)
        self.journal_path = config.journal_path or ":memory:"
        self.activity = Activity()
        self.queues: dict[str, CommandQueue] = {}
        # the devices and the bank host first: a bad option is an error before any file is written
        self.devices = self._create_devices()
        try:
            self._check_cassettes()
            self.host = create_host(config.host, self.scheduler, config.card_key)
            for what, path in (
                ("journal", self.journal_path),
                ("telemetry.outbox", config.telemetry["outbox"]),
                ("security.signing_key", config.signing_key),
            ):
                problem = missing_folder(path)
                if problem:
                    raise ConfigError(f"{what} {path}: {problem}")
            self.evidence = self._make_evidence()
        except (LocatorError, ConfigError) as exc:
            self._close_devices()
            raise ConfigError(str(exc)) from None
        try:
            self.outbox = self._make_outbox() if brokers else None
            boot = self.outbox.next_counter("boot") if self.outbox is not None else None
            self.telemetry = Telemetry(config.atm_id, clock, on_message=self._telemetry_out, boot=boot)
            self.telemetry.birth_facts = self._static_birth()
            self.publisher = self._make_publisher(brokers)
            self.telemetry.publishers.append(self.publisher)
            self.journal = Journal(
                self.journal_path,
                clock,
                signing_key=config.signing_key,
                checkpoint_rows=config.checkpoints["rows"],
                checkpoint_seconds=config.checkpoints["seconds"],
                on_checkpoint=self._send_checkpoint,
            )
            last = self.journal.last_checkpoint()
            if self.journal.made is None and last is not None:  # again: a crash may have come before its send
                self._send_checkpoint(last)
        except BaseException:
            self._close_devices()
            outbox = getattr(self, "outbox", None)  # made before the journal failed, or not at all
            if outbox is not None:
                outbox.close()
            raise
        self.catalogue = catalogue or Catalogue.load(ASSETS / "prompts")
        self.prompts = PromptCache(
            config.speech["cache_dir"] or None, self.catalogue, timeout=config.speech["render_timeout"]
        )
        self.voice = VoiceLibrary(self.catalogue, self.prompts)
        cache_dir = config.speech["cache_dir"]
        self.help_videos = HelpVideos(
            Path(cache_dir) / "help-videos" if cache_dir else None,
            size=lambda: self.devices.display.canvas_size,
            general=HELP_VIDEO,
            wait=clock.virtual,
        )
        self.prompter = Prompter(self.scheduler, self.devices.speaker, self.devices.display, self.voice, self.recorder)
        # a copy typed as the protocol DeviceCommands needs (dict is invariant); the
        # queues are all made by _create_devices above and never change afterwards
        queues: dict[str, Queue] = dict(self.queues)
        self.commands = DeviceCommands(queues, self.journal, self.inbox.post)
        t = config.timeouts
        settings = Settings(
            atm_id=config.atm_id,
            languages=config.languages,
            card_key=config.card_key,
            timeouts=t,
            pin_attempts=config.session["pin_attempts"],
            max_withdrawal=config.session["max_withdrawal"],
            magstripe_fallback=config.session["magstripe_fallback"],
            cash_interval=config.telemetry["cash_interval"],
            help_video=str(HELP_VIDEO),
            help_videos=self.help_videos.path,
        )
        self.atm = ATM(
            settings,
            self.devices,
            self.scheduler,
            self.commands,
            self.journal,
            self.telemetry,
            self.prompter,
            self.host,
            self.inbox.post,
            self.recorder,
            evidence=self.evidence,
        )
        self.loop = EventLoop(
            self.scheduler,
            self.inbox,
            self.atm.handle,
            self.atm.contain_error,
            activity=self.activity if clock.virtual and self.workers else None,
        )
        self._thread: threading.Thread | None = None
        self.atm.publish_birth()  # the first birth may go out before the loop runs
        if self.command_handler is None:  # no broker: the control socket's own handler
            self.command_handler = CommandHandler(
                self.inbox.post,
                self.publisher.rebirth,
                self.status_facts,
                self._inline_commands(),
                link=self.publisher.link_status,
            )
        self.notifier = Notifier()  # systemd's NOTIFY_SOCKET, if any
        self.control: ControlServer | None = None
        self.logbook: LogBook | None = None
        self.control_path = "" if clock.virtual else control_socket_path(config.control["socket"], self.journal_path)

    def _make_evidence(self) -> EvidenceFolder | None:
        """The camera's evidence folder, made now (ConfigError when it cannot be); None
        with an in-memory journal and no ``evidence.folder``."""
        ev_cfg = self.config.evidence
        folder = default_folder(ev_cfg["folder"], self.journal_path)
        if folder is None:
            return None
        problem = folder_problem(folder)
        if problem:
            raise ConfigError(f"evidence.folder {folder}: {problem}")
        return EvidenceFolder(folder, ev_cfg["keep_days"], ev_cfg["max_mb"] * 1024 * 1024)

    def _send_checkpoint(self, checkpoint) -> None:
        """A copy of each signed checkpoint for the monitoring centre, which the ATM cannot rewrite."""
        self.telemetry.event(checkpoint.telemetry())

    def serve_control(self) -> None:
        """Serve the control socket (``atm run``), and keep the log and the serial traces
        it streams; ControlError when it cannot be."""
        if self.control_path and self.control is None:
            assert self.command_handler is not None
            self.logbook = LogBook(self.recorder)
            frames = {kind: _frames(d) for kind, d in self.devices.items()}
            traces = {kind: trace.ring for kind, trace in frames.items() if trace is not None}
            streams = Streams(traces, self.logbook.ring, dict(self.config.devices))
            group = self.config.control["group"]
            self.control = ControlServer(self.control_path, self.command_handler, group, streams)
            self.control.start()
            self.logbook.start()

    def _check_cassettes(self) -> None:
        """The configured cassettes fit the dispenser (e.g. ``upper=A`` names one)."""
        try:
            self.devices.dispenser.load_cassettes(self.config.cassettes)
        except ValueError as exc:  # LocatorError too: it names the device and the option
            raise ConfigError(f"cassettes: {exc}") from None

    def _make_outbox(self) -> Outbox:
        """The durable outbox: the configured file, else next to the journal."""
        tel = self.config.telemetry
        path = tel["outbox"] or (":memory:" if self.journal_path == ":memory:" else self.journal_path + "-outbox.db")
        return Outbox(path, max_bytes=tel["outbox_max_mb"] * 1024 * 1024, max_age=tel["outbox_max_age"])

    def _make_publisher(self, brokers: list[str]) -> Publisher:
        """MQTT through the durable outbox when brokers are given, else memory."""
        if not brokers:
            return MemoryPublisher()
        from agent.mqtt import MqttLink, TlsFiles

        tel = self.config.telemetry
        assert self.outbox is not None  # made whenever there are brokers
        tls = TlsFiles(tel["tls_ca"], tel["tls_cert"], tel["tls_key"]) if tel["tls_ca"] else None
        link = MqttLink(
            brokers,
            self.config.atm_id,
            self.outbox,
            keepalive=tel["keepalive"],
            tls=tls,
            failback_after=tel["failback_after"],
            ack_deadline=tel["ack_deadline"],
            birth={**self.telemetry.birth_facts, "service": "starting"},
            make_message=self.telemetry.message,
        )
        self.command_handler = CommandHandler(
            self.inbox.post, link.rebirth, self.status_facts, self._inline_commands(), link=link.link_status
        )
        link.on_command = self.command_handler
        return link

    def _inline_commands(self) -> dict:
        """Commands the control socket answers without the state machine."""
        from agent.emulator_console import emulator_console

        return {"emulator": lambda args: emulator_console(self.devices, args)}

    def status_facts(self) -> dict:
        """What ``status`` adds from the agent, on the loop: uptime and versions (the link's
        status is read on the transport's thread: ``CommandHandler.link``)."""
        return {
            "atm_id": self.config.atm_id,
            "rig": Path(self.config.rig).stem if self.config.rig else "(config devices)",
            "journal": self.journal_path,
            "started": self.started_wall.isoformat(timespec="seconds"),
            "uptime_s": round(self.clock.now() - self.started_at, 1),
            "versions": versions(self.devices),
        }

    def _static_birth(self) -> dict:
        """The birth's facts that do not change while the agent runs."""
        from agent import __version__

        return {
            "firmware": __version__,
            "boot": self.telemetry.boot,
            "rig": Path(self.config.rig).stem if self.config.rig else "(config devices)",
            "languages": self.config.languages,
        }

    def _create_devices(self) -> DeviceSet:
        peers: dict[str, Device] = {}
        # Any: the entry point of each kind names a backend of that kind's interface
        # (CardReader, Keypad, ...), which create_device can only check is a Device
        devices: dict[str, Any] = {}
        for kind in DeviceSet.kinds():
            queue = CommandQueue(kind, self.activity, inline=not self.workers)
            self.queues[kind] = queue
            scheduler = WorkerScheduler(self.scheduler, queue) if kind in QUEUED_KINDS else self.scheduler
            ctx = DeviceContext(scheduler=scheduler, emit=self._device_event, peers=peers)
            try:
                devices[kind] = create_device(kind, self.config.devices[kind], ctx)
            except ValueError as exc:  # LocatorError: it names the device, the locator and the option
                for device in devices.values():
                    device.close()
                self._stop_queues()
                raise ConfigError(str(exc)) from None
        peers.update(devices)
        return DeviceSet(**devices)

    def _device_event(self, kind: str, event: str, data: dict) -> None:
        self.inbox.post(ev.device_event(kind, event, data))

    def _telemetry_out(self, message) -> None:
        self.recorder("telemetry", topic=message.topic, payload=message.payload, qos=message.qos, retain=message.retain)

    # lifecycle -------------------------------------------------------------
    def warm_prompts(self):
        """Render missing prompts (a child process); report failures as a fault."""
        report = self.prompts.warm()
        if not report.ok:
            self.devices.speaker.raise_fault(
                "prompts_unrendered", f"{len(report.failed)} prompts could not be rendered; their text is shown instead"
            )
        return report

    def open(self, persist: bool = True) -> None:
        """Open every device and load the cassette counts (journal first, then config)."""
        for device in self.devices.values():
            device.open()
        saved = self.journal.load_cassettes()
        try:
            self.devices.dispenser.load_cassettes(saved or self.config.cassettes)
        except ValueError as exc:  # e.g. more cassettes than the dispenser has
            where = f"journal {self.journal_path}: cassettes" if saved else "cassettes"
            raise ConfigError(f"{where}: {exc}") from None
        if persist:
            self.journal.save_cassettes(self.devices.dispenser.cassettes)

    def start(self) -> None:
        """Open the devices and let the state machine run its start-up (on the loop)."""
        self.open()
        if not self.clock.virtual:  # draw the screens' help at the display's size meanwhile
            topics = sorted(set(HELP_TOPICS.values()) - {"general"})
            self.help_videos.warm_in_background(topics, self.config.languages)
        self.atm.publish_birth()  # the devices are open, the cassettes loaded
        self.publisher.start()
        self.scheduler.call_later(0, self._start_atm)
        Supervision(self.notifier, self.scheduler.call_later, self._service_status).start()
        self.scheduler.call_later(self.config.telemetry["heartbeat_interval"], self._heartbeat)
        self.scheduler.call_later(self.config.checkpoints["seconds"], self._checkpoint_tick)

    def _checkpoint_tick(self) -> None:
        """Every ``journal.checkpoint_seconds``, on the loop: the journal's unsigned rows get
        their checkpoint (and the centre its copy) even when the ATM is idle."""
        self.scheduler.call_later(self.config.checkpoints["seconds"], self._checkpoint_tick)
        self.journal.checkpoint_when_due()

    def _service_status(self) -> str:
        service = self.atm.service
        return status_text(service.service, service.functions, service.hold_reason)

    def _heartbeat(self) -> None:
        """Every ``telemetry.heartbeat_interval``, from the loop: alive for how long, how many
        messages wait in the outbox, and the loop's worst delay since the last one."""
        self.scheduler.call_later(self.config.telemetry["heartbeat_interval"], self._heartbeat)
        try:
            backlog: int | None = self.outbox.count() if self.outbox is not None else 0
        except OutboxError as exc:  # a telemetry tick must never disturb a customer's session
            log.warning("heartbeat: %s", exc)
            backlog = None
        self.telemetry.heartbeat(
            {
                "uptime_s": round(self.clock.now() - self.started_at, 1),
                "backlog": backlog,
                "loop_delay_ms": round(self.scheduler.take_worst_lateness() * 1000, 1),
                "state": str(self.atm.state),
                "service": self.atm.service.service,
            }
        )

    def _start_atm(self) -> None:
        self.atm.start()
        self.publisher.rebirth()  # the first birth went out before the devices were up

    def start_thread(self) -> None:
        """Real clock: run the loop on its own thread."""
        self._thread = threading.Thread(target=self.loop.run_forever, name="atm-fsm", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """False once the loop thread has ended (stopped, or failed beyond containment), or
        the telemetry link has given up."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and self.publisher.failure is None

    def stop(self) -> None:
        """Close the open session (card back, cash retracted, escrow returned), stop the
        loop, publish the offline status and close everything."""
        self.notifier.send(STOPPING="1")
        if self.command_handler is not None:
            self.command_handler.close()  # nothing would run or journal a request from now on
        if self.control is not None:
            self.control.stop()
        if self.logbook is not None:
            self.logbook.stop()
        self.loop.post(ev.StopRequested("shutdown", done=self.loop.stop))
        if self._thread is None:
            self.loop.run_until_idle(max_time=self.clock.now())  # virtual clock: now, without moving time
            self.loop.stop()
        else:
            self._thread.join(timeout=STOP_TIMEOUT)
            self.loop.stop()
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # never close what the loop may still be using
                log.error("the state machine did not stop in time; devices left open")
                return
        self.journal.checkpoint()  # the rows of this run signed, and sent before the link stops
        final = self.telemetry.status_message(False, self.atm.service.service, reason="stopped")
        self.publisher.stop(final)
        self._telemetry_out(final)
        self.close()

    def _stop_queues(self) -> None:
        for queue in self.queues.values():
            queue.stop()

    def _close_devices(self) -> None:
        self._stop_queues()
        for device in self.devices.values():
            try:
                device.close()
            except Exception:  # closing must not hide the other devices' close
                log.exception("closing %s", device.kind)

    def close(self) -> None:
        """Stop drawing help videos; finish the devices' queued work, close them and the journal."""
        self.help_videos.stop()
        self._close_devices()
        self.journal.close()
        if self.outbox is not None:
            self.outbox.close()
        self.notifier.close()

    def replenish(self, cassettes) -> None:
        """A cash van loads these cassettes (thread-safe)."""
        self.loop.post(ev.ReplenishRequested(tuple(cassettes)))

    def maintenance(self, kind: str) -> None:
        """A field engineer's reset of one device (thread-safe)."""
        self.loop.post(ev.MaintenanceRequested(kind))
