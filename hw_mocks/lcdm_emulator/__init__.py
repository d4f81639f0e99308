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

from hw_mocks.lcdm_emulator.emulator import Lcdm2000Emulator

__all__ = ["Lcdm2000Emulator"]
