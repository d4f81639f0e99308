"""Shared pytest fixtures, the ``--rig`` option and the ``hil`` marker.

``pytest --rig rigs/pi-kiosk.toml`` runs the device tests against that rig's
devices; the default is ``rigs/sim.toml`` (drivers on emulators). A test
marked ``@pytest.mark.hil("dispenser")`` needs that device to be real
hardware and is skipped, naming it, when the rig simulates or emulates it.
"""
import pytest

from agent.rig import DEFAULT_RIG, is_emulated, is_simulated, load_rig
from devices.base import DeviceContext
from devices.registry import create_device
from fsm.clock import Scheduler, VirtualClock
from tests.helpers import Events
from hw_mocks.servers.broker import Mosquitto


def pytest_addoption(parser):
    parser.addoption("--rig", default=str(DEFAULT_RIG), metavar="PATH",
                     help="rig file whose devices the device tests use (default: rigs/sim.toml)")


def pytest_configure(config):
    config.addinivalue_line("markers", "hil(*devices): needs these devices to be real hardware in --rig")


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


@pytest.fixture
def mosquitto():
    """A running mosquitto broker on 127.0.0.1:<free port>; always stopped."""
    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
