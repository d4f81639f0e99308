"""Configuration: defaults load, and every bad field is named."""

import pytest

from agent import config
from agent.config import ConfigError


def test_defaults_are_a_simulated_rig():
    cfg = config.load(None)
    assert set(cfg.devices.values()) == {"sim://"}
    assert [c.id for c in cfg.cassettes] == ["A", "B"]
    assert len(cfg.card_key) >= 16


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"timeouts": {"idle_help": -3}}, "timeouts.idle_help"),
        ({"timeouts": {"idle_help": "soon"}}, "timeouts.idle_help"),
        ({"timeouts": {"selftest_retry": float("inf")}}, "timeouts.selftest_retry"),
        ({"timeouts": {"host": 1e-300}}, "timeouts.host"),
        ({"telemetry": {"cash_interval": float("nan")}}, "telemetry.cash_interval"),
        ({"timeouts": {"idle_help": 50, "idle_cancel": 40}}, "timeouts.idle_cancel"),
        ({"atm": {"idd": "x"}}, "atm.idd"),
        ({"atm": {"id": "bad id!"}}, "atm.id"),
        ({"atm": {"languages": []}}, "atm.languages"),
        ({"devices": {"dispenser": "nope://"}}, "devices.dispenser"),
        ({"devices": {"dispenser": "sim"}}, "devices.dispenser"),
        ({"devices": {"toaster": "sim://"}}, "devices.toaster"),
        ({"cassettes": [{"id": "A", "denomination": 0, "count": 1}]}, "cassettes[0].denomination"),
        ({"cassettes": [{"id": "A", "denomination": 1000}]}, "cassettes[0].count"),
        (
            {
                "cassettes": [
                    {"id": "A", "denomination": 1000, "count": 1},
                    {"id": "A", "denomination": 1000, "count": 1},
                ]
            },
            "cassettes[1].id",
        ),
        ({"telemetry": {"brokers": ["http://x"]}}, "telemetry.brokers"),
        ({"security": {"card_key": "abcd"}}, "security.card_key"),
        ({"session": {"magstripe_fallback": "yes"}}, "session.magstripe_fallback"),
        ({"nonsense": {}}, "nonsense"),
    ],
)
def test_bad_field_is_named(raw, field):
    with pytest.raises(ConfigError) as err:
        config.from_dict(raw)
    assert str(err.value).startswith(field + ":")


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "atm.toml"
    bad.write_text("[timeouts]\nidle_help = 0\n")
    with pytest.raises(ConfigError, match=r"atm.toml: timeouts.idle_help"):
        config.load(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[atm\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(broken)
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "missing.toml")


def test_demo_card_key_is_refused_with_real_card_readers():
    from devices.registry import register_backend, unregister_backend

    register_backend("chip", "testreal", "hw_mocks.sim_devices:SimChipReader")
    try:
        with pytest.raises(ConfigError, match="^security.card_key: the public demo key"):
            config.from_dict({"devices": {"chip": "testreal://"}})
        cfg = config.from_dict({"devices": {"chip": "testreal://"}, "security": {"card_key": "11" * 16}})
        assert not config.uses_demo_key(cfg)
    finally:
        unregister_backend("chip", "testreal")


def test_the_documented_example_config_is_valid_and_matches_the_defaults():
    from pathlib import Path

    example = config.load(Path(__file__).resolve().parent.parent / "docs" / "atm.example.toml")
    defaults = config.load(None)
    for field in (
        "atm_id",
        "languages",
        "devices",
        "cassettes",
        "timeouts",
        "session",
        "telemetry",
        "speech",
        "evidence",
    ):
        assert getattr(example, field) == getattr(defaults, field), field


def test_the_bank_host_is_a_configured_backend():
    from agent.runtime import Agent
    from fsm.clock import VirtualClock
    from hw_mocks.bank_host import SimBankHost

    assert config.from_dict({}).host == "sim://"
    with pytest.raises(ConfigError, match=r"atm.host: .*unknown bank host 'iso8583'"):
        config.from_dict({"atm": {"host": "iso8583://10.0.0.1"}})
    agent = Agent(config.from_dict({"atm": {"host": "sim://?latency=0.5"}}), VirtualClock())
    try:
        assert isinstance(agent.host, SimBankHost) and agent.host.latency == 0.5
    finally:
        agent.close()
    with pytest.raises(ConfigError, match=r"host: sim://\?speed=1: unknown option 'speed' \(known: latency\)"):
        Agent(config.from_dict({"atm": {"host": "sim://?speed=1"}}), VirtualClock())
