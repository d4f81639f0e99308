"""A Sankyo ICT3Q8 motorised card reader, byte-exact on a pseudo-terminal.

Wire protocol (``docs/serial-devices.md``, "Motorised card reader"):

- command ``F2 LEN_H LEN_L 'C' CM PM [data] CRC_H CRC_L``;
- reply ``F2 LEN 'P' CM PM st1 st0 [data] CRC`` or ``F2 LEN 'N' CM PM e1 e0 CRC``;
- LEN counts 'C'/'P'/'N' through the data; CRC-16/XMODEM over F2..data,
  big-endian; ``st1 st0`` is the card position ("00" none, "01" gate,
  "02" inside);
- handshake: the device ACKs (06) a good command or NAKs (15) a bad CRC,
  then sends the reply; the host ACKs it or NAKs to have it resent (at most
  3 resends; the device waits 0.5 s for the host's answer).

Bad input never stops the serving thread: bytes other than F2 are skipped;
a frame whose LEN is below 3 or above 512, or that does not arrive in full
within 0.3 s, is garbage too (its bytes after the F2 are searched for the
next F2, so a command that follows is still found). A whole frame with a
bad CRC, or whose type byte is not 'C', is NAKed. An unknown CM/PM with a
good CRC is ACKed and answered N "00"; extra data on a command is ignored.

Behaviour:

- Starts uninitialised (unless ``initialised=True``): every command but
  initialise and status answers N "B0". Unknown commands answer "00" first.
- Initialise PM 30 / 31 / 32: a card inside goes to the gate / is captured /
  stays (a card at the gate stays in every case). Initialise also disables
  card entry.
- Entry enable/disable sets ``entry_enabled``; :meth:`insert_card` only
  works with entry enabled and no card in; the card goes inside and entry
  is disabled again.
- Read track n (36 3n): P with the track's ASCII characters; no data on the
  track answers "20"; no card inside "02".
- IC activation (49 30): P with the ATR; no chip "60"; no card inside "02".
- Eject moves a card inside to the gate; capture moves a card inside or at
  the gate into ``captured``; with nothing to move both answer P.
- LED 35 3x sets ``led`` ("off", "green", "red", "orange").
- Faults (``inject``): ``jam`` answers "10" to every command that would move
  a card (eject or capture of a card, initialise 30/31 with a card inside),
  and the card stays; ``two_cards`` answers "18" to the next read or eject of
  a card inside; ``read_error`` answers "21" to every read of a card inside;
  ``pulled_out`` answers "40" to the next read or eject of a card inside and
  the card is gone (``card`` None, position "none"). ``two_cards`` and
  ``pulled_out`` remove themselves when they fire. A failed command changes
  nothing else. ``nak_storm`` NAKs every command frame (nothing is done);
  ``garbled`` and ``silent`` act on the bytes sent (the base ``write``), the
  commands still take effect.
- Power: each command that moves a card does one :meth:`work_unit` just
  before the move; a power loss there leaves the card where it was and the
  command unanswered (the ACK was already sent). While unpowered every byte
  read is discarded. After :meth:`power_on` the reader is uninitialised,
  entry is disabled, the LED is off, and the next command of any kind is
  answered N "30" (and not carried out) once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hw_mocks.serial_emulator import PowerLost, SerialEmulator

STX = 0xF2
ACK = 0x06
NAK = 0x15
COMMAND, POSITIVE, NEGATIVE = 0x43, 0x50, 0x4E  # 'C', 'P', 'N'
MIN_LEN, MAX_LEN = 3, 512  # LEN of a command: 'C' CM PM at least

POLL = 0.05  # wait for a first byte (keeps stop() responsive)
FRAME_TIMEOUT = 0.3  # wait for the rest of a started frame
HOST_ACK_TIMEOUT = 0.5  # wait for the host's ACK/NAK of a reply
MAX_RESENDS = 3

POSITION_CODES = {"none": b"00", "gate": b"01", "inside": b"02"}
LED_COLOURS = ("off", "green", "red", "orange")


def crc16_xmodem(data: bytes) -> int:
    """CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def build_frame(kind: int, cm: int, pm: int, payload: bytes = b"") -> bytes:
    """``F2 LEN kind CM PM payload CRC``."""
    body = bytes((kind, cm, pm)) + payload
    head = bytes((STX,)) + len(body).to_bytes(2, "big") + body
    return head + crc16_xmodem(head).to_bytes(2, "big")


@dataclass
class Card:
    """A card the simulated customer holds or the reader holds."""

    tracks: dict[int, str]  # track number -> characters (no sentinels); a missing track has no data
    atr: bytes | None = None  # None: no chip
    tag: Any = None  # opaque, for the simulations that own the card


class Refused(Exception):
    """A command is answered N with this two-character error code."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class Ict3q8Emulator(SerialEmulator):
    """The reader: its state, the customer's actions, and the serial protocol."""

    name = "ict3q8"
    bits_per_byte = 11  # 8E1
    FAULTS = ("jam", "two_cards", "read_error", "pulled_out")

    # (CM, PM) -> (handler name, usable before initialise)
    COMMANDS = {
        (0x30, 0x30): ("_initialise", True),
        (0x30, 0x31): ("_initialise", True),
        (0x30, 0x32): ("_initialise", True),
        (0x31, 0x30): ("_status", True),
        (0x33, 0x30): ("_eject", False),
        (0x33, 0x31): ("_capture", False),
        **{(0x35, 0x30 + i): ("_set_led", False) for i in range(len(LED_COLOURS))},
        **{(0x36, 0x30 + n): ("_read_track", False) for n in (1, 2, 3)},
        (0x3A, 0x30): ("_set_entry", False),
        (0x3A, 0x31): ("_set_entry", False),
        (0x49, 0x30): ("_activate_ic", False),
    }

    def __init__(self, baud: int | None = None, initialised: bool = False):
        super().__init__(baud)
        self.position = "none"  # "none" | "gate" | "inside"; "none" exactly when card is None
        self.card: Card | None = None
        self.captured: list[Card] = []
        self.entry_enabled = False
        self.initialised = initialised
        self.led = "off"
        self._report_power_loss = False

    # the customer and the test code ---------------------------------------------
    def insert_card(self, tracks: dict[int, str], atr: bytes | None = None, tag=None) -> bool:
        """A customer pushes a card in; it goes inside only when the reader is
        powered, entry is enabled and no card is in. Returns whether it went in."""
        for number, chars in tracks.items():
            if number not in (1, 2, 3) or not chars.isascii():
                raise ValueError(f"bad track {number}: {chars!r}")
        with self.lock:
            if not (self.powered and self.entry_enabled and self.card is None):
                return False
            self.card = Card(dict(tracks), atr, tag)
            self.position = "inside"
            self.entry_enabled = False
            return True

    def take_card(self) -> Card | None:
        """The customer takes the card from the gate (None when none is there)."""
        with self.lock:
            if self.position != "gate":
                return None
            card, self.card, self.position = self.card, None, "none"
            return card

    def snapshot(self) -> dict:
        """The reader's state as plain data."""
        with self.lock:
            card = self.card
            return {
                "name": self.name,
                "powered": self.powered,
                "initialised": self.initialised,
                "position": self.position,
                "entry_enabled": self.entry_enabled,
                "led": self.led,
                "card": None
                if card is None
                else {
                    "tracks": dict(card.tracks),
                    "atr": None if card.atr is None else card.atr.hex(),
                },
                "captured": len(self.captured),
                "faults": sorted(self.faults),
                "received": self.received,
            }

    def on_power_on(self) -> None:
        """Volatile state is lost; the next reply reports the power loss."""
        self.initialised = False
        self.entry_enabled = False
        self.led = "off"
        self._report_power_loss = True

    # the wire ---------------------------------------------------------------------
    def serve_once(self) -> None:
        """Read one command frame (or skip garbage, or time out) and answer it."""
        if not self.powered:
            self._lose_input()
            return
        frame = self._read_frame()
        if frame is None:
            return
        with self.lock:
            self.received += 1
            refuse = "nak_storm" in self.faults or not self._frame_ok(frame)
        if refuse:
            self.write(bytes((NAK,)))
            return
        self.write(bytes((ACK,)))
        try:
            reply = self._execute(frame[4], frame[5], frame[6:-2])
        except PowerLost:
            return
        self._send_reply(reply)

    def _lose_input(self) -> None:
        """Unpowered: what the host sends is lost, but not what it sends once
        power is back (the check and the discard hold the lock power_on takes)."""
        first = self.read(1, POLL)
        with self.lock:
            if not self.powered:
                self.drain_input()
                return
        self.unread(first)

    def _read_frame(self) -> bytes | None:
        """One whole frame ``F2 .. CRC`` (its CRC unchecked), or None when
        there was nothing, a skipped garbage byte, or a bad or short frame."""
        first = self.read(1, POLL)
        if first != bytes((STX,)):
            return None
        head = self.read(2, FRAME_TIMEOUT)
        if len(head) < 2:
            self.unread(head)
            return None
        length = int.from_bytes(head, "big")
        if not MIN_LEN <= length <= MAX_LEN:
            self.unread(head)
            return None
        rest = self.read(length + 2, FRAME_TIMEOUT)
        if len(rest) < length + 2:
            self.unread(head + rest)  # resync on a later F2 in these bytes
            return None
        return first + head + rest

    @staticmethod
    def _frame_ok(frame: bytes) -> bool:
        return frame[3] == COMMAND and crc16_xmodem(frame[:-2]) == int.from_bytes(frame[-2:], "big")

    def _send_reply(self, reply: bytes) -> None:
        """Send a reply; resend it on the host's NAK, at most MAX_RESENDS times."""
        for attempt in range(MAX_RESENDS + 1):
            self.write(reply)
            answer = self.read(1, HOST_ACK_TIMEOUT)
            if answer == bytes((NAK,)) and attempt < MAX_RESENDS:
                continue
            if answer not in (b"", bytes((ACK,)), bytes((NAK,))):
                self.unread(answer)  # the host moved on to its next command
            return

    # commands ---------------------------------------------------------------------
    def _execute(self, cm: int, pm: int, data: bytes) -> bytes:
        """Carry out one command; return the reply frame. PowerLost passes through."""
        with self.lock:
            if not self.powered:  # the power went while the frame came in
                raise PowerLost()
            try:
                if self._report_power_loss:
                    self._report_power_loss = False
                    raise Refused("30")
                if (cm, pm) not in self.COMMANDS:
                    raise Refused("00")
                handler, before_init = self.COMMANDS[(cm, pm)]
                if not (self.initialised or before_init):
                    raise Refused("B0")
                payload = getattr(self, handler)(pm)
            except Refused as refused:
                return build_frame(NEGATIVE, cm, pm, refused.code.encode("ascii"))
            return build_frame(POSITIVE, cm, pm, POSITION_CODES[self.position] + payload)

    def _initialise(self, pm: int) -> bytes:
        if self.position == "inside" and pm in (0x30, 0x31):
            self._move_card("gate" if pm == 0x30 else "bin")
        self.initialised = True
        self.entry_enabled = False
        return b""

    def _status(self, pm: int) -> bytes:
        return b""

    def _eject(self, pm: int) -> bytes:
        if self.position == "inside":
            self._check_jam()
            self._check_card_trouble()
            self._move_card("gate")
        return b""

    def _capture(self, pm: int) -> bytes:
        if self.card is not None:
            self._move_card("bin")
        return b""

    def _set_led(self, pm: int) -> bytes:
        self.led = LED_COLOURS[pm - 0x30]
        return b""

    def _set_entry(self, pm: int) -> bytes:
        self.entry_enabled = pm == 0x30
        return b""

    def _read_track(self, pm: int) -> bytes:
        card = self._card_inside()
        self._check_card_trouble()
        if "read_error" in self.faults:
            raise Refused("21")
        chars = card.tracks.get(pm - 0x30)
        if not chars:
            raise Refused("20")
        return chars.encode("ascii")

    def _activate_ic(self, pm: int) -> bytes:
        card = self._card_inside()
        if card.atr is None:
            raise Refused("60")
        return bytes(card.atr)

    # helpers (called with the lock held) -------------------------------------------
    def _card_inside(self) -> Card:
        if self.position != "inside" or self.card is None:
            raise Refused("02")
        return self.card

    def _check_jam(self) -> None:
        if "jam" in self.faults:
            raise Refused("10")

    def _check_card_trouble(self) -> None:
        """The one-shot faults of a read or an eject."""
        if "pulled_out" in self.faults:
            self.faults.discard("pulled_out")
            self.card, self.position = None, "none"
            raise Refused("40")
        if "two_cards" in self.faults:
            self.faults.discard("two_cards")
            raise Refused("18")

    def _move_card(self, where: str) -> None:
        """Move the card to the gate or the capture bin: jam and power loss apply."""
        self._check_jam()
        self.work_unit()
        if where == "gate":
            self.position = "gate"
        else:
            assert self.card is not None  # only a card the reader holds is moved
            self.captured.append(self.card)
            self.card, self.position = None, "none"
