"""The real serial drivers on emulated devices: backends ``lcdm2000+emu://`` and ``ict3q8+emu://``.

Each class starts its emulator on a fresh pty and runs the unchanged driver
on the pty's path, so everything from the driver's bytes up is the real
code. The classes add what a simulation needs on top: the ``customer_*``
actions (through the emulator's control surface) and ``inject``/``remove``
with the same fault names as the ``sim://`` devices, plus every emulator fault.

Locator options for the emulator: ``timing=1`` keeps real baud-rate timing;
``fault=NAME`` (several as ``fault=a,b``) starts with faults present;
``note_ms=N`` (dispenser, default 0) adds N ms of mechanism time per note, and
the driver's ``note_time`` then allows for it. The other options go to the
driver, as for ``lcdm2000://PORT``, whose link timing defaults are shorter here
(:data:`EMULATOR_TIMING`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.base import DeviceContext
from devices.card_reader import CardPosition
from devices.ict3q8 import Ict3q8CardReader
from devices.lcdm import Lcdm2000Dispenser
from devices.locator import Locator
from hw_mocks.cards import SimCard
from hw_mocks.ict3q8_emulator import Ict3q8Emulator
from hw_mocks.lcdm_emulator import Lcdm2000Emulator
from hw_mocks.serial_emulator import COMMON_FAULTS, SerialEmulator

if TYPE_CHECKING:  # the mixin is always combined with a driver (a Device)
    from devices.base import Device as _MixinBase
else:
    _MixinBase = object

DEMO_ATR = bytes.fromhex("3B6800000073C84013009000")  # a plain T=0 ATR for chip cards
# Quicker link timing than a real device needs: an emulator answers at once.
EMULATOR_TIMING = {"ack_timeout": "0.2", "timeout": "0.5", "poll": "0.1"}


def _emulator_options(loc: Locator, fault_names: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
    """(real timing?, faults to start with) from the locator."""
    return loc.flag("timing"), loc.words("fault", fault_names)


class _Emulated(_MixinBase):
    """What both emulated rigs share: start, stop, fault names."""

    FAULT_ALIASES: dict[str, tuple[str, ...]] = {}
    emulator: SerialEmulator
    _initial_faults: tuple[str, ...] = ()

    @classmethod
    def _fault_names(cls, emulator_class: type[SerialEmulator]) -> tuple[str, ...]:
        return tuple(cls.FAULT_ALIASES) + tuple(emulator_class.FAULTS) + COMMON_FAULTS

    def _start_emulator(self) -> None:
        for name in self._initial_faults:
            self.inject(name)
        self.emulator.start()

    @property
    def INJECTABLE(self) -> tuple[str, ...]:
        return self._fault_names(type(self.emulator))

    @property
    def injected(self) -> set[str]:
        return set(self.emulator.faults) | {
            a for a, names in self.FAULT_ALIASES.items() if set(names) <= self.emulator.faults
        }

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


class EmulatedLcdm2000(_Emulated, Lcdm2000Dispenser):
    """The LCDM-2000 driver on :class:`Lcdm2000Emulator`."""

    FAULT_ALIASES = {
        "jam": ("jam_chk",),
        "near_end": ("near_end_upper", "near_end_lower"),
        "empty": ("empty_upper", "empty_lower"),
    }
    emulator: Lcdm2000Emulator

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        loc = locator if locator is not None else Locator.empty()
        timing, self._initial_faults = _emulator_options(loc, self._fault_names(Lcdm2000Emulator))
        note_ms = loc.number("note_ms", float, 0.0, 10_000.0, 0.0)
        self.emulator = Lcdm2000Emulator(baud=9600 if timing else None, note_ms=note_ms)
        note_time = f"{0.02 + note_ms / 1000:g}"  # the driver's reply allowance per note covers the mechanism
        try:
            super().__init__(ctx, loc.derive(self.emulator.port, {**EMULATOR_TIMING, "note_time": note_time}))
        except BaseException:
            self.emulator.stop()
            raise

    def open(self) -> None:
        self._start_emulator()
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
    emulator: Ict3q8Emulator

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        loc = locator if locator is not None else Locator.empty()
        timing, self._initial_faults = _emulator_options(loc, self._fault_names(Ict3q8Emulator))
        self.emulator = Ict3q8Emulator(baud=38400 if timing else None)
        try:
            super().__init__(ctx, loc.derive(self.emulator.port, EMULATOR_TIMING))
        except BaseException:
            self.emulator.stop()
            raise
        self.contacts = None  # a chip emulation told when a card reaches the IC contacts

    def _moved_to(self, new: CardPosition) -> None:
        super()._moved_to(new)
        if self.contacts is not None:
            if new is CardPosition.INSIDE:
                self.contacts.card_arrived(self.card)
            else:
                self.contacts.card_left()

    def open(self) -> None:
        self._start_emulator()
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
