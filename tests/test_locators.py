"""Locators: every backend reads its own options and rejects the rest."""

import inspect
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from devices.base import DeviceContext
from devices.locator import Locator, LocatorError
from devices.registry import DEVICE_KINDS, ENTRY_POINT_GROUP, backend_class, create_device, schemes_for

ROOT = Path(__file__).resolve().parent.parent

# One buildable locator per backend (built, never opened).
BACKENDS = [
    *[(kind, "sim://") for kind in DEVICE_KINDS],
    ("card_reader", "ict3q8:///dev/null"),
    ("card_reader", "ict3q8+emu://"),
    ("dispenser", "lcdm2000:///dev/null"),
    ("dispenser", "lcdm2000+emu://"),
    ("chip", "pcsc://0"),
    ("chip", "pcsc+emu://"),
    ("proximity", "gpiozero-distance://?trigger=17&echo=27"),
    ("proximity", "gpiozero-pir://?pin=4"),
    ("proximity", "trace://walking-away"),
    ("keypad", "terminal://"),
    ("keypad", "evdev:///dev/input/event0"),
    ("camera", "opencv://0"),
    ("speaker", "aplay://default"),
    ("display", "opencv://"),
]


def with_option(locator: str, option: str) -> str:
    return locator + ("&" if "?" in locator else "?") + option


def test_the_table_covers_every_registered_backend():
    assert {(k, Locator.parse(t).scheme) for k, t in BACKENDS} == {(k, s) for k in DEVICE_KINDS for s in schemes_for(k)}


@pytest.mark.parametrize("kind, locator", BACKENDS)
def test_every_backend_rejects_an_unknown_option_naming_device_and_option(kind, locator):
    assert create_device(kind, locator, DeviceContext()).close() is None
    text = with_option(locator, "colour=red")
    with pytest.raises(LocatorError) as err:
        create_device(kind, text, DeviceContext())
    message = str(err.value)
    assert message.startswith(f"devices.{kind}: {text}: unknown option 'colour'") and "\n" not in message


def test_the_error_lists_the_options_the_backend_knows():
    with pytest.raises(
        LocatorError,
        match=r"^devices.camera: opencv://0\?fps=x: unknown option 'fps'"
        r" \(known: width, height\)$",
    ):
        create_device("camera", "opencv://0?fps=x", DeviceContext())
    with pytest.raises(LocatorError, match=r"unknown option 'x' \(this backend takes none\)"):
        create_device("keypad", "terminal://?x=1", DeviceContext())


@pytest.mark.parametrize(
    "kind, locator, words",
    [
        ("dispenser", "lcdm2000+emu://?fault=meteor", "fault='meteor' is not one of jam, near_end"),
        ("dispenser", "lcdm2000+emu://?timing=maybe", "timing='maybe' is not a yes/no flag"),
        ("dispenser", "lcdm2000+emu://?upper=", "upper= is empty"),
        ("dispenser", "lcdm2000+emu://?upper=A&lower=A", "options upper and lower name the same cassette"),
        ("dispenser", "lcdm2000:///dev/null?baud=2.5", "baud='2.5' is not a whole number"),
        ("dispenser", "lcdm2000:///dev/null?baud=fast", "baud='fast' is not a number"),
        ("card_reader", "ict3q8:///dev/null?parity=Z", "parity='Z' is not one of N, E, O"),
        ("card_reader", "ict3q8:///dev/null?retries=11", "retries='11' is out of range 0..10"),
        ("card_reader", "ict3q8:///dev/null?trace=2", "trace='2' is not a yes/no flag"),
        ("card_reader", "ict3q8:///dev/null?logging=debug", "unknown option 'logging'"),
        ("proximity", "gpiozero-pir://?pin=banana", "pin='banana' is not a GPIO pin"),
        ("proximity", "gpiozero-pir://?pin=4&rate=inf", "rate='inf' is out of range"),
        ("proximity", "trace://no-such-trace", "no trace 'no-such-trace'"),
        ("keypad", "sim://?%%%", "malformed"),
        ("keypad", "sim://?a=1&a=2", "option 'a' is given twice"),
        ("display", "opencv://?width=wide", "width='wide' is not a number"),
        ("display", "sim://?width=640", "width= and height= go together"),
        ("display", "sim://?keep=0", "keep='0' is out of range 1..10000"),
        ("chip", "pcsc://0?aids=xyz", "aids='xyz' is not a comma-separated list"),
        ("camera", "opencv://0?width=640", "width= and height= go together"),
    ],
)
def test_malformed_values_are_one_line_errors(kind, locator, words):
    with pytest.raises(LocatorError) as err:
        create_device(kind, locator, DeviceContext())
    message = str(err.value)
    assert message.startswith(f"devices.{kind}: ") and words in message and "\n" not in message


def test_an_unknown_scheme_lists_the_known_ones():
    with pytest.raises(
        LocatorError,
        match=r"^devices.camera: webcam://: unknown backend 'webcam'"
        r" for camera \(known: opencv, sim\)$",
    ):
        create_device("camera", "webcam://", DeviceContext())


def _ptys() -> set[str]:
    """This process's open pseudo-terminal ends (other fds come and go with other tests' threads)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("/dev/pts/", "/dev/ptmx")):
            found.add(f"{fd} {target}")
    return found


def test_a_rejected_emulated_rig_leaves_no_pty_open():
    before = _ptys()
    for text in ("lcdm2000+emu://?colour=red", "lcdm2000+emu://?baud=fast", "ict3q8+emu://?init=drop"):
        with pytest.raises(LocatorError):
            create_device(text.split("+")[0] == "lcdm2000" and "dispenser" or "card_reader", text, DeviceContext())
    assert _ptys() <= before


def test_a_cassette_slot_naming_no_configured_cassette_names_the_option():
    from devices.dispenser import Cassette

    d = create_device("dispenser", "lcdm2000+emu://?upper=Z", DeviceContext())
    try:
        with pytest.raises(LocatorError, match=r"^devices.dispenser: .*option upper='Z' names no configured"):
            d.load_cassettes([Cassette("A", 1000, 10), Cassette("B", 5000, 10)])
    finally:
        d.close()


def test_pyserial_url_options_are_handed_on_only_to_the_handler_that_takes_them():
    d = create_device("card_reader", "ict3q8://socket://127.0.0.1:9?logging=debug&baud=9600", DeviceContext())
    assert d.link.url == "socket://127.0.0.1:9?logging=debug" and d.link.settings.baud == 9600
    with pytest.raises(LocatorError, match="unknown option 'poll_modem'"):
        create_device("card_reader", "ict3q8://socket://127.0.0.1:9?poll_modem=1", DeviceContext())


def test_every_backend_is_an_entry_point_of_a_concrete_class_of_its_kind():
    names = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    assert names and len(names) == len(set(names))
    for kind, text in BACKENDS:
        cls = backend_class(kind, Locator.parse(text))
        assert not inspect.isabstract(cls) and cls.kind == kind, cls


def test_devices_never_name_a_simulation_module():
    for path in (ROOT / "devices").rglob("*.py"):
        if path.parent.name == "fields":  # shared by every layer: its docstring names them
            continue
        assert "hw_mocks" not in path.read_text(), path


def test_readers_read_type_bounds_and_defaults():
    loc = Locator.parse("x://p?n=7&f=0.5&on=yes&c=e&w=a,b&t=%20hi%20", "devices.test")
    assert loc.number("n", int, 0, 9, 1) == 7 and loc.number("f", float, 0.0, 1.0, 0.1) == 0.5
    assert loc.flag("on") is True and loc.flag("off") is False and loc.flag("off", True) is True
    assert loc.choice("c", ("N", "E"), "N") == "E" and loc.words("w", "abc") == ("a", "b")
    assert loc.text("t") == "hi" and loc.number("missing", int, 0, 9, 3) == 3
    loc.check_all_read()
    derived = Locator.parse("x://?a=1").derive("/dev/pts/9", {"b": "2"})
    assert derived.path == "/dev/pts/9" and derived.number("b", int, 0, 9, 0) == 2
    with pytest.raises(LocatorError, match="unknown option 'a'"):
        derived.check_all_read()
