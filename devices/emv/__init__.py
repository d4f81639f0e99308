"""Read an EMV contact chip card, independent of the transport.

The PC/SC driver hands :func:`read_card` a ``transmit`` function that sends
one command APDU and returns ``(data, sw1, sw2)``. The read follows EMV
Books 1 and 3 as far as an ATM needs the card's data:

1. application selection: the PSE directory (``1PAY.SYS.DDF01``), else a
   list of known AIDs;
2. SELECT the application, GET PROCESSING OPTIONS (PDOL filled from
   terminal values);
3. READ RECORD for every record the AFL names;
4. PAN, expiry, service code, country and label into a :class:`CardData`.

Every failure is a :class:`ChipReadError` with a ``code``; its message never
holds the card number or track data.
"""

from devices.emv.apdu import (
    GET_PROCESSING_OPTIONS,
    GET_RESPONSE,
    MAX_ROUNDS,
    PSE_NAME,
    READ_RECORD,
    SELECT_BY_NAME,
    SW1_MORE_DATA,
    SW1_WRONG_LE,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_INVALIDATED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    Transmit,
    exchange,
    read_record,
    select,
)
from devices.emv.errors import CardMute, CardRemoved, ChipReadError, ChipTransportError
from devices.emv.processing import NUMERIC_TAGS, TERMINAL_DEFAULTS, afl_entries, dol_data
from devices.emv.reader import read_card
from devices.emv.selection import MAX_DIRECTORY_RECORDS

__all__ = [
    "GET_PROCESSING_OPTIONS",
    "GET_RESPONSE",
    "MAX_DIRECTORY_RECORDS",
    "MAX_ROUNDS",
    "NUMERIC_TAGS",
    "PSE_NAME",
    "READ_RECORD",
    "SELECT_BY_NAME",
    "SW1_MORE_DATA",
    "SW1_WRONG_LE",
    "SW_CONDITIONS_NOT_SATISFIED",
    "SW_FILE_INVALIDATED",
    "SW_FILE_NOT_FOUND",
    "SW_FUNCTION_NOT_SUPPORTED",
    "SW_OK",
    "SW_RECORD_NOT_FOUND",
    "TERMINAL_DEFAULTS",
    "CardMute",
    "CardRemoved",
    "ChipReadError",
    "ChipTransportError",
    "Transmit",
    "afl_entries",
    "dol_data",
    "exchange",
    "read_card",
    "read_record",
    "select",
]
