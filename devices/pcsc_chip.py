"""EMV chip reader through PC/SC (backend ``pcsc://<reader name or index>``).

The path is pyscard → pcscd → the reader's driver, the same on a kiosk with
a USB reader and in tests with vsmartcard's vpcd. ``pcsc://Virtual PCD 00 00``
names a reader (``%20`` works for spaces), ``pcsc://0`` takes the first.
Options: ``timeout`` (seconds to wait for a chip to answer, 1.0) and ``aids``
(comma-separated hex AIDs to try when the card has no PSE).

Every problem with a card becomes a fault with a clear code, never an
exception that escapes: ``mute_card`` (no chip answered), ``card_removed``,
``application_blocked``, ``chip_error`` (malformed data, an unknown status
word, no supported application). An expired card is returned as read: the
state machine refuses it and tells the customer why.
"""

from __future__ import annotations

import importlib
import time
from typing import Any
from urllib.parse import unquote

from devices import emv
from devices.base import Action, DeviceContext, DeviceError, DeviceStatus, Fault, Severity
from devices.carddata import CardData
from devices.chip import ChipReader
from devices.locator import Locator

# Visa, Visa Electron, Mastercard, Maestro, JCB, Amex, UnionPay debit and credit
DEFAULT_AIDS = (
    "A0000000031010",
    "A0000000032010",
    "A0000000041010",
    "A0000000043060",
    "A0000000651010",
    "A000000025010801",
    "A000000333010101",
    "A000000333010102",
)
MAX_AIDS = 16
MAX_READERS = 16  # pcsc-lite's PCSCLITE_MAX_READERS_CONTEXTS: an index is 0..15
MAX_READER_NAME = 128  # pcsc-lite's MAX_READERNAME
CARD_FAULTS = {"mute": "mute_card", "removed": "card_removed", "blocked": "application_blocked"}
PASSING = ("mute_card", "card_removed", "application_blocked", "chip_error", "no_card")


class PcscChipReader(ChipReader):
    def __init__(self, ctx: DeviceContext | None = None, locator: Locator | None = None):
        super().__init__(ctx, locator)
        self.timeout = self.loc.number("timeout", float, 0.05, 60.0, 1.0)
        aids = self.loc.text("aids", ",".join(DEFAULT_AIDS))
        try:
            self.aids = [bytes.fromhex(a) for a in aids.split(",") if a.strip()]
        except ValueError:
            raise self.loc.error(f"option aids={aids!r} is not a comma-separated list of hex AIDs") from None
        if not self.aids:
            raise self.loc.error("option aids= is empty (comma-separated hex AIDs)")
        if len(self.aids) > MAX_AIDS or any(not 5 <= len(a) <= 16 for a in self.aids):
            raise self.loc.error(f"option aids= takes 1..{MAX_AIDS} AIDs of 5-16 bytes each")
        self.reader_name = unquote(self.loc.path) if locator is not None else "0"
        if self._reader_index and int(self.reader_name) >= MAX_READERS:
            raise self.loc.error(
                f"reader index {self.reader_name} is out of range 0..{MAX_READERS - 1} (PC/SC serves {MAX_READERS})"
            )
        if len(self.reader_name) > MAX_READER_NAME:
            raise self.loc.error(f"reader name is longer than {MAX_READER_NAME} characters")
        self.atr = b""

    @property
    def _reader_index(self) -> bool:
        """Whether the path names a reader by its index (ASCII digits), not by its name."""
        return self.reader_name.isascii() and self.reader_name.isdigit()

    # the reader ------------------------------------------------------------------
    def _reader(self) -> Any:
        """The named pyscard reader (or the one at that index), or None (pyscard is untyped)."""
        from smartcard.Exceptions import SmartcardException
        from smartcard.pcsc.PCSCExceptions import BaseSCardException
        from smartcard.System import readers

        try:
            found = readers()
        except (SmartcardException, BaseSCardException):  # e.g. no pcscd: no context
            return None
        if self._reader_index:
            index = int(self.reader_name)
            return found[index] if index < len(found) else None
        return next((r for r in found if str(r) == self.reader_name), None)

    def open(self) -> None:
        try:
            importlib.import_module("smartcard.System")  # pyscard, built against libpcsclite
        except ImportError as exc:
            self.raise_fault("pyscard_missing", f"pyscard cannot load: {exc}", Severity.ERROR, Action.CONFIGURATION)
            return
        self.opened = True
        self.self_test()

    def self_test(self) -> DeviceStatus:
        if not self.opened:
            return self.status
        if self._reader() is None:
            self.raise_fault(
                "reader_missing",
                f"no PC/SC reader {self.reader_name!r} (is pcscd running?)",
                Severity.ERROR,
                Action.MAINTENANCE,
            )
        else:
            self.clear_fault("reader_missing")
        return self.status

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "reader": self.reader_name}

    # reading ---------------------------------------------------------------------
    def _connect(self) -> Any:
        """Wait up to ``timeout`` for a chip that answers; returns a pyscard connection."""
        from smartcard.Exceptions import CardConnectionException, NoCardException

        reader = self._reader()
        if reader is None:
            raise DeviceError(
                self.raise_fault(
                    "reader_missing", f"no PC/SC reader {self.reader_name!r}", Severity.ERROR, Action.MAINTENANCE
                )
            )
        self.clear_fault("reader_missing")
        deadline = time.monotonic() + self.timeout
        while True:
            connection = reader.createConnection()
            try:
                connection.connect()
                return connection
            except (NoCardException, CardConnectionException):
                _release(connection)
                if time.monotonic() >= deadline:
                    fault = self._card_fault("mute_card", f"no chip answered within {self.timeout:g} s")
                    raise DeviceError(fault) from None
                time.sleep(0.01)

    def _card_fault(self, code: str, message: str) -> Fault:
        """A problem with this card, not with the reader: information, no action."""
        return self.raise_fault(code, message, Severity.INFO, Action.NONE)

    def read_card(self, key: bytes) -> CardData:
        from smartcard.Exceptions import CardConnectionException

        connection = self._connect()

        def transmit(apdu: bytes) -> tuple[bytes, int, int]:
            try:
                data, sw1, sw2 = connection.transmit(list(apdu))
            except CardConnectionException as exc:
                raise emv.CardRemoved(str(exc)) from None
            return bytes(data), sw1, sw2

        try:
            self.atr = bytes(connection.getATR())
            card = emv.read_card(transmit, key, self.aids, time.strftime("%y%m%d"))
        except emv.ChipReadError as exc:
            if exc.code == "expired" and exc.card is not None:
                card = exc.card  # the policy (refuse, say why) belongs to the state machine
            else:
                raise DeviceError(self._card_fault(CARD_FAULTS.get(exc.code, "chip_error"), str(exc))) from None
        except CardConnectionException as exc:
            raise DeviceError(self._card_fault("card_removed", f"the card went away: {exc}")) from None
        finally:
            try:
                connection.disconnect()
            except CardConnectionException:
                pass
            _release(connection)
        for code in PASSING:
            self.clear_fault(code)
        return card


def _release(connection: Any) -> None:
    """Free the connection's PC/SC context now, not in a destructor after pcscd may be gone."""
    from smartcard.Exceptions import CardConnectionException

    try:
        connection.release()
    except (CardConnectionException, AttributeError):
        pass
