"""In-process simulations of the ATM's devices (backend ``sim://``).

The ``customer_*`` methods are what a person does to the machine; the
simulated customer and the tests call them. Faults are armed with
``inject(name)`` and disarmed with ``remove(name)``.
"""

from __future__ import annotations

import numpy as np

from devices.acceptor import CashAcceptor
from devices.base import Action, DeviceContext, DeviceError, Severity
from devices.camera import Camera
from devices.card_reader import LED_COLOURS, CardPosition, CardReader
from devices.carddata import CardData
from devices.chip import ChipReader
from devices.dispenser import CashDispenser, DispenseResult
from devices.keypad import Keypad
from devices.locator import Locator
from devices.proximity import ProximitySensor
from hw_mocks.cards import SIM_CHIP_FAULTS, SimCard
from hw_mocks.faults import FaultInjection
from hw_mocks.history import History


class SimCardReader(FaultInjection, CardReader):
    INJECTABLE = ("jam", "read_error")

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        self.entry_enabled = False
        self.card: SimCard | None = None
        self._position = CardPosition.NONE
        self.captured: list[SimCard] = History()
        self.led = "off"

    @property
    def position(self) -> CardPosition:
        return self._position

    def enable_entry(self) -> None:
        self.entry_enabled = True

    def disable_entry(self) -> None:
        self.entry_enabled = False

    def _fail_if_jammed(self) -> None:
        if "jam" in self.injected:
            self._position = CardPosition.JAMMED
            raise DeviceError(
                self.raise_fault("jam", "card jammed in the transport", Severity.ERROR, Action.MAINTENANCE)
            )

    def read(self, key: bytes) -> CardData:
        if self.card is None or self._position is not CardPosition.INSIDE:
            raise DeviceError(self.raise_fault("no_card", "no card inside", Severity.WARNING, Action.NONE))
        self._fail_if_jammed()
        if "read_error" in self.injected:
            raise DeviceError(
                self.raise_fault("read_error", "magnetic stripe unreadable", Severity.WARNING, Action.NONE)
            )
        return CardData.from_track2(self.card.track2, key)

    def eject(self) -> None:
        self._fail_if_jammed()
        if self.card is not None:
            self._position = CardPosition.GATE
            self.emit("at_gate")

    def capture(self) -> None:
        if self.card is not None:
            self.captured.append(self.card)
        self.card, self._position = None, CardPosition.NONE
        self.emit("captured")

    def set_led(self, colour: str) -> None:
        if colour not in LED_COLOURS:
            raise ValueError(f"LED colour {colour!r} is not one of {', '.join(LED_COLOURS)}")
        self.led = colour

    def self_test(self):
        if "jam" in self.injected:
            self.raise_fault("jam", "card transport blocked", Severity.ERROR, Action.MAINTENANCE)
        else:
            self.clear_fault("jam")
            if self._position is CardPosition.JAMMED:
                self._position = CardPosition.INSIDE if self.card else CardPosition.NONE
        return self.status

    # what the customer does
    def customer_insert(self, card: SimCard) -> bool:
        if not self.entry_enabled or self.card is not None:
            return False
        self.card, self._position = card, CardPosition.INSIDE
        self.entry_enabled = False
        self.emit("inserted")
        return True

    def customer_take(self) -> SimCard | None:
        if self._position is not CardPosition.GATE:
            return None
        card, self.card, self._position = self.card, None, CardPosition.NONE
        self.emit("taken")
        return card


class SimChipReader(FaultInjection, ChipReader):
    """Reads the chip of the card inside the simulated card reader."""

    INJECTABLE = ("mute",)

    def read_card(self, key: bytes) -> CardData:
        reader = self.ctx.peers.get("card_reader")
        card = getattr(reader, "card", None)
        if card is None:
            raise DeviceError(self.raise_fault("no_card", "no card at the contacts", Severity.WARNING, Action.NONE))
        activate = getattr(reader, "activate_contacts", None)
        if activate is not None and card.chip and "mute" not in self.injected:
            try:  # a motorised reader powers the contacts through its own protocol
                activate()
            except DeviceError:
                card = None
        if card is None or not card.chip or "mute" in self.injected:
            raise DeviceError(
                self.raise_fault("mute_card", "the card's chip does not answer", Severity.INFO, Action.NONE)
            )
        if card.profile in SIM_CHIP_FAULTS:  # the same answer the PC/SC driver gives for that card
            code = SIM_CHIP_FAULTS[card.profile]
            raise DeviceError(self.raise_fault(code, f"simulated {card.profile} card", Severity.INFO, Action.NONE))
        self.clear_fault("mute_card")
        return CardData(
            card.pan,
            key,
            expiry=card.expiry,
            service_code=card.service_code,
            source="chip",
            country=card.country,
            label=card.label,
        )


class SimDispenser(FaultInjection, CashDispenser):
    """Two or more cassettes, a stacker, a gate (shutter) and a retract bin."""

    INJECTABLE = ("jam", "pickup_error", "near_end", "empty")

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        self.stacker = 0
        self.at_gate = 0
        self.retracted = 0
        self.reject_bin = 0

    def dispense(self, plan: dict[str, int]) -> DispenseResult:
        result = DispenseResult(requested=dict(plan))
        for cid, n in plan.items():
            cas = self.cassette(cid)
            if "empty" in self.injected:  # the cassette holds fewer notes than counted
                result.fault_code = "cassette_empty"
                self._apply(result)
                self.raise_fault(
                    "cassette_empty", f"cassette {cid} ran out of notes (bill end)", Severity.ERROR, Action.REPLENISH
                )
                return result
            if "jam" in self.injected:
                picked = min(n // 2, cas.count)
                result.picked[cid] = picked
                result.fault_code = "jam"
                self._apply(result)
                self.stacker += picked
                self.raise_fault("jam", "notes jammed at the check sensors", Severity.ERROR, Action.RESET)
                return result
            rejected = 1 if "pickup_error" in self.injected and n < cas.count else 0
            result.picked[cid] = n + rejected
            result.rejected[cid] = rejected
            self.reject_bin += rejected
            self.stacker += n
        self._apply(result)
        self._update_near_end()
        return result

    def test_dispense(self, cassette_id: str, notes: int) -> DispenseResult:
        """Notes picked straight into the reject bin; a jam stops it half-way, as a dispense."""
        cas = self.cassette(cassette_id)
        picked = min(notes // 2 if "jam" in self.injected else notes, cas.count)
        result = DispenseResult(requested={}, picked={cassette_id: picked}, rejected={cassette_id: picked})
        if "jam" in self.injected:
            result.fault_code = "jam"
            self.raise_fault("jam", "notes jammed at the check sensors", Severity.ERROR, Action.RESET)
        self._apply(result)
        self.reject_bin += picked
        self._update_near_end()
        return result

    def _update_near_end(self) -> None:
        for cas in self.cassettes:
            cas.near_end = "near_end" in self.injected

    def present(self) -> int:
        self.at_gate, self.stacker = self.stacker, 0
        if self.at_gate:
            self.emit("cash_presented", notes=self.at_gate)
        return self.at_gate

    def retract(self) -> int:
        notes, self.at_gate = self.at_gate, 0
        self.retracted += notes
        return notes

    def reset(self) -> None:
        self.reject_bin += self.stacker
        self.stacker = 0
        self.self_test()

    def self_test(self):
        if "jam" in self.injected:
            self.raise_fault("jam", "notes jammed at the check sensors", Severity.ERROR, Action.RESET)
        else:
            self.clear_fault("jam")
        if "empty" not in self.injected:
            self.clear_fault("cassette_empty")
        self._update_near_end()
        return self.status

    def customer_take_cash(self) -> int:
        notes, self.at_gate = self.at_gate, 0
        if notes:
            self.emit("cash_taken", notes=notes)
        return notes


class SimAcceptor(FaultInjection, CashAcceptor):
    INJECTABLE = ("jam",)

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        self.enabled = False
        self._escrow: dict[int, int] = {}
        self.stored: dict[int, int] = {}
        self.returned: dict[int, int] = {}
        self.retained: dict[int, int] = {}  # notes an engineer cleared out of the escrow

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def escrow(self) -> dict[int, int]:
        return dict(self._escrow)

    def store(self) -> dict[int, int]:
        if "jam" in self.injected:
            raise DeviceError(self.raise_fault("jam", "note jam in the acceptor", Severity.ERROR, Action.RESET))
        stored, self._escrow = self._escrow, {}
        for denom, n in stored.items():
            self.stored[denom] = self.stored.get(denom, 0) + n
        return stored

    def return_notes(self) -> dict[int, int]:
        back, self._escrow = self._escrow, {}
        for denom, n in back.items():
            self.returned[denom] = self.returned.get(denom, 0) + n
        return back

    def self_test(self):
        if "jam" in self.injected:
            self.raise_fault("jam", "note jam in the acceptor", Severity.ERROR, Action.RESET)
        else:
            self.clear_fault("jam")
        if self._escrow and not self.enabled:
            self.raise_fault("escrow_not_empty", "notes are left in the escrow", Severity.ERROR, Action.MAINTENANCE)
        return self.status

    def reset(self) -> None:
        """Engineer's reset: notes left in the escrow go to the retained bin."""
        for denom, n in self._escrow.items():
            self.retained[denom] = self.retained.get(denom, 0) + n
        self._escrow = {}
        self.clear_fault("escrow_not_empty")
        self.self_test()

    def customer_insert_notes(self, notes: dict[int, int]) -> bool:
        if not self.enabled:
            return False
        for denom, n in notes.items():
            self._escrow[denom] = self._escrow.get(denom, 0) + n
        self.emit("notes_inserted", notes=dict(notes))
        return True


class SimProximity(FaultInjection, ProximitySensor):
    """Customer presence; ``failure`` makes it stop reporting."""

    INJECTABLE = ("failure",)

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None) -> None:
        super().__init__(ctx, locator)
        self._present = False

    @property
    def present(self) -> bool | None:
        return None if "failure" in self.injected else self._present

    def inject(self, name: str) -> None:
        super().inject(name)
        self.raise_fault("no_readings", "the proximity sensor stopped reporting", Severity.WARNING)

    def remove(self, name: str) -> None:
        super().remove(name)
        self.clear_fault("no_readings")
        self.emit("presence", present=self._present)

    def customer_arrive(self) -> None:
        self._set(True)

    def customer_leave(self) -> None:
        self._set(False)

    def _set(self, present: bool) -> None:
        if present != self._present:
            self._present = present
            if "failure" not in self.injected:
                self.emit("presence", present=present)


class SimKeypad(Keypad):
    """The customer types whole entries; each keystroke counts as activity."""

    def customer_keys(self, count: int = 1) -> None:
        for _ in range(count):
            self.emit("key")

    def customer_enter(self, line: str) -> None:
        self.submit_line(line)


class SimCamera(FaultInjection, Camera):
    INJECTABLE = ("offline",)

    def snapshot(self):
        if "offline" in self.injected:
            raise DeviceError(self.raise_fault("offline", "camera gives no frames", Severity.WARNING))
        self.clear_fault("offline")
        return np.zeros((48, 64, 3), dtype=np.uint8)
