"""Puloon LCDM-2000 two-cassette cash dispenser, byte-exact, on a pty.

Implements the "Cash dispenser" section of ``docs/serial-devices.md`` with
its own framing code (nothing from ``devices/``). Choices that page leaves
open are marked **(ours)**.

Wire handling
-------------
- A host frame is ``EOT 50 STX CMD DATA ETX BCC``, framed by the command's
  known data length (0, 2 or 4 bytes). An unknown CMD is framed up to its ETX
  (at most 8 data bytes) and answered ACK then ``SOH 50 STX CMD 37 ETX BCC``
  (undefined command, 7 bytes) **(ours)**.
- Bytes until ``EOT 50 STX`` are skipped silently: garbage, a stray EOT, or a
  frame for another ID **(ours)**.
- A frame that began ``EOT 50 STX`` but is bad (wrong BCC, ETX not where the
  command's length puts it, or not complete within 0.5 s) is answered NAK.
  If its structure was broken, the bytes after its EOT are scanned again, so
  a good frame hidden inside it is still found.
- A good frame: ACK, act, send the response, then wait up to 0.5 s for the
  host. Host NAK: resend the response (at most 3 times). Any other byte is
  kept as the start of the next command.
- Unpowered: input is read and thrown away; nothing is sent.

State and invariant
-------------------
``counts``, ``exit_notes``, ``reject_tray``, ``on_path``, ``delivered``,
``cleared_by_hand`` and ``jam`` are physical and survive a power loss.
At all times: notes that left the cassettes == ``delivered + reject_tray +
on_path + cleared_by_hand`` (``cleared_by_hand`` counts the stuck notes that
``clear_jam()`` took out by hand; it is 0 until a jam has been cleared).

Dispensing and faults
---------------------
A dispense checks its counts first (two ASCII digits each, 1..60; else
``3B`` in the normal layout with zero counts), then what stops the device,
in this order: the jam, a missing cassette it needs (upper before lower),
a missing reject tray (``3F``), a full reject tray (``44``, fault or
``reject_tray >= reject_capacity``). Any of these answers at once and moves
nothing. Then cassettes are worked in order (upper, lower); the first error
stops the command, and the response carries the counts so far. Each note
that reaches the exit (or, for a test dispense, the reject tray) counts one
``work_unit()``: a power loss there stops the command with no response,
the note already counted.

Mechanism time: ``note_ms`` (default 0) milliseconds per note picked (every
note counted at the check sensor) pass after the command has acted and
before its response is sent, on top of line timing. The physical state
shows the outcome at once; only the reply waits **(ours)**.

- ``jam_chk`` (33, CHK1+CHK2), ``jam_chk34`` (4C, CHK3+CHK4), ``jam_div``
  (36, DIV1+DIV2), ``jam_exit`` (35, EJT+EXIT), ``jam_ejt`` (48, EJT):
  while armed, the next dispense moves n//2 notes from the cassette it is
  working on, then one more note leaves that cassette and sticks (check =
  moved + 1, ``on_path += 1``). The transport is then jammed (``jam`` names
  the fault; the fault stays in ``faults``): dispense and purge answer the
  jam's code and move nothing; status shows the code in [5] and the jam's
  sensor bits. ``clear_jam()``, or ``remove()`` of that fault, ends it; the
  stuck notes are taken out by hand. With several jam faults armed, the
  first in ``FAULTS`` order fires.
- ``pickup_error``: one shot; the next dispense moves n//2 notes from the
  cassette it is working on, then stops with 32. The fault then disarms
  itself **(ours)**.
- ``near_end_upper``/``near_end_lower``: the near-end bit is set and the
  cassette status byte of dispense responses is 31. The same happens when a
  cassette holds fewer than 30 notes. A missing cassette shows neither bit
  **(ours)**.
- ``empty_upper``/``empty_lower``: the cassette holds nothing (its notes stay
  in ``counts``); a dispense from it answers bill end (38 upper, 40 lower)
  and moves nothing from it. Running out mid-dispense delivers what there
  is, then answers bill end.
- ``cassette_removed_upper``/``_lower``: presence bit cleared; a dispense that
  needs it answers 45/46; status [5] shows the code.
- ``reject_tray_full``: dispenses answer 44; a purge with notes to move
  answers 44. Without the fault, a note about to go into a tray holding
  ``reject_capacity`` notes stops the command with 44 instead.
- ``reject_tray_removed``: tray bit cleared; dispense and purge answer 3F.
- Common faults (base class): ``nak_storm`` NAKs every frame, the command is
  not run; ``garbled`` and ``silent`` change only what is sent: the command
  still runs, so a dispense sent to a ``silent`` device moves notes.

Purge moves notes left loose on the path (not a jam) into the reject tray
and answers 30; notes at the exit stay there (the LCDM-2000 cannot retract).
A test dispense (76/77) sends every note to the reject tray (exit 0,
rejects = check).
"""
from __future__ import annotations

import select
import time
from dataclasses import dataclass

from hw_mocks.serial_emulator import PowerLost, SerialEmulator

SOH, STX, ETX, EOT, ACK, NAK = 0x01, 0x02, 0x03, 0x04, 0x06, 0x15
DEVICE_ID = 0x50

PURGE, UPPER, STATUS, ROM, LOWER, BOTH, TEST_UPPER, TEST_LOWER = (
    0x44, 0x45, 0x46, 0x47, 0x55, 0x56, 0x76, 0x77)
DATA_LENGTH = {PURGE: 0, STATUS: 0, ROM: 0, UPPER: 2, LOWER: 2, BOTH: 4,
               TEST_UPPER: 2, TEST_LOWER: 2}
# dispense command -> (cassettes in order, notes go to the reject tray)
DISPENSES = {
    UPPER: (("upper",), False),
    LOWER: (("lower",), False),
    BOTH: (("upper", "lower"), False),
    TEST_UPPER: (("upper",), True),
    TEST_LOWER: (("lower",), True),
}

GOOD = 0x30
NEAR_END = 0x31                 # cassette status byte
PICKUP_ERROR = 0x32
UNDEFINED_COMMAND = 0x37
NOTE_REQUEST_ERROR = 0x3B
TRAY_MISSING = 0x3F
OVER_REJECT = 0x44

# sensor byte [6]
CHK1, CHK2, DIV1, DIV2, EJT, EXIT, UPPER_NEAR_END = (1 << i for i in range(7))
# sensor byte [7]
SOLENOID, UPPER_PRESENT, LOWER_PRESENT, CHK3, CHK4, LOWER_NEAR_END, TRAY_PRESENT = (
    1 << i for i in range(7))

MAX_NOTES = 60                  # per cassette per command
NEAR_END_BELOW = 30             # fewer notes than this: near end
MAX_UNKNOWN_DATA = 8            # data bytes read while looking for an unknown frame's ETX
POLL = 0.05                     # wait for the first byte of a frame (keeps stop() quick)
FRAME_TIMEOUT = 0.5             # the rest of a frame must arrive within this
HOST_ACK_TIMEOUT = 0.5
MAX_RESENDS = 3


@dataclass(frozen=True)
class Jam:
    code: int
    sensor6: int = 0
    sensor7: int = 0


JAMS = {
    "jam_chk": Jam(0x33, sensor6=CHK1 | CHK2),
    "jam_chk34": Jam(0x4C, sensor7=CHK3 | CHK4),
    "jam_div": Jam(0x36, sensor6=DIV1 | DIV2),
    "jam_exit": Jam(0x35, sensor6=EJT | EXIT),
    "jam_ejt": Jam(0x48, sensor6=EJT),
}


@dataclass(frozen=True)
class Cassette:
    bill_end: int
    missing: int


CASSETTES = {"upper": Cassette(0x38, 0x45), "lower": Cassette(0x40, 0x46)}


@dataclass
class Tally:
    """What one cassette did in one dispense."""
    check: int = 0
    exit: int = 0
    rejects: int = 0


_BAD = object()                 # _read_frame: a frame to answer with NAK


def bcc(data: bytes) -> int:
    """XOR of every byte."""
    out = 0
    for b in data:
        out ^= b
    return out


def response(cmd: int, body: bytes) -> bytes:
    """``SOH ID STX CMD body ETX BCC``."""
    frame = bytes([SOH, DEVICE_ID, STX, cmd]) + body + bytes([ETX])
    return frame + bytes([bcc(frame)])


def digits(n: int) -> bytes:
    """A count as two ASCII digits."""
    return b"%02d" % n


def parse_counts(data: bytes) -> list[int] | None:
    """Two-digit note counts, each 1..60; None when any is bad."""
    counts = []
    for i in range(0, len(data), 2):
        pair = data[i:i + 2]
        if len(pair) != 2 or not pair.isdigit() or not 1 <= int(pair) <= MAX_NOTES:
            return None
        counts.append(int(pair))
    return counts


class Lcdm2000Emulator(SerialEmulator):
    """A Puloon LCDM-2000 on a pty; see the module docstring for its behaviour."""

    name = "lcdm2000"
    FAULTS = ("pickup_error", "jam_chk", "jam_chk34", "jam_div", "jam_exit", "jam_ejt",
              "near_end_upper", "near_end_lower", "empty_upper", "empty_lower",
              "cassette_removed_upper", "cassette_removed_lower",
              "reject_tray_full", "reject_tray_removed")

    def __init__(self, upper: int = 500, lower: int = 1000, baud: int | None = None,
                 reject_capacity: int = 50, rom_version: str = "2.10", note_ms: float = 0):
        if len(rom_version) != 4 or not rom_version.isascii():
            raise ValueError(f"rom_version must be 4 ASCII characters, not {rom_version!r}")
        if min(upper, lower, reject_capacity) < 0:
            raise ValueError("counts and reject_capacity cannot be negative")
        if not 0 <= note_ms <= 10_000:
            raise ValueError(f"note_ms must be 0..10000, not {note_ms!r}")
        super().__init__(baud)
        self.rom_version = rom_version
        self.reject_capacity = reject_capacity
        self.counts = {"upper": upper, "lower": lower}
        self.exit_notes = 0
        self.reject_tray = 0
        self.on_path = 0
        self.delivered = 0
        self.cleared_by_hand = 0
        self.jam: str | None = None          # the jam fault that has blocked the transport
        self._idle_unpowered = False         # the serving thread is in its unpowered branch
        self.note_ms = note_ms               # mechanism time per note picked
        self._picked = 0                     # notes picked by the command being served

    # control (any thread) ---------------------------------------------------------
    def take_notes(self) -> int:
        """The customer takes the notes at the exit; returns how many."""
        with self.lock:
            taken, self.exit_notes = self.exit_notes, 0
            return taken

    def load(self, upper: int | None = None, lower: int | None = None) -> None:
        """Replenish: set the number of notes in the cassettes given."""
        with self.lock:
            for name, n in (("upper", upper), ("lower", lower)):
                if n is not None:
                    if n < 0:
                        raise ValueError(f"cannot load {n} notes")
                    self.counts[name] = n

    def clear_jam(self) -> int:
        """An engineer takes the stuck notes out by hand and disarms every jam fault."""
        with self.lock:
            self.faults -= set(JAMS)
            return self._clear_path()

    def remove(self, name: str) -> None:
        """Disarm a fault; removing the jam that happened also clears it by hand."""
        with self.lock:
            super().remove(name)
            if name == self.jam:
                self._clear_path()

    def snapshot(self) -> dict:
        with self.lock:
            return {"counts": dict(self.counts), "exit_notes": self.exit_notes,
                    "reject_tray": self.reject_tray, "on_path": self.on_path,
                    "delivered": self.delivered, "faults": sorted(self.faults),
                    "powered": self.powered, "jam": self.jam,
                    "cleared_by_hand": self.cleared_by_hand}

    def on_power_on(self) -> None:
        """Only the receive buffer is volatile: what arrived unpowered is lost.
        Notes, counts and a jam are physical and stay as they were."""
        if self._idle_unpowered:             # the serving thread is not reading now
            self.drain_input()

    def _clear_path(self) -> int:
        stuck, self.on_path = self.on_path, 0
        self.cleared_by_hand += stuck
        self.jam = None
        return stuck

    # the serving thread -----------------------------------------------------------
    def serve_once(self) -> None:
        with self.lock:
            powered = self.powered
            self._idle_unpowered = not powered
        if not powered:
            select.select([self.master], [], [], POLL)
            with self.lock:
                if not self.powered:
                    self.drain_input()
            return
        frame = self._read_frame()
        if frame is None:
            return
        with self.lock:
            if not self.powered:             # the power went while the frame came in
                return
            self.received += 1
            refused = frame is _BAD or "nak_storm" in self.faults
        if refused:
            self.write(bytes([NAK]))
            return
        self.write(bytes([ACK]))
        try:
            with self.lock:
                if not self.powered:
                    return
                self._picked = 0
                reply = self._execute(*frame)
                picked = self._picked
        except PowerLost:
            return                           # stopped mid-command: no response
        if picked and self.note_ms:          # the mechanism at work; stop() cuts it short
            self._stop.wait(picked * self.note_ms / 1000)
        self._send(reply)

    def _read_frame(self):
        """The next host frame: (cmd, data) when good, _BAD when it must be
        NAKed, None when nothing or only garbage arrived."""
        if self.read(1, POLL) != bytes([EOT]):
            return None                      # idle, or one garbage byte skipped
        deadline = time.monotonic() + FRAME_TIMEOUT
        frame = bytearray([EOT]) + self._read_by(2, deadline)
        if frame[1:] != bytes([DEVICE_ID, STX]):
            self.unread(bytes(frame[1:]))    # not a frame for us: scan on after this EOT
            return None
        frame += self._read_by(1, deadline)
        size = DATA_LENGTH.get(frame[3]) if len(frame) == 4 else None
        if size is not None:
            frame += self._read_by(size + 1, deadline)
            whole = len(frame) == 5 + size and frame[-1] == ETX
        else:                                # unknown command (or truncated): look for ETX
            while len(frame) in range(4, 5 + MAX_UNKNOWN_DATA):
                more = self._read_by(1, deadline)
                if not more:
                    break
                frame += more
                if more[0] == ETX:
                    break
            whole = len(frame) >= 5 and frame[-1] == ETX
        check = self._read_by(1, deadline) if whole else b""
        if not check:
            self.unread(bytes(frame[1:]))    # broken or truncated: rescan for the next EOT
            return _BAD
        if check[0] != bcc(frame):
            return _BAD
        return frame[3], bytes(frame[4:-1])

    def _read_by(self, n: int, deadline: float) -> bytes:
        return self.read(n, max(0.0, deadline - time.monotonic()))

    def _send(self, reply: bytes) -> None:
        """Send a response; resend it on host NAK, at most MAX_RESENDS times."""
        self.write(reply)
        resends = 0
        while True:
            answer = self.read(1, HOST_ACK_TIMEOUT)
            if answer == bytes([NAK]) and resends < MAX_RESENDS:
                resends += 1
                self.write(reply)
                continue
            if answer not in (b"", bytes([ACK]), bytes([NAK])):
                self.unread(answer)          # the host moved on to its next command
            return

    # commands (called with the lock held) -----------------------------------------
    def _execute(self, cmd: int, data: bytes) -> bytes:
        if cmd == STATUS:
            sensor6, sensor7 = self._sensors()
            return response(STATUS, bytes([0x30, self._stop_code(CASSETTES), sensor6, sensor7]))
        if cmd == ROM:
            return response(ROM, self.rom_version.encode("ascii"))
        if cmd == PURGE:
            return response(PURGE, bytes([self._purge()]))
        if cmd in DISPENSES:
            return self._dispense(cmd, data)
        return response(cmd, bytes([UNDEFINED_COMMAND]))

    def _dispense(self, cmd: int, data: bytes) -> bytes:
        names, to_reject = DISPENSES[cmd]
        tallies = {name: Tally() for name in names}
        wanted = parse_counts(data)
        if wanted is None or len(wanted) != len(names):
            code = NOTE_REQUEST_ERROR
        else:
            code = self._stop_code(names)
            for name, n in zip(names, wanted):
                if code != GOOD:
                    break
                code = self._pick(name, n, tallies[name], to_reject)
        status = bytes(self._cassette_status(name) for name in names)
        if len(names) == 1:
            t = tallies[names[0]]
            return response(cmd, digits(t.check) + digits(t.exit) + bytes([code]) + status
                            + digits(t.rejects))
        up, low = tallies["upper"], tallies["lower"]
        return response(cmd, digits(up.check) + digits(up.exit) + digits(low.check)
                        + digits(low.exit) + bytes([code]) + status
                        + digits(up.rejects) + digits(low.rejects))

    def _pick(self, name: str, n: int, tally: Tally, to_reject: bool) -> int:
        """Move up to ``n`` notes out of one cassette; the error code."""
        jam = next((fault for fault in JAMS if fault in self.faults), None)
        fail_after = n // 2 if jam or "pickup_error" in self.faults else None
        for _ in range(n):
            if self._available(name) == 0:
                return CASSETTES[name].bill_end
            if tally.check == fail_after:
                if jam is None:
                    self.faults.discard("pickup_error")
                    return PICKUP_ERROR
                self.counts[name] -= 1       # one more note leaves and sticks
                tally.check += 1
                self._picked += 1
                self.on_path += 1
                self.jam = jam
                return JAMS[jam].code
            if to_reject and self.reject_tray >= self.reject_capacity:
                return OVER_REJECT
            self.counts[name] -= 1
            tally.check += 1
            self._picked += 1
            if to_reject:
                self.reject_tray += 1
                tally.rejects += 1
            else:
                self.exit_notes += 1
                self.delivered += 1
                tally.exit += 1
            self.work_unit()
        return GOOD

    def _purge(self) -> int:
        if self.jam:
            return JAMS[self.jam].code
        if "reject_tray_removed" in self.faults:
            return TRAY_MISSING
        if self.on_path:
            if ("reject_tray_full" in self.faults
                    or self.reject_tray + self.on_path > self.reject_capacity):
                return OVER_REJECT
            self.reject_tray += self.on_path
            self.on_path = 0
        return GOOD

    def _stop_code(self, names) -> int:
        """The code of what stops a command needing these cassettes, or GOOD."""
        if self.jam:
            return JAMS[self.jam].code
        for name in names:
            if not self._present(name):
                return CASSETTES[name].missing
        if "reject_tray_removed" in self.faults:
            return TRAY_MISSING
        if "reject_tray_full" in self.faults or self.reject_tray >= self.reject_capacity:
            return OVER_REJECT
        return GOOD

    def _present(self, name: str) -> bool:
        return f"cassette_removed_{name}" not in self.faults

    def _available(self, name: str) -> int:
        return 0 if f"empty_{name}" in self.faults else self.counts[name]

    def _near_end(self, name: str) -> bool:
        return self._present(name) and (f"near_end_{name}" in self.faults
                                         or self._available(name) < NEAR_END_BELOW)

    def _cassette_status(self, name: str) -> int:
        return NEAR_END if self._near_end(name) else GOOD

    def _sensors(self) -> tuple[int, int]:
        sensor6 = sensor7 = 0
        if self.exit_notes:
            sensor6 |= EXIT
        if self.jam:
            sensor6 |= JAMS[self.jam].sensor6
            sensor7 |= JAMS[self.jam].sensor7
        if self._near_end("upper"):
            sensor6 |= UPPER_NEAR_END
        if self._near_end("lower"):
            sensor7 |= LOWER_NEAR_END
        if self._present("upper"):
            sensor7 |= UPPER_PRESENT
        if self._present("lower"):
            sensor7 |= LOWER_PRESENT
        if "reject_tray_removed" not in self.faults:
            sensor7 |= TRAY_PRESENT
        return sensor6, sensor7
