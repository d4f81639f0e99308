"""The ``exercise`` request's fields (each bounded), for the control socket and the CLI.

Which options go with which device and action is :data:`fsm.exercise.ACTIONS`; the
state machine checks that, and the ATM's own figures (cassettes, languages), again.
"""

from __future__ import annotations

from devices.fields import ABSENT, Field, fields
from fsm import exercise as ex

FIELDS: dict[str, Field] = fields(
    Field("device", str, description="the device to exercise", choices=tuple(ex.ACTIONS)),
    Field("action", str, description="what it does", choices=ex.ALL_ACTIONS),
    Field("cassette", str, ABSENT, "the cassette to test-dispense from", length=(1, 16)),
    Field("notes", int, ABSENT, "notes to test-dispense", low=1, high=ex.MAX_TEST_NOTES),
    Field("colour", str, ABSENT, "the card reader's LED colour", choices=ex.COLOURS),
    Field("prompt", str, ABSENT, "a voice prompt's id", pattern=r"[a-z][a-z0-9_]{0,63}"),
    Field("language", str, ABSENT, "a language code like ja", pattern=r"[a-z]{2,3}"),
    Field("screen", str, ABSENT, "a screen of the state machine", choices=ex.SCREEN_NAMES),
    Field("seconds", int, ABSENT, "seconds of proximity readings", low=1, high=ex.MAX_SECONDS),
    Field("path", str, ABSENT, "the snapshot's file, absolute", length=(1, 1024)),
)
