"""Every device is polled between sessions; the service follows within the interval."""

from __future__ import annotations

from tests.helpers import make_agent


def emulated_agent(**timeouts):
    agent = make_agent({"devices": {"dispenser": "lcdm2000+emu://?note_ms=5"}, "timeouts": timeouts})
    agent.warm_prompts()
    agent.start()
    agent.loop.run_until_idle(max_time=agent.clock.now() + 1.0)
    return agent


def run_for(agent, seconds: float) -> None:
    agent.loop.run_until_idle(max_time=agent.clock.now() + seconds)


def test_cassettes_pulled_out_withdraw_withdrawals_within_the_poll_interval():
    agent = emulated_agent(status_poll=5.0, selftest_retry=600.0)
    try:
        assert "withdrawal" in agent.atm.functions
        dispenser = agent.devices.dispenser
        dispenser.inject("cassette_removed_upper")
        dispenser.inject("cassette_removed_lower")
        run_for(agent, 5.5)
        assert "withdrawal" not in agent.atm.functions
        assert list(dispenser.faults) == ["cassette_missing"]
        dispenser.remove("cassette_removed_upper")
        dispenser.remove("cassette_removed_lower")
        run_for(agent, 5.5)
        assert "withdrawal" in agent.atm.functions and not dispenser.faults
        faults = [m["payload"] for m in agent.recorder.of_type("telemetry") if m["topic"].endswith("/fault")]
        assert [(f["code"], f["state"]) for f in faults] == [
            ("cassette_missing", "raised"),
            ("cassette_missing", "cleared"),
        ]
    finally:
        agent.stop()
        agent.close()


def test_polling_moves_nothing():
    agent = emulated_agent(status_poll=1.0)
    try:
        emulator = agent.devices.dispenser.emulator
        before = emulator.snapshot()
        run_for(agent, 30.0)
        assert emulator.snapshot() == before
        events = [r.get("event") for r in agent.recorder.of_type("device")]
        assert "cash_presented" not in events and "fault" not in events
    finally:
        agent.stop()
        agent.close()
