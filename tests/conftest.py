"""Shared pytest fixtures."""
import pytest

from tests.broker import Mosquitto


@pytest.fixture
def mosquitto():
    """A running mosquitto broker on 127.0.0.1:<free port>; always stopped."""
    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
