"""Shared pytest fixtures, the ``--rig`` option, the ``hil`` marker and the server markers.

``pytest --rig rigs/pi-kiosk.toml`` runs the device tests against that rig's
devices; the default is ``rigs/sim.toml`` (drivers on emulators). A test
marked ``@pytest.mark.hil("dispenser")`` needs that device to be real
hardware and is skipped, naming it, when the rig simulates or emulates it.

A test that uses a fixture of ``SERVER_FIXTURES`` gets that server's marker
(``mosquitto``, ``pcscd``, ``xvfb``) by itself; one that starts a server
another way carries the marker explicitly, and fails when it does not. The
tests named in ``tests/slow.txt`` are marked ``slow``.
"""

import os
import shutil
from pathlib import Path

import pytest

from agent.mqtt import MqttLink
from agent.outbox import Outbox
from agent.rig import DEFAULT_RIG, is_emulated, is_simulated, load_rig
from agent.telemetry import Telemetry
from devices.base import DeviceContext
from devices.registry import create_device
from fsm.clock import RealClock, Scheduler, VirtualClock
from hw_mocks import pcscd
from hw_mocks.servers import started
from hw_mocks.servers.broker import Mosquitto
from hw_mocks.servers.xvfb import start_xvfb
from tests.helpers import Events

SERVER_MARKERS = ("mosquitto", "pcscd", "xvfb")
# Fixtures (here and in the test modules) that start a server, and its marker.
SERVER_FIXTURES = {"mosquitto": "mosquitto", "broker": "mosquitto", "xvfb": "xvfb", "daemon": "pcscd"}


def pytest_addoption(parser):
    parser.addoption(
        "--rig",
        default=str(DEFAULT_RIG),
        metavar="PATH",
        help="rig file whose devices the device tests use (default: rigs/sim.toml)",
    )


_pcscd_acquire = pcscd.acquire


def _counted_acquire() -> pcscd.PcscDaemon:
    started["pcscd"] += 1
    return _pcscd_acquire()


def pytest_configure(config):
    """Count pcscd acquisitions like the other servers' starts (see ``_check_servers``)."""
    pcscd.acquire = _counted_acquire


def pytest_unconfigure(config):
    pcscd.acquire = _pcscd_acquire


def slow_tests() -> set[str]:
    """``file::function`` names from tests/slow.txt."""
    lines = (Path(__file__).parent / "slow.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark each test with the servers its fixtures start, and the slow ones ``slow``."""
    slow = slow_tests()
    for item in items:
        if f"{item.path.name}::{getattr(item, 'originalname', item.name)}" in slow:
            item.add_marker("slow")
        for fixture in getattr(item, "fixturenames", ()):
            marker = SERVER_FIXTURES.get(fixture)
            if marker is not None and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def _check_servers(item, before: dict[str, int]) -> None:
    for kind in SERVER_MARKERS:
        if started[kind] > before.get(kind, 0) and item.get_closest_marker(kind) is None:
            pytest.fail(f"{item.nodeid} starts {kind} but is not marked @pytest.mark.{kind}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    before = dict(started)
    result = yield
    _check_servers(item, before)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = dict(started)
    result = yield
    _check_servers(item, before)
    return result


@pytest.fixture(scope="session")
def rig(pytestconfig):
    return load_rig(pytestconfig.getoption("--rig"))


@pytest.fixture(autouse=True)
def _hil_devices(request):
    marker = request.node.get_closest_marker("hil")
    if marker is None:
        return
    rig = request.getfixturevalue("rig")
    for kind in marker.args:
        if is_simulated(rig.devices[kind]):
            pytest.skip(f"needs a real {kind}; rig {rig.name} gives {rig.devices[kind]}")


@pytest.fixture
def ctx():
    """A device context on a virtual clock that records the device's events."""
    return DeviceContext(scheduler=Scheduler(VirtualClock()), emit=Events())


@pytest.fixture
def rig_device(rig):
    """``rig_device(kind, emulator=False, **params)``: open the rig's device (closed after).

    ``emulator=True`` skips the test, saying so, unless the rig runs that
    device on an emulator (fault injection needs one). ``params`` are added to
    the locator's options.
    """
    opened = []

    def make(kind: str, emulator: bool = False, ctx: DeviceContext | None = None, **params):
        locator = rig.devices[kind]
        if emulator and not is_emulated(locator):
            pytest.skip(f"fault injection needs an emulator; rig {rig.name} gives {kind} = {locator}")
        if params:
            extra = "&".join(f"{k}={v}" for k, v in params.items())
            locator += ("&" if "?" in locator else "?") + extra
        device = create_device(kind, locator, ctx or DeviceContext())
        opened.append(device)
        return device

    yield make
    for device in opened:
        device.close()


@pytest.fixture(scope="session")
def xvfb():
    """One Xvfb for the whole run, its ``:N`` in $DISPLAY: HighGUI's toolkit keeps its first
    X connection for the life of the process, so every window of the run uses this server."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    proc, display = start_xvfb()
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "QT_LOGGING_RULES")}
    os.environ["DISPLAY"] = display
    os.environ["QT_LOGGING_RULES"] = "*.debug=false;qt.qpa.*=false;default.warning=false"
    try:
        if proc.poll() is not None:
            pytest.fail("Xvfb did not start")
        yield os.environ["DISPLAY"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def mosquitto():
    """A running mosquitto broker on 127.0.0.1:<free port>; always stopped."""
    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture
def links(tmp_path):
    """``links(urls, **kw)``: an MqttLink on its own outbox file and its Telemetry; stopped after."""
    made = []

    def make(urls, atm_id="ATM-T1", outbox=None, **kw):
        box = outbox or Outbox(str(tmp_path / f"outbox-{len(made)}.db"))
        tel = Telemetry(atm_id, RealClock(), boot=box.next_counter("boot"))
        link = MqttLink(urls if isinstance(urls, list) else [urls], atm_id, box, make_message=tel.message, **kw)
        tel.publishers = [link]
        made.append(link)
        return link, tel

    yield make
    for link in made:
        link.stop(timeout=0.2)
