"""The heartbeat: sent from the loop at its interval, saying uptime, backlog and the loop's worst delay."""

from __future__ import annotations

import time

import pytest

from agent import config as configmod
from tests.helpers import make_agent
from tests.test_schemas import assert_valid


def heartbeats(agent) -> list[dict]:
    return [m["payload"] for m in agent.recorder.of_type("telemetry") if m["topic"].endswith("/heartbeat")]


def test_heartbeats_come_at_the_interval_with_uptime_and_a_valid_body():
    agent = make_agent({"telemetry": {"heartbeat_interval": 30}})
    agent.warm_prompts()
    agent.start()
    try:
        agent.loop.run_until_idle(max_time=agent.clock.now() + 95)
        beats = heartbeats(agent)
        assert [b["uptime_s"] for b in beats] == [30.0, 60.0, 90.0]
        assert all(b["state"] == "idle" and b["service"] == "in_service" and b["backlog"] == 0 for b in beats)
        for beat in beats:
            assert_valid("heartbeat.schema.json", beat, "heartbeat")
    finally:
        agent.stop()


def test_a_loop_kept_from_its_timers_shows_in_the_next_heartbeat():
    agent = make_agent({"telemetry": {"heartbeat_interval": 10}})
    agent.warm_prompts()
    agent.start()
    try:
        agent.loop.run_until_idle(max_time=agent.clock.now() + 11)
        assert heartbeats(agent)[-1]["loop_delay_ms"] < 1.0

        def blocks_the_loop() -> None:  # a timer that holds the loop for 2.5 virtual seconds
            agent.clock.advance(2.5)

        agent.scheduler.call_later(1, blocks_the_loop)
        agent.scheduler.call_later(1.5, time.monotonic)  # due while the loop was held: 2 s late
        agent.loop.run_until_idle(max_time=agent.clock.now() + 10)
        assert heartbeats(agent)[-1]["loop_delay_ms"] >= 2000.0
    finally:
        agent.stop()


@pytest.mark.parametrize("bad", [0, 4, 3601, "often"])
def test_the_heartbeat_interval_is_a_bounded_config_field(bad):
    with pytest.raises(configmod.ConfigError, match="telemetry.heartbeat_interval"):
        configmod.from_dict({"telemetry": {"heartbeat_interval": bad}})
