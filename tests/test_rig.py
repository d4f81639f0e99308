"""Rig files, ``atm status --rig``, and the whole ATM on the emulated serial devices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as configmod
from agent.output import Recorder
from agent.rig import DEFAULT_RIG, RigError, load_rig
from agent.runtime import Agent
from agent.scenarios import Scenario, ScenarioRun
from fsm.clock import VirtualClock
from hw_mocks.customer import Visit
from tests.helpers import RAW_PANS

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("card_reader", "chip", "dispenser", "acceptor", "proximity", "keypad", "camera", "speaker", "display")
SECRET = {"security": {"card_key": "00112233445566778899aabbccddeeff"}}


def write_rig(tmp_path, devices: dict, extra: str = "") -> Path:
    path = tmp_path / "rig.toml"
    lines = [extra, "[devices]"] + [f'{k} = "{v}"' for k, v in devices.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def all_sim(**changes):
    return {**{k: "sim://" for k in KINDS}, **changes}


def test_shipped_rigs_load():
    sim = load_rig(DEFAULT_RIG)
    assert sim.devices["dispenser"] == "lcdm2000+emu://" and sim.devices["card_reader"] == "ict3q8+emu://"
    kiosk = load_rig(ROOT / "rigs" / "pi-kiosk.toml")
    assert kiosk.devices["dispenser"].startswith("lcdm2000:///dev/")


@pytest.mark.parametrize(
    "devices, extra, words",
    [
        (all_sim(dispenser="lcdm9000://x"), "", "devices.dispenser: unknown backend 'lcdm9000'"),
        ({k: "sim://" for k in KINDS[:-1]}, "", "devices.display: missing"),
        (all_sim(printer="sim://"), "", "devices.printer: unknown device"),
        (all_sim(), "[extras]\nx = 1", "extras: unknown table"),
        (all_sim(chip="no-scheme"), "", "devices.chip:"),
    ],
)
def test_bad_rig_files_are_named(tmp_path, devices, extra, words):
    with pytest.raises(RigError, match=words.replace(".", r"\.").replace("(", r"\(")):
        load_rig(write_rig(tmp_path, devices, extra))


def test_config_points_at_a_rig_and_device_entries_override_it(tmp_path):
    write_rig(tmp_path, all_sim(dispenser="lcdm2000+emu://"))
    cfg_file = tmp_path / "atm.toml"
    cfg_file.write_text('[rig]\nfile = "rig.toml"\n[devices]\ncamera = "opencv://0"\n')
    cfg = configmod.load(cfg_file)
    assert cfg.rig == str(tmp_path / "rig.toml")
    assert cfg.devices["dispenser"] == "lcdm2000+emu://" and cfg.devices["camera"] == "opencv://0"
    cfg_file.write_text('[rig]\nfile = "missing.toml"\n')
    with pytest.raises(configmod.ConfigError, match="rig.file: .*no such rig file"):
        configmod.load(cfg_file)


def test_the_demo_key_is_fine_on_emulators_but_not_on_a_real_reader():
    assert configmod.from_dict({}, rig=str(DEFAULT_RIG)).devices["card_reader"] == "ict3q8+emu://"
    with pytest.raises(configmod.ConfigError, match="demo key"):
        configmod.from_dict({"devices": {"card_reader": "ict3q8:///dev/ttyUSB1"}})
    assert configmod.from_dict({**SECRET, "devices": {"card_reader": "ict3q8:///dev/ttyUSB1"}})


def test_a_bad_driver_option_is_a_config_error_naming_the_device():
    cfg = configmod.from_dict({"devices": {"dispenser": "lcdm2000+emu://?baud=fast"}})
    with pytest.raises(configmod.ConfigError, match="devices.dispenser: .*baud='fast' is not a number"):
        Agent(cfg, VirtualClock())


def run_cli(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_status_opens_each_device_of_the_rig_through_its_driver():
    out = run_cli("status", "--rig", "rigs/sim.toml", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["service"] == "in_service" and report["rig"].endswith("rigs/sim.toml")
    dispenser, reader = report["devices"]["dispenser"], report["devices"]["card_reader"]
    assert dispenser["model"] == "LCDM-2000" and dispenser["rom_version"] and dispenser["status"] == "online"
    assert reader["position"] == "none" and reader["status"] == "online"


def test_status_on_a_rig_whose_ports_are_missing_reports_them_offline(tmp_path):
    rig = write_rig(tmp_path, all_sim(dispenser="lcdm2000:///dev/ttyNOPE0", card_reader="ict3q8:///dev/ttyNOPE1"))
    cfg = tmp_path / "atm.toml"
    cfg.write_text('[security]\ncard_key = "00112233445566778899aabbccddeeff"\n')
    out = run_cli("status", "--config", str(cfg), "--rig", str(rig))
    assert out.returncode == 0, out.stderr
    assert "out_of_service" in out.stdout
    lines = [line.split(None, 2) for line in out.stdout.splitlines()]
    assert ["dispenser", "offline", "lcdm2000:///dev/ttyNOPE0"] in lines
    assert ["card_reader", "offline", "ict3q8:///dev/ttyNOPE1"] in lines
    fault = next(line for line in out.stdout.splitlines() if "port_unavailable" in line and "ttyNOPE0" in line)
    assert "cannot open /dev/ttyNOPE0" in fault


def test_demo_refuses_a_rig_with_real_devices(tmp_path):
    rig = write_rig(tmp_path, all_sim(dispenser="lcdm2000:///dev/ttyNOPE0"))
    out = run_cli("demo", "--scenario", "withdrawal", "--rig", str(rig))
    assert out.returncode == 2 and "devices.dispenser is 'lcdm2000:///dev/ttyNOPE0'" in out.stderr


# -- the whole ATM on the emulated rig ------------------------------------------------
def emulated_agent(journal=":memory:"):
    cfg = configmod.from_dict({}, rig=str(DEFAULT_RIG))
    cfg.journal_path = journal
    clock = VirtualClock()
    return Agent(cfg, clock, Recorder(clock))


def play(agent, visits, setup=None, epilogue=None):
    run = ScenarioRun(Scenario("t", "", list(visits), check=lambda r: [], setup=setup, epilogue=epilogue), agent)
    assert run.run() == []
    return run


def test_power_loss_mid_withdrawal_is_reconciled_from_the_exit_count(tmp_path):
    agent = emulated_agent(str(tmp_path / "journal.db"))
    dispenser = agent.devices["dispenser"]
    emulator = dispenser.emulator

    def cut_power(agent):
        emulator.power_loss(after=2)  # two of the three notes reach the exit

    def engineer(agent):
        emulator.power_on()
        counted = emulator.snapshot()["counts"]
        agent.replenish(
            [
                configmod.Cassette("A", 10_000, counted["upper"], low=50),
                configmod.Cassette("B", 1_000, counted["lower"], low=100),
            ]
        )

    run = play(
        agent,
        [Visit("withdrawal", amount=30_000), Visit("balance", card="domestic2")],
        setup=cut_power,
        epilogue=engineer,
    )
    sessions = run.sessions()
    assert [s["outcome"] for s in sessions] == ["dispense_uncertain", "completed"]
    outcome = [e for e in agent.journal.entries(kind="outcome") if e.name == "dispense"][0]
    assert outcome.data["reconcile"] == "required" and outcome.data["picked"] == {}
    # between the power cut and the count, no withdrawal was offered
    menus = [
        r["fields"]["options"]
        for r in agent.recorder.of_type("device")
        if r.get("event") == "screen" and r.get("screen") == "menu"
    ]
    assert "withdrawal" not in menus[-1]
    snap = emulator.snapshot()
    assert 500 - snap["counts"]["upper"] == snap["delivered"] == 2  # the exit count is what left
    assert not agent.journal.counts_unreconciled()  # the engineer's count closed it
    assert dispenser.cassette("A").count == 498 and "count_unknown" not in dispenser.faults
    accuracy = [{c["accuracy"] for c in m["cassettes"]} for m in run.telemetry("cash")]
    assert {"unknown"} in accuracy and accuracy[-1] == {"accurate"}  # flagged until the count
    agent.stop()


def test_a_dispenser_answering_garbage_takes_withdrawals_out_and_keeps_the_counts():
    agent = emulated_agent()
    run = play(
        agent,
        [Visit("withdrawal"), Visit("balance", card="domestic2")],
        setup=lambda a: a.devices["dispenser"].inject("garbled"),
    )
    assert [s["outcome"] for s in run.sessions()] == ["dispense_uncertain", "completed"]
    faults = [(f["code"], f["state"]) for f in run.telemetry("fault") if f["device"] == "dispenser"]
    assert ("bad_reply", "raised") in faults and ("count_unknown", "raised") in faults
    assert agent.devices["dispenser"].cassette("A").count == 500  # unknown, so never guessed
    assert "withdrawal" not in agent.atm.functions and "balance" in agent.atm.functions
    agent.stop()


def test_no_card_number_in_any_output_of_a_traced_emulated_run(tmp_path):
    rig = write_rig(
        tmp_path,
        {
            **load_rig(DEFAULT_RIG).devices,
            "card_reader": "ict3q8+emu://?trace=1",
            "dispenser": "lcdm2000+emu://?trace=1",
        },
    )
    journal = tmp_path / "j.db"
    out = run_cli("-v", "demo", "--scenario", "withdrawal", "--rig", str(rig), "--journal", str(journal))
    assert out.returncode == 0, out.stderr[-2000:]
    # 3 notes from the upper cassette
    assert "ICT3Q8 > f2" in out.stderr and "LCDM-2000 > 04 50 02 45 30 33" in out.stderr
    blob = out.stdout + out.stderr + journal.read_bytes().decode("latin-1")
    for pan in RAW_PANS:
        assert pan not in blob and pan.encode().hex(" ") not in blob


def test_a_silent_card_reader_takes_the_atm_out_of_service_and_back():
    agent = emulated_agent()
    reader = agent.devices["card_reader"]

    def silence(agent):
        reader.inject("silent")

    def repaired(agent):
        reader.remove("silent")
        agent.maintenance("card_reader")

    run = play(agent, [], setup=silence, epilogue=repaired)
    services = [s["service"] for s in run.telemetry("status")]
    faults = [(f["code"], f["state"]) for f in run.telemetry("fault") if f["device"] == "card_reader"]
    assert ("no_response", "raised") in faults and ("no_response", "cleared") in faults
    assert "out_of_service" in services and services[-1] == "in_service"
    agent.stop()
