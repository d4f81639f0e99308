"""Puloon LCDM-2000 cash dispenser driver (backend ``lcdm2000://PORT``).

Locator options: ``baud`` (9600), ``timeout`` (reply timeout in seconds, 3),
``ack_timeout`` (0.5), ``retries`` (3), ``note_time`` (extra reply time per
note, 0.5), ``poll`` (seconds between exit-sensor polls while cash waits, 0.25),
``upper``/``lower`` (which configured cassette id sits where; default: the
first two in the config, in order), ``trace=1`` (hex dump to the log).

Notes leave through the exit into the throat, where the customer takes them:
``present`` only announces them; ``cash_taken`` follows when the EXIT sensor
clears. The LCDM-2000 has no shutter, so it cannot retract.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any, Literal, overload

from devices import lcdm_codec as codec
from devices.base import Action, DeviceContext, DeviceError, DeviceStatus, Fault, Severity
from devices.dispenser import CashDispenser, Cassette, DispenseResult
from devices.locator import Locator
from devices.serial_device import SerialDevice
from devices.serial_link import LineSettings, LinkFailure, ProtocolError, SerialLink, exchange, link_error
from devices.serial_trace import Framing

log = logging.getLogger(__name__)

E, C = Severity.ERROR, Severity.CRITICAL
JAM = ("jam", E, Action.RESET)
# error code -> (fault code, severity, action, message)
ERRORS: dict[int, tuple[str, Severity, Action, str]] = {
    0x32: ("pickup_error", E, Action.MAINTENANCE, "notes could not be picked from the cassette"),
    0x33: (*JAM, "notes jammed at the check sensors CHK1/CHK2"),
    0x34: ("overflow", E, Action.MAINTENANCE, "note overflow in the transport"),
    0x35: (*JAM, "notes jammed at the exit (EXIT/EJT sensors)"),
    0x36: (*JAM, "notes jammed at the diverter (DIV sensors)"),
    0x37: ("undefined_command", E, Action.SOFTWARE, "the dispenser did not know a command we sent"),
    0x38: ("cassette_empty", E, Action.REPLENISH, "the upper cassette ran out of notes (bill end)"),
    0x3A: ("count_error", E, Action.MAINTENANCE, "note counting error"),
    0x3B: ("note_request_error", E, Action.SOFTWARE, "the dispenser refused the note count we asked for"),
    0x3C: ("count_error", E, Action.MAINTENANCE, "note counting error"),
    0x3D: ("count_error", E, Action.MAINTENANCE, "note counting error"),
    0x3F: ("reject_tray_missing", E, Action.MAINTENANCE, "the reject tray is not in place"),
    0x40: ("cassette_empty", E, Action.REPLENISH, "the lower cassette ran out of notes (bill end)"),
    0x41: ("motor_stop", E, Action.MAINTENANCE, "the transport motor stopped"),
    0x42: (*JAM, "notes jammed at the diverter (DIV sensors)"),
    0x43: (*JAM, "notes took too long from the diverter to the ejector"),
    0x44: ("reject_tray_full", E, Action.MAINTENANCE, "the reject tray is full; empty it"),
    0x45: ("cassette_missing", E, Action.MAINTENANCE, "the upper cassette is not recognised"),
    0x46: ("cassette_missing", E, Action.MAINTENANCE, "the lower cassette is not recognised"),
    0x47: ("dispense_timeout", E, Action.RESET, "the dispense took too long"),
    0x48: (*JAM, "notes jammed at the ejector (EJT sensor)"),
    0x49: ("solenoid_error", C, Action.MAINTENANCE, "diverter solenoid error"),
    0x4A: ("solenoid_error", C, Action.MAINTENANCE, "diverter solenoid error"),
    0x4C: (*JAM, "notes jammed at the check sensors CHK3/CHK4"),
    0x4E: ("purge_error", E, Action.MAINTENANCE, "the purge failed"),
}
# Faults that a good status answer shows to be gone. cassette_empty stays until
# the cassettes are replenished; count_unknown belongs to the state machine.
CONDITION_FAULTS = {f[0] for f in ERRORS.values()} - {"cassette_empty"} | {"no_response", "bad_reply"}


class Lcdm2000Dispenser(SerialDevice, CashDispenser):
    model = codec.LCDM2000
    line = LineSettings(baud=9600, ack_timeout=0.5, reply_timeout=3.0, retries=3)
    has_shutter = False

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        loc = self.loc
        self.note_time = loc.number("note_time", float, 0.0, 10.0, 0.5)
        self.poll_interval = loc.number("poll", float, 0.01, 10.0, 0.25)
        self.slots = {p: loc.text(p) for p in self.model.positions if loc.has(p)}
        for position, cid in self.slots.items():
            if not cid:
                raise loc.error(f"option {position}= is empty (a configured cassette id)")
        if len(set(self.slots.values())) < len(self.slots):
            raise loc.error(f"options {' and '.join(self.slots)} name the same cassette")
        meanings = {error: fault[0] for error, fault in ERRORS.items()}
        framing = Framing(
            partial(codec.frame_size, model=self.model),
            partial(codec.describe_frame, model=self.model, meanings=meanings),
        )
        self.link = SerialLink(self.model.name, loc, self.line, framing=framing)
        self.lock = threading.Lock()
        self.at_gate = 0  # notes delivered through the exit, waiting in the throat
        self.sensors: frozenset[str] = frozenset()
        self.version = ""
        self.retracted = 0  # always 0: kept for the same reporting as other dispensers

    # cassettes ----------------------------------------------------------------
    def load_cassettes(self, cassettes: list[Cassette]) -> None:
        if len(cassettes) > len(self.model.positions):
            raise ValueError(
                f"{self.model.name} has {len(self.model.positions)} cassettes; the config lists {len(cassettes)}"
            )
        ids = [c.id for c in cassettes]
        for position, cid in self.slots.items():
            if cid not in ids:
                raise self.loc.error(f"option {position}={cid!r} names no configured cassette ({', '.join(ids)})")
        super().load_cassettes(cassettes)
        self.clear_fault("cassette_empty")

    def position_of(self, cassette_id: str) -> str:
        for position, cid in self.slots.items():
            if cid == cassette_id:
                return position
        free = [p for p in self.model.positions if p not in self.slots]
        taken = [c.id for c in self.cassettes if c.id not in self.slots.values()]
        return free[taken.index(cassette_id)]

    def _cassette_at(self, position: str) -> Cassette | None:
        for cas in self.cassettes:
            if self.position_of(cas.id) == position:
                return cas
        return None

    def _loaded_at(self, position: str) -> Cassette:
        """The cassette at ``position``, which a reply counted notes from."""
        cas = self._cassette_at(position)
        if cas is None:
            raise LookupError(f"{self.model.name}: no cassette is loaded at the {position} position")
        return cas

    # lifecycle ------------------------------------------------------------------
    def on_open(self) -> None:
        try:
            self.version = self._transact(codec.encode_command(codec.ROM_VERSION), codec.ROM_VERSION).version
        except DeviceError:
            pass

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            model=self.model.name,
            rom_version=self.version,
            sensors=sorted(self.sensors),
            cassettes=[{**c.as_dict(), "position": self.position_of(c.id)} for c in self.cassettes],
        )
        return info

    # the link -------------------------------------------------------------------
    def _exchange(self, frame: bytes, command: int, extra_time: float = 0.0) -> codec.Reply:
        """One command through the handshake; a dispense is never resent after silence."""
        size = codec.reply_length(command, self.model)

        def decode(raw: bytes) -> codec.Reply:
            reply = codec.decode_reply(raw, self.model)
            if reply.command != command:
                raise ProtocolError(f"reply to 0x{reply.command:02X}, expected 0x{command:02X}")
            return reply

        with self.lock:
            return exchange(
                self.link,
                frame,
                lambda timeout: self._read_frame(size, timeout),
                decode,
                self.link.settings.reply_timeout + extra_time,
                repeatable=not self.model.dispense_positions(command),
            )

    def _read_frame(self, size: int, timeout: float) -> bytes:
        """Skip to SOH (a repeated ACK may come first), then read the frame's length."""
        link = self.link
        for _ in range(64):
            first = link.read(1, timeout)
            if not first:
                return b""
            if first[0] == codec.SOH:
                return first + link.read(size - 1, self.link.settings.reply_timeout)
        return b"garbage"  # 64 bytes without SOH: let the decoder name the problem

    def _transact(self, frame: bytes, command: int, extra_time: float = 0.0) -> codec.Reply:
        """One command; link problems become faults (DeviceError)."""
        try:
            reply = self._exchange(frame, command, extra_time)
        except (LinkFailure, OSError) as exc:
            raise link_error(self, exc, f"{self.model.name} on {self.link.url}") from None
        self.clear_fault("no_response")
        self.clear_fault("bad_reply")
        return reply

    @overload
    def _error_fault(self, error: int, raise_it: Literal[True] = ...) -> Fault: ...

    @overload
    def _error_fault(self, error: int, raise_it: Literal[False]) -> str: ...

    def _error_fault(self, error: int, raise_it: bool = True) -> Fault | str:
        """The fault of a device error code, raised; with ``raise_it=False`` only its code."""
        code, severity, action, message = ERRORS.get(
            error, ("unknown_error", E, Action.MAINTENANCE, f"unknown error code 0x{error:02X}")
        )
        return self.raise_fault(code, f"{message} (0x{error:02X})", severity, action) if raise_it else code

    # status ---------------------------------------------------------------------
    def self_test(self) -> DeviceStatus:
        if not self.reopened():
            return self.status
        try:
            reply = self._transact(codec.encode_command(codec.STATUS), codec.STATUS)
        except DeviceError:
            return self.status
        self._apply_status(reply)
        return self.status

    def _apply_status(self, reply: codec.Reply) -> None:
        self.sensors = reply.sensors
        active = set()
        if not reply.ok:
            active.add(self._error_fault(reply.error).code)
        for position in self.model.positions:
            cas = self._cassette_at(position)
            if cas is not None:
                cas.near_end = f"{position}_near_end" in reply.sensors
                if f"{position}_present" not in reply.sensors:
                    active.add(
                        self.raise_fault(
                            "cassette_missing", f"the {position} cassette is not in place", E, Action.MAINTENANCE
                        ).code
                    )
        if "reject_tray_present" not in reply.sensors:
            active.add(
                self.raise_fault("reject_tray_missing", "the reject tray is not in place", E, Action.MAINTENANCE).code
            )
        for code in CONDITION_FAULTS - active:
            self.clear_fault(code)

    # dispensing -----------------------------------------------------------------
    def dispense(self, plan: dict[str, int]) -> DispenseResult:
        result = DispenseResult(requested=dict(plan))
        counts = {self.position_of(cid): n for cid, n in plan.items() if n}
        try:
            frame = codec.dispense_command(counts, self.model)
        except ProtocolError as exc:
            result.fault_code = self._error_fault(0x3B, raise_it=False)
            self.raise_fault(result.fault_code, str(exc), E, Action.SOFTWARE)
            return result
        command = frame[3]
        try:
            reply = self._exchange(frame, command, self.note_time * sum(counts.values()))
        except (LinkFailure, OSError) as exc:
            result.fault_code = getattr(exc, "code", "no_response")
            result.uncertain = not getattr(exc, "refused", False)  # notes may have moved unseen
            link_error(
                self,
                exc,
                f"{self.model.name}: dispense got no valid answer"
                + ("; count the cassettes" if result.uncertain else "; nothing was dispensed"),
            )
            return result
        for count in reply.counts:
            cas = self._loaded_at(count.position)
            result.picked[cas.id] = count.check
            result.rejected[cas.id] = count.check - count.exit
            cas.near_end = count.near_end
        self._apply(result)
        self.at_gate += sum(c.exit for c in reply.counts)
        if not reply.ok:
            result.fault_code = self._error_fault(reply.error).code
            if self.at_gate:  # what did come out waits in the throat all the same
                self._watch_exit()
        return result

    def test_dispense(self, cassette_id: str, notes: int) -> DispenseResult:
        """Pick ``notes`` into the reject tray (a field engineer's check)."""
        result = DispenseResult(requested={})
        frame = codec.dispense_command({self.position_of(cassette_id): notes}, self.model, test=True)
        reply = self._transact(frame, frame[3], self.note_time * notes)
        (count,) = reply.counts
        result.picked[cassette_id] = result.rejected[cassette_id] = count.check
        self._apply(result)
        if not reply.ok:
            result.fault_code = self._error_fault(reply.error).code
        return result

    def present(self) -> int:
        """The notes are already in the throat: announce them and watch the EXIT sensor."""
        notes = self.at_gate
        if notes:
            self.emit("cash_presented", notes=notes)
            self._watch_exit()
        return notes

    def _watch_exit(self) -> None:
        self.poll_later(self._poll_exit)

    def _poll_exit(self) -> None:
        try:
            reply = self._transact(codec.encode_command(codec.STATUS), codec.STATUS)
        except DeviceError:
            return self._watch_exit()
        self._apply_status(reply)
        if "exit" in reply.sensors:
            return self._watch_exit()
        notes, self.at_gate = self.at_gate, 0
        self.emit("cash_taken", notes=notes)

    def retract(self) -> int:
        """No shutter: the notes stay in the throat (and ``cash_taken`` still follows)."""
        return 0

    def reset(self) -> None:
        """Purge: notes left on the path go to the reject tray; then re-check."""
        try:
            reply = self._transact(codec.encode_command(codec.PURGE), codec.PURGE)
        except DeviceError:
            return
        if not reply.ok:
            self._error_fault(reply.error)
        self.self_test()
