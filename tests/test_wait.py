"""The shared wait_for helper and the server-marker check in conftest."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from hw_mocks.servers import started
from hw_mocks.servers.wait import wait_for
from tests import conftest


def test_wait_for_returns_the_first_truthy_value():
    calls = iter([0, None, "", "ready"])
    assert wait_for(lambda: next(calls), 1, 0.001) == "ready"


def test_wait_for_names_what_it_waited_for_on_timeout():
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the door \(3\)"):
        wait_for(lambda: False, 0.05, 0.01, lambda: f"the door ({1 + 2})")
    assert 0.05 <= time.monotonic() - start < 1


def test_a_server_started_without_its_marker_fails_the_test(request):
    before = dict(started)
    started["mosquitto"] += 1  # as Mosquitto.start() does
    try:
        with pytest.raises(pytest.fail.Exception, match="starts mosquitto but is not marked"):
            conftest._check_servers(request.node, before)
    finally:
        started["mosquitto"] -= 1
    conftest._check_servers(request.node, before)  # nothing started: passes


def test_every_name_in_slow_txt_is_a_test_function_that_exists():
    here = Path(__file__).parent
    missing = []
    for name in sorted(conftest.slow_tests()):
        file, _, function = name.partition("::")
        path = here / file
        tree = ast.parse(path.read_text(encoding="utf-8")) if path.is_file() else ast.Module(body=[])
        if function not in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}:
            missing.append(name)
    assert not missing, f"tests/slow.txt names tests that do not exist: {missing}"
