"""Builds and runs one ATM: devices, event loop, journal, telemetry, voice.

:class:`Agent` wires the parts together from a :class:`~agent.config.Config`.
The clock decides the mode: a virtual clock for demos and tests, the real
clock for ``atm run`` and kiosks.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.config import Config, ConfigError
from agent.journal import Journal
from agent.outbox import Outbox
from agent.output import Recorder
from agent.prompts import Catalogue, PromptCache
from agent.telemetry import MemoryPublisher, Telemetry
from devices.base import DeviceContext
from devices.registry import DEVICE_KINDS, create_device
from fsm.atm import ATM, Settings
from fsm.clock import Scheduler
from fsm.loop import EventLoop
from fsm.prompter import Prompter
from hw_mocks.bank_host import demo_host

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
HELP_VIDEO = ASSETS / "video" / "help.mp4"


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


class Agent:
    """One ATM on one clock."""

    def __init__(self, config: Config, clock, recorder: Recorder | None = None,
                 brokers: list[str] | None = None, catalogue: Catalogue | None = None):
        self.config = config
        self.clock = clock
        self.scheduler = Scheduler(clock)
        self.recorder = recorder or Recorder(clock)
        self.loop = EventLoop(self.scheduler)
        brokers = brokers if brokers is not None else config.telemetry["brokers"]
        self.outbox = self._make_outbox() if brokers else None
        boot = self.outbox.next_counter("boot") if self.outbox is not None else None
        self.telemetry = Telemetry(config.atm_id, clock, on_message=self._telemetry_out, boot=boot)
        self.publisher = self._make_publisher(brokers)
        self.telemetry.publishers.append(self.publisher)
        self.journal = Journal(config.journal_path, clock)
        self.catalogue = catalogue or Catalogue.load(ASSETS / "prompts")
        self.prompts = PromptCache(config.speech["cache_dir"] or None, self.catalogue,
                                   timeout=config.speech["render_timeout"])
        self.voice = VoiceLibrary(self.catalogue, self.prompts)
        self.host = demo_host(self.scheduler, config.card_key)
        self.devices = self._create_devices()
        self.prompter = Prompter(self.scheduler, self.devices["speaker"], self.devices["display"],
                                 self.voice, self.recorder)
        t = config.timeouts
        settings = Settings(
            atm_id=config.atm_id, languages=config.languages, card_key=config.card_key, timeouts=t,
            pin_attempts=config.session["pin_attempts"], max_withdrawal=config.session["max_withdrawal"],
            magstripe_fallback=config.session["magstripe_fallback"],
            cash_interval=config.telemetry["cash_interval"], help_video=str(HELP_VIDEO))
        self.atm = ATM(settings, self.devices, self.scheduler, self.journal, self.telemetry,
                       self.prompter, self.host, self.loop.post, self.recorder)
        self.loop.dispatch = self.atm.handle
        self.loop.on_error = self.atm.contain_error
        self._thread: threading.Thread | None = None

    def _make_outbox(self) -> Outbox:
        """The durable outbox: the configured file, else next to the journal."""
        tel = self.config.telemetry
        path = tel["outbox"] or (":memory:" if self.config.journal_path == ":memory:"
                                 else self.config.journal_path + "-outbox.db")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return Outbox(path, max_bytes=tel["outbox_max_mb"] * 1024 * 1024, max_age=tel["outbox_max_age"])

    def _make_publisher(self, brokers: list[str]):
        """MQTT through the durable outbox when brokers are given, else memory."""
        if not brokers:
            return MemoryPublisher()
        from agent.mqtt import MqttLink, TlsFiles
        from agent.remote import CommandHandler
        tel = self.config.telemetry
        tls = TlsFiles(tel["tls_ca"], tel["tls_cert"], tel["tls_key"]) if tel["tls_ca"] else None
        link = MqttLink(brokers, self.config.atm_id, self.outbox, keepalive=tel["keepalive"], tls=tls,
                        failback_after=tel["failback_after"], birth=self.birth,
                        make_message=self.telemetry.message)
        link.on_command = CommandHandler(self.loop.post, link.rebirth)
        return link

    def birth(self) -> dict:
        """What the monitoring centre needs to know on every (re)connect (any thread)."""
        from agent import __version__
        atm = getattr(self, "atm", None)
        return {
            "firmware": __version__,
            "boot": self.telemetry.boot,
            "rig": Path(self.config.rig).stem if self.config.rig else "(config devices)",
            "devices": {k: {"locator": d.locator, "status": d.status.value} for k, d in self.devices.items()},
            "cassettes": [c.as_dict() for c in self.devices["dispenser"].cassettes],
            "service": atm.service if atm and atm.state != "starting" else "starting",
            "functions": list(atm.functions) if atm else [],
            "languages": self.config.languages,
        }

    def _create_devices(self) -> dict:
        ctx = DeviceContext(scheduler=self.scheduler, emit=self._device_event)
        devices = {}
        for kind in DEVICE_KINDS:
            try:
                devices[kind] = create_device(kind, self.config.devices[kind], ctx)
            except ValueError as exc:  # LocatorError: it names the device, the locator and the option
                for device in devices.values():
                    device.close()
                raise ConfigError(str(exc)) from None
        ctx.peers.update(devices)
        return devices

    def _device_event(self, kind: str, event: str, data: dict) -> None:
        self.loop.post("device", kind=kind, event=event, data=data)

    def _telemetry_out(self, message) -> None:
        self.recorder("telemetry", topic=message.topic, payload=message.payload,
                      qos=message.qos, retain=message.retain)

    # lifecycle -------------------------------------------------------------
    def warm_prompts(self):
        """Render missing prompts (a child process); report failures as a fault."""
        report = self.prompts.warm()
        if not report.ok:
            self.devices["speaker"].raise_fault(
                "prompts_unrendered", f"{len(report.failed)} prompts could not be rendered;"
                " their text is shown instead")
        return report

    def open(self, persist: bool = True) -> None:
        """Open every device and load the cassette counts (journal first, then config)."""
        for device in self.devices.values():
            device.open()
        cassettes = self.journal.load_cassettes() or self.config.cassettes
        self.devices["dispenser"].load_cassettes(cassettes)
        if persist:
            self.journal.save_cassettes(self.devices["dispenser"].cassettes)

    def start(self) -> None:
        """Open the devices and let the state machine run its start-up (on the loop)."""
        self.open()
        start = getattr(self.publisher, "start", None)
        if start is not None:
            start()
        self.scheduler.call_later(0, self._start_atm)

    def _start_atm(self) -> None:
        self.atm.start()
        rebirth = getattr(self.publisher, "rebirth", None)
        if rebirth is not None:  # the first birth went out before the devices were up
            rebirth()

    def start_thread(self) -> None:
        """Real clock: run the loop on its own thread."""
        self._thread = threading.Thread(target=self.loop.run_forever, name="atm-fsm", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """False once the loop thread has ended (stopped, or failed beyond containment)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Hand back a card that is inside, stop the loop, publish the offline
        status and close everything."""
        self.loop.post("abort", reason="shutdown")
        if self._thread is None:
            self.loop.run_until_idle(max_time=self.clock.now())  # virtual clock: run it now
        self.loop.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # never close what the loop may still be using
                log.error("the state machine did not stop within 10 s; devices left open")
                return
        final = self.telemetry.status_message(False, self.atm.service, reason="stopped")
        stop = getattr(self.publisher, "stop", None)
        if stop is not None:
            stop(final)
        else:
            self.publisher.publish(final)
        self._telemetry_out(final)
        self.close()

    def close(self) -> None:
        """Close the devices and the journal."""
        for device in self.devices.values():
            try:
                device.close()
            except Exception:  # closing must not hide the other devices' close
                log.exception("closing %s", device.kind)
        self.journal.close()
        if self.outbox is not None:
            self.outbox.close()

    def replenish(self, cassettes) -> None:
        """A cash van loads these cassettes (thread-safe)."""
        self.loop.post("replenish", cassettes=list(cassettes))

    def maintenance(self, kind: str) -> None:
        """A field engineer's reset of one device (thread-safe)."""
        self.loop.post("maintenance", device=kind)
