"""Sankyo ICT3Q8 motorised card reader driver (backend ``ict3q8://PORT``).

Locator options: ``baud`` (38400), ``parity`` (E), ``rtscts`` (1),
``timeout`` (reply timeout, 3 s), ``ack_timeout`` (0.3), ``retries`` (3),
``poll`` (seconds between status polls while a card is awaited or waits at
the gate, 0.2), ``init`` (what power-up does with a card left inside:
``eject``, ``capture`` or ``keep``), ``trace=1`` (hex dump, track data hidden).

The card's position comes from every reply's status bytes and from polling
status while something is expected. Changes become the events the state
machine listens to: ``inserted``, ``at_gate``, ``taken``, ``captured``.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from devices import ict3q8_codec as codec
from devices.base import Action, DeviceContext, DeviceError, DeviceStatus, Severity
from devices.card_reader import LED_COLOURS, CardPosition, CardReader
from devices.carddata import CardData, CardDataError
from devices.locator import Locator
from devices.serial_device import SerialDevice
from devices.serial_link import LineSettings, LinkFailure, ProtocolError, SerialLink, exchange, link_error
from devices.serial_trace import Framing

W, E = Severity.WARNING, Severity.ERROR
# error code -> (fault code, severity, action, message)
ERRORS: dict[str, tuple[str, Severity, Action, str]] = {
    **{
        f"0{i}": ("command_error", E, Action.SOFTWARE, "the reader refused a command or parameter")
        for i in (0, 1, 3, 4)
    },
    "02": ("no_card", W, Action.NONE, "no card inside"),
    "10": ("jam", E, Action.MAINTENANCE, "card jammed in the transport"),
    "13": ("bad_card", W, Action.NONE, "card too long"),
    "14": ("bad_card", W, Action.NONE, "card too short"),
    "16": ("card_moved", W, Action.NONE, "the card moved during the operation"),
    "18": ("two_cards", E, Action.MAINTENANCE, "two cards in the transport"),
    **{f"2{i}": ("read_error", W, Action.NONE, "magnetic stripe unreadable") for i in range(5)},
    "30": ("power_loss", W, Action.RESET, "the reader lost power"),
    "40": ("card_pulled_out", W, Action.NONE, "the card was pulled out"),
    "43": ("ic_position", W, Action.RESET, "the card could not be positioned at the IC contacts"),
    "50": ("capture_bin_full", E, Action.MAINTENANCE, "capture counter overflow; empty the capture bin"),
    **{f"6{i}": ("icc_error", W, Action.NONE, "the chip did not answer") for i in range(10)},
    "B0": ("not_initialised", W, Action.RESET, "the reader is not initialised"),
}
# Warnings about one card or one command: gone once a command succeeds.
PASSING = {
    "no_card",
    "bad_card",
    "card_moved",
    "read_error",
    "power_loss",
    "card_pulled_out",
    "ic_position",
    "icc_error",
    "not_initialised",
    "command_error",
    "no_response",
    "bad_reply",
}
FRAMING = Framing(codec.frame_size, partial(codec.describe_frame, meanings={e: f[0] for e, f in ERRORS.items()}))
INIT_MODES = {"eject": 0x30, "capture": 0x31, "keep": 0x32}
LEDS = dict(zip(LED_COLOURS, (0x30, 0x31, 0x32, 0x33), strict=True))
_POSITIONS = {"none": CardPosition.NONE, "gate": CardPosition.GATE, "inside": CardPosition.INSIDE}


class Ict3q8CardReader(SerialDevice, CardReader):
    line = LineSettings(baud=38400, parity="E", rtscts=True, ack_timeout=0.3, reply_timeout=3.0, retries=3)

    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.poll_interval = self.loc.number("poll", float, 0.01, 10.0, 0.2)
        self.init_mode = INIT_MODES[self.loc.choice("init", tuple(INIT_MODES), "eject")]
        self.link = SerialLink("ICT3Q8", self.loc, self.line, codec.redact, FRAMING)
        self.lock = threading.RLock()
        self._position = CardPosition.NONE
        self.entry_enabled = False
        self.atr = b""

    @property
    def position(self) -> CardPosition:
        return self._position

    # lifecycle ------------------------------------------------------------------
    def on_open(self) -> None:
        try:
            self.initialise()
        except DeviceError:
            pass

    def initialise(self, mode: int | None = None) -> None:
        self.command(codec.INITIALISE, self.init_mode if mode is None else mode)
        self.clear_fault("jam")

    def self_test(self) -> DeviceStatus:
        if not self.reopened():
            return self.status
        try:
            if "jam" in self.faults:
                self.initialise()  # moves the transport: the jam is gone if it succeeds
            else:
                self.command(codec.STATUS, 0x30)
            self.clear_fault("two_cards")
        except DeviceError:
            pass
        return self.status

    def poll(self) -> DeviceStatus:
        """The status only: a jammed reader is not initialised (that moves the transport)."""
        if not self.reopened():
            return self.status
        try:
            self.command(codec.STATUS, 0x30)
        except DeviceError:
            pass
        return self.status

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "position": self._position.value, "entry_enabled": self.entry_enabled}

    # the link -------------------------------------------------------------------
    def _read_frame(self, timeout: float) -> bytes:
        link = self.link
        for _ in range(64):  # skip to F2 (a repeated ACK or line noise may come first)
            first = link.read(1, timeout)
            if not first:
                return b""
            if first[0] == codec.STX:
                break
        else:
            return b"garbage"
        head = first + link.read(2, link.settings.ack_timeout)
        size = codec.frame_length(head)  # ProtocolError for an absurd length: NAKed
        return head + link.read(size - 3, link.settings.reply_timeout)

    def command(self, cm: int, pm: int, data: bytes = b"", *, retry_init: bool = True) -> codec.Reply:
        """Send one command; a negative reply raises DeviceError with its fault.

        A reader that lost power or was never initialised is initialised, and
        the command is sent once more.
        """
        frame = codec.encode_command(cm, pm, data)

        def decode(raw: bytes) -> codec.Reply:
            reply = codec.decode_reply(raw)
            if (reply.cm, reply.pm) != (cm, pm):
                raise ProtocolError(f"reply to {reply.cm:02X} {reply.pm:02X}, expected {cm:02X} {pm:02X}")
            return reply

        with self.lock:
            try:
                reply = exchange(self.link, frame, self._read_frame, decode)
            except (LinkFailure, OSError) as exc:
                raise link_error(self, exc, f"ICT3Q8 on {self.link.url}") from None
        if reply.positive:
            for code in PASSING:
                self.clear_fault(code)
            self._moved_to(_POSITIONS[reply.position])
            return reply
        if reply.error in ("30", "B0") and retry_init and cm != codec.INITIALISE:
            self.command(codec.INITIALISE, 0x32, retry_init=False)
            return self.command(cm, pm, data, retry_init=False)
        code, severity, action, message = ERRORS.get(
            reply.error, ("unknown_error", E, Action.MAINTENANCE, "unknown error")
        )
        if code == "jam":
            self._position = CardPosition.JAMMED
        elif code == "card_pulled_out":
            self._moved_to(CardPosition.NONE)
        raise DeviceError(self.raise_fault(code, f"{message} (error {reply.error})", severity, action))

    # position and events ----------------------------------------------------------
    def _moved_to(self, new: CardPosition) -> None:
        old, self._position = self._position, new
        if old is new:
            return
        if new is CardPosition.INSIDE and old in (CardPosition.NONE, CardPosition.GATE):
            self.entry_enabled = False  # the reader closes its shutter behind the card
            self.emit("inserted")
        elif new is CardPosition.GATE:
            self.emit("at_gate")
        elif new is CardPosition.NONE and old is CardPosition.GATE:
            self.emit("taken")

    def _watch(self) -> None:
        self.poll_later(self._poll)

    def _poll(self) -> None:
        try:
            self.command(codec.STATUS, 0x30)
        except DeviceError:
            pass  # the fault is raised; keep watching in case it passes
        if self.entry_enabled or self._position is CardPosition.GATE:
            self._watch()

    # commands -------------------------------------------------------------------
    def enable_entry(self) -> None:
        self.command(codec.ENTRY, 0x30)
        self.entry_enabled = True
        self._watch()

    def disable_entry(self) -> None:
        self.entry_enabled = False
        self.command(codec.ENTRY, 0x31)

    def read(self, key: bytes) -> CardData:
        reply = self.command(codec.READ_TRACK, 0x32)
        try:
            return CardData.from_track2(reply.data.decode("ascii"), key)
        except (UnicodeDecodeError, CardDataError) as exc:
            reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise DeviceError(
                self.raise_fault("read_error", f"track 2 is not valid card data: {reason}", W, Action.NONE)
            ) from None

    def eject(self) -> None:
        self.command(codec.MOVE, 0x30)
        self._watch()

    def capture(self) -> None:
        self.command(codec.MOVE, 0x31)
        self.emit("captured")

    def set_led(self, colour: str) -> None:
        if colour not in LEDS:
            raise ValueError(f"LED colour {colour!r} is not one of {', '.join(LEDS)}")
        self.command(codec.LED, LEDS[colour])

    def activate_contacts(self) -> bytes:
        """Power the chip's contacts; returns the ATR (DeviceError ``icc_error`` without a chip)."""
        self.atr = self.command(codec.IC, 0x30).data
        return self.atr
