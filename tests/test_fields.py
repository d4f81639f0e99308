"""Declared fields, bounded numbers, and TOML files that are not what they should be."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent import config
from agent.config import ConfigError
from agent.rig import DEFAULT_RIG, RigError, find_rig, load_rig
from devices.fields import Field, FieldError, check_table, fields

ROOT = Path(__file__).resolve().parent.parent
SPEC = fields(
    Field("idle", float, 15.0, "seconds without input", low=0.01, high=86_400),
    Field("name", str, description="a short name", length=(1, 8)),
    Field("mode", str, "a", choices=("a", "b")),
)


def test_a_table_gets_its_defaults_and_each_bad_field_one_message():
    assert check_table({"name": "x"}, SPEC, "t") == {"idle": 15.0, "name": "x", "mode": "a"}
    cases = [
        ({"name": "x", "idle": -3}, "t.idle: -3 is outside 0.01..86400 (seconds without input)"),
        ({"name": "x", "idle": True}, "t.idle: must be int or float, got bool True (seconds without input)"),
        ({"name": "x", "idle": float("inf")}, "t.idle: inf is outside"),
        ({}, "t.name: missing field (a short name)"),
        ({"name": ""}, "t.name: must not be empty"),
        ({"name": "x", "mode": "c"}, "t.mode: must be one of a, b, got 'c'"),
        ({"name": "x", "nmae": 1}, "t.nmae: unknown field (known: idle, name, mode)"),
    ]
    for raw, message in cases:
        with pytest.raises(FieldError) as err:
            check_table(raw, SPEC, "t")
        assert str(err.value).startswith(message)
        assert "\n" not in str(err.value)


def test_a_number_without_bounds_cannot_be_declared():
    with pytest.raises(TypeError, match="bounds"):
        Field("count", int, 0)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"session": {"max_withdrawal": 10**23}}, "session.max_withdrawal"),
        ({"session": {"pin_attempts": 10**6}}, "session.pin_attempts"),
        ({"cassettes": [{"id": "A", "denomination": 1000, "count": 10**23}]}, "cassettes[0].count"),
        ({"cassettes": [{"id": "A", "denomination": 10**23, "count": 1}]}, "cassettes[0].denomination"),
        ({"cassettes": [{"id": "A", "denomination": 1000, "count": 1, "low": 10**23}]}, "cassettes[0].low"),
        ({"cassettes": [{"id": str(i), "denomination": 1000, "count": 1} for i in range(9)]}, "cassettes"),
        ({"atm": {"id": "x" * 100}}, "atm.id"),
        ({"telemetry": {"brokers": ["mqtt://a"] * 100}}, "telemetry.brokers"),
    ],
)
def test_huge_values_are_refused(raw, field):
    with pytest.raises(ConfigError) as err:
        config.from_dict(raw)
    assert str(err.value).startswith(field + ":")


BAD_FILES = {
    "utf16.toml": "[timeouts]\nidle_help = 20.0\n".encode("utf-16"),
    "latin1.toml": '[atm]\nid = "caf\xe9"\n'.encode("latin-1"),
    "deep.toml": b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "deep_tables.toml": b"x = " + b"{a = " * 3000 + b"1" + b"}" * 3000 + b"\n",
    "huge_int.toml": b"x = 1" + b"0" * 5000 + b"\n",
    "big.toml": b"# " + b"x" * (2 << 20) + b"\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_toml_is_one_clear_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name])
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    with pytest.raises(RigError) as err:
        load_rig(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "atm.toml"
    path.write_bytes(b'\xef\xbb\xbf[atm]\nid = "atm-7"\n')
    assert config.load(path).atm_id == "atm-7"


def test_shipped_rigs_by_name_and_rig_files_by_path(tmp_path, monkeypatch):
    assert find_rig("sim") == DEFAULT_RIG and load_rig(find_rig("pi-kiosk")).name == "pi-kiosk"
    with pytest.raises(RigError, match=r"nosuch: no such shipped rig \(shipped: pcsc, pi-kiosk, sim"):
        find_rig("nosuch")
    assert config.from_dict({}, rig="pcsc").devices["chip"] == "pcsc+emu://"
    monkeypatch.chdir(ROOT)
    assert config.from_dict({}, rig="rigs/sim.toml").rig == "rigs/sim.toml"
    cfg_file = tmp_path / "atm.toml"
    cfg_file.write_text('[rig]\nfile = "sim"\n')
    assert config.load(cfg_file).rig == str(DEFAULT_RIG)


def test_the_language_rule_lives_in_fsm_and_is_still_importable_from_agent_prompts():
    from agent.prompts import language_for_country as old
    from fsm.language import language_for_country

    assert old is language_for_country
    assert language_for_country("0392", ["ja", "en"], "ja") == "ja"
    tree = ast.parse((ROOT / "fsm" / "language.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not any(m.startswith("agent") for m in imported)


def test_no_module_of_the_prompts_package_is_long():
    for path in (ROOT / "agent" / "prompts").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
