"""The real serial drivers on emulated devices: backends ``lcdm2000+emu://`` and ``ict3q8+emu://``.

Each class starts its emulator on a fresh pty and runs the unchanged driver
on the pty's path, so everything from the driver's bytes up is the real
code. The classes add what a simulation needs on top: the ``customer_*``
actions (through the emulator's control surface) and ``inject``/``remove``
with the same fault names as the ``sim://`` devices, plus every emulator fault.

Locator options for the emulator: ``timing=1`` keeps real baud-rate timing;
``fault=NAME`` (repeatable as ``fault=a,b``) starts with faults present;
``note_ms=N`` (dispenser, default 0) adds N ms of mechanism time per note, and
the driver's ``note_time`` then allows for it. The other options go to the
driver, as for ``lcdm2000://PORT``.
"""
from __future__ import annotations

from dataclasses import replace

from devices.card_reader import CardPosition
from devices.ict3q8 import Ict3q8CardReader
from devices.lcdm import Lcdm2000Dispenser
from hw_mocks.cards import SimCard
from hw_mocks.ict3q8_emulator import Ict3q8Emulator
from hw_mocks.lcdm_emulator import Lcdm2000Emulator

DEMO_ATR = bytes.fromhex("3B6800000073C84013009000")  # a plain T=0 ATR for chip cards
# Quicker link timing than a real device needs: an emulator answers at once.
EMULATOR_TIMING = {"ack_timeout": "0.2", "timeout": "0.5", "poll": "0.1"}


def _split_options(locator, emulator_options=("timing", "fault")):
    """(emulator options, locator with the driver's options and the pty path)."""
    params = dict(locator.params)
    mine = {k: params.pop(k) for k in emulator_options if k in params}
    if "timing" in mine and mine["timing"] not in ("0", "1"):
        raise ValueError(f"option timing={mine['timing']!r} is not 0 or 1")
    return mine, params


class _Emulated:
    """What both emulated rigs share: start, stop, fault names."""

    FAULT_ALIASES: dict[str, tuple[str, ...]] = {}
    emulator = None

    def _start_emulator(self, options: dict) -> None:
        for name in filter(None, options.get("fault", "").split(",")):
            self.inject(name)
        self.emulator.start()

    @property
    def INJECTABLE(self) -> tuple[str, ...]:
        return tuple(self.FAULT_ALIASES) + self.emulator.FAULTS + ("nak_storm", "garbled", "silent")

    @property
    def injected(self) -> set[str]:
        return set(self.emulator.faults) | {a for a, names in self.FAULT_ALIASES.items()
                                            if set(names) <= self.emulator.faults}

    def _names(self, name: str) -> tuple[str, ...]:
        if name in self.FAULT_ALIASES:
            return self.FAULT_ALIASES[name]
        if name not in self.INJECTABLE:
            raise ValueError(f"{type(self).__name__} has no fault {name!r} (known: {', '.join(self.INJECTABLE)})")
        return (name,)

    def inject(self, name: str) -> None:
        for n in self._names(name):
            self.emulator.inject(n)

    def remove(self, name: str) -> None:
        for n in self._names(name):
            self.emulator.remove(n)

    def close(self) -> None:
        super().close()
        self.emulator.stop()


def _driver_locator(locator, params, port: str, **timing):
    return replace(locator, path=port, params={**EMULATOR_TIMING, **timing, **params})


class EmulatedLcdm2000(_Emulated, Lcdm2000Dispenser):
    """The LCDM-2000 driver on :class:`Lcdm2000Emulator`."""

    FAULT_ALIASES = {"jam": ("jam_chk",), "near_end": ("near_end_upper", "near_end_lower"),
                     "empty": ("empty_upper", "empty_lower")}

    def __init__(self, ctx=None, locator=None):
        options, params = _split_options(locator, ("timing", "fault", "note_ms"))
        try:
            note_ms = float(options.get("note_ms", 0))
        except ValueError:
            raise ValueError(f"option note_ms={options['note_ms']!r} is not a number") from None
        self.emulator = Lcdm2000Emulator(baud=9600 if options.get("timing") == "1" else None, note_ms=note_ms)
        note_time = f"{0.02 + note_ms / 1000:g}"  # the driver's reply allowance per note covers the mechanism
        super().__init__(ctx, _driver_locator(locator, params, self.emulator.port, note_time=note_time))
        self._options = options

    def open(self) -> None:
        self._start_emulator(self._options)
        super().open()

    def load_cassettes(self, cassettes) -> None:
        """The cash van fills the emulator's cassettes with what the config says."""
        super().load_cassettes(cassettes)
        counts = {self.position_of(c.id): c.count for c in self.cassettes}
        self.emulator.load(**counts)

    def remove(self, name: str) -> None:
        super().remove(name)
        if name == "jam" or name.startswith("jam_"):
            self.emulator.clear_jam()  # the engineer takes the stuck notes out

    def customer_take_cash(self) -> int:
        """The customer pulls the notes out of the throat; the driver sees the EXIT sensor clear."""
        return self.emulator.take_notes()


class EmulatedIct3q8(_Emulated, Ict3q8CardReader):
    """The ICT3Q8 driver on :class:`Ict3q8Emulator`; cards are :class:`SimCard`."""

    FAULT_ALIASES = {}

    def __init__(self, ctx=None, locator=None):
        options, params = _split_options(locator)
        self.emulator = Ict3q8Emulator(baud=38400 if options.get("timing") == "1" else None)
        super().__init__(ctx, _driver_locator(locator, params, self.emulator.port))
        self._options = options
        self.contacts = None  # a chip emulation told when a card reaches the IC contacts

    def _moved_to(self, new: CardPosition) -> None:
        super()._moved_to(new)
        if self.contacts is not None:
            if new is CardPosition.INSIDE:
                self.contacts.card_arrived(self.card)
            else:
                self.contacts.card_left()

    def open(self) -> None:
        self._start_emulator(self._options)
        super().open()

    @property
    def card(self) -> SimCard | None:
        """The simulated card at the contacts (for the simulated chip reader)."""
        card = self.emulator.card
        return card.tag if card is not None and self.emulator.position == "inside" else None

    @property
    def captured(self) -> list[SimCard]:
        return [c.tag for c in self.emulator.captured]

    def customer_insert(self, card: SimCard) -> bool:
        tracks = {2: card.track2.strip(";?")}
        return self.emulator.insert_card(tracks, atr=DEMO_ATR if card.chip else None, tag=card)

    def customer_take(self) -> SimCard | None:
        card = self.emulator.take_card()
        return card.tag if card is not None else None
