"""The bank host, chosen by locator like the devices: ``sim://`` is the simulated bank.

A real host adapter is one more entry in :data:`HOSTS` (``scheme`` ->
``module:factory``), with a factory ``(locator, scheduler, card_key)`` that
returns a :class:`fsm.ports.BankHost`; the state machine does not change.
"""

from __future__ import annotations

import importlib
from typing import Any

from devices.registry import Locator
from fsm.ports import BankHost

HOSTS: dict[str, str] = {
    "sim": "agent.host:sim_host",
}


def sim_host(locator: Locator, scheduler: Any, card_key: bytes) -> BankHost:
    """The simulated bank: every test card, PIN 1234. Option: ``latency`` (seconds, 0-60)."""
    from hw_mocks.bank_host import demo_host

    latency = locator.number("latency", float, 0.0, 60.0, 0.2)
    locator.check_all_read()
    return demo_host(scheduler, card_key, latency)


def create_host(text: str, scheduler: Any, card_key: bytes) -> BankHost:
    """The bank host that ``text`` names; LocatorError for an unknown or malformed one."""
    locator = Locator.parse(text, "host")
    target = HOSTS.get(locator.scheme)
    if target is None:
        raise locator.error(f"unknown bank host {locator.scheme!r} (known: {', '.join(sorted(HOSTS))})")
    module, _, name = target.partition(":")
    factory = getattr(importlib.import_module(module), name)
    host: BankHost = factory(locator, scheduler, card_key)
    return host
