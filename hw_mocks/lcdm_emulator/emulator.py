"""The emulated LCDM-2000 on a pty: wire handling on the serving thread and the mechanism
(see the package docstring for its behaviour)."""

from __future__ import annotations

import select
import time

from hw_mocks.lcdm_emulator.protocol import (
    ACK,
    CASSETTES,
    DATA_LENGTH,
    DEVICE_ID,
    DISPENSES,
    EOT,
    ETX,
    EXIT,
    GOOD,
    JAMS,
    LOWER_NEAR_END,
    LOWER_PRESENT,
    MAX_UNKNOWN_DATA,
    NAK,
    NEAR_END,
    NEAR_END_BELOW,
    NOTE_REQUEST_ERROR,
    OVER_REJECT,
    PICKUP_ERROR,
    PURGE,
    ROM,
    STATUS,
    STX,
    TRAY_MISSING,
    TRAY_PRESENT,
    UNDEFINED_COMMAND,
    UPPER_NEAR_END,
    UPPER_PRESENT,
    Tally,
    bcc,
    digits,
    parse_counts,
    response,
)
from hw_mocks.serial_emulator import PowerLost, SerialEmulator

POLL = 0.05  # wait for the first byte of a frame (keeps stop() quick)
FRAME_TIMEOUT = 0.5  # the rest of a frame must arrive within this
HOST_ACK_TIMEOUT = 0.5
MAX_RESENDS = 3

_BAD = object()  # _read_frame: a frame to answer with NAK


class Lcdm2000Emulator(SerialEmulator):
    """A Puloon LCDM-2000 on a pty; see the package docstring for its behaviour."""

    name = "lcdm2000"
    FAULTS = (
        "pickup_error",
        "jam_chk",
        "jam_chk34",
        "jam_div",
        "jam_exit",
        "jam_ejt",
        "near_end_upper",
        "near_end_lower",
        "empty_upper",
        "empty_lower",
        "cassette_removed_upper",
        "cassette_removed_lower",
        "reject_tray_full",
        "reject_tray_removed",
    )

    def __init__(
        self,
        upper: int = 500,
        lower: int = 1000,
        baud: int | None = None,
        reject_capacity: int = 50,
        rom_version: str = "2.10",
        note_ms: float = 0,
    ):
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
        self.jam: str | None = None  # the jam fault that has blocked the transport
        self._idle_unpowered = False  # the serving thread is in its unpowered branch
        self.note_ms = note_ms  # mechanism time per note picked
        self._picked = 0  # notes picked by the command being served

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
            return {
                "counts": dict(self.counts),
                "exit_notes": self.exit_notes,
                "reject_tray": self.reject_tray,
                "on_path": self.on_path,
                "delivered": self.delivered,
                "faults": sorted(self.faults),
                "powered": self.powered,
                "jam": self.jam,
                "cleared_by_hand": self.cleared_by_hand,
            }

    def on_power_on(self) -> None:
        """Only the receive buffer is volatile: what arrived unpowered is lost.
        Notes, counts and a jam are physical and stay as they were."""
        if self._idle_unpowered:  # the serving thread is not reading now
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
            if not self.powered:  # the power went while the frame came in
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
            return  # stopped mid-command: no response
        if picked and self.note_ms:  # the mechanism at work; stop() cuts it short
            self._stop.wait(picked * self.note_ms / 1000)
        self._send(reply)

    def _read_frame(self):
        """The next host frame: (cmd, data) when good, _BAD when it must be
        NAKed, None when nothing or only garbage arrived."""
        if self.read(1, POLL) != bytes([EOT]):
            return None  # idle, or one garbage byte skipped
        deadline = time.monotonic() + FRAME_TIMEOUT
        frame = bytearray([EOT]) + self._read_by(2, deadline)
        if frame[1:] != bytes([DEVICE_ID, STX]):
            self.unread(bytes(frame[1:]))  # not a frame for us: scan on after this EOT
            return None
        frame += self._read_by(1, deadline)
        size = DATA_LENGTH.get(frame[3]) if len(frame) == 4 else None
        if size is not None:
            frame += self._read_by(size + 1, deadline)
            whole = len(frame) == 5 + size and frame[-1] == ETX
        else:  # unknown command (or truncated): look for ETX
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
            self.unread(bytes(frame[1:]))  # broken or truncated: rescan for the next EOT
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
                self.unread(answer)  # the host moved on to its next command
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
            return response(cmd, digits(t.check) + digits(t.exit) + bytes([code]) + status + digits(t.rejects))
        up, low = tallies["upper"], tallies["lower"]
        return response(
            cmd,
            digits(up.check)
            + digits(up.exit)
            + digits(low.check)
            + digits(low.exit)
            + bytes([code])
            + status
            + digits(up.rejects)
            + digits(low.rejects),
        )

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
                self.counts[name] -= 1  # one more note leaves and sticks
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
            if "reject_tray_full" in self.faults or self.reject_tray + self.on_path > self.reject_capacity:
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
        return self._present(name) and (f"near_end_{name}" in self.faults or self._available(name) < NEAR_END_BELOW)

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
