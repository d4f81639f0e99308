"""The `atm` command as a user runs it: a child process, its output and exit code."""

import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from agent.scenarios import SCENARIOS
from tests.helpers import RAW_PANS

ATM = os.path.join(os.path.dirname(sys.executable), "atm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_TYPES = {"state", "device", "card", "prompt", "video", "telemetry"}


def atm(*args, timeout=60):
    return subprocess.run([ATM, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("rig", ["rigs/sim.toml", pytest.param("rigs/pcsc.toml", marks=pytest.mark.pcscd)])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_demo_json_is_one_typed_object_per_line_and_never_shows_a_card_number(name, rig, tmp_path):
    journal = tmp_path / "journal.db"
    proc = atm("demo", "--scenario", name, "--json", "--journal", str(journal), "--rig", os.path.join(ROOT, rig))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records and {r["type"] for r in records} <= JSON_TYPES
    assert {"state", "device", "telemetry"} <= {r["type"] for r in records}
    masked = [r for r in records if r["type"] == "state"]
    assert masked[0]["state"] == "idle"
    raw_journal = journal.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("journal.db-*"))
    for pan in RAW_PANS:
        assert pan not in proc.stdout and pan not in proc.stderr
        assert pan.encode() not in raw_journal
    if name in ("withdrawal", "balance"):
        assert b'"last4":"0015"' in raw_journal and b"499999" not in raw_journal


def test_demo_human_output_ends_with_a_verdict():
    proc = atm("demo", "--scenario", "forgotten-card")
    assert proc.returncode == 0, proc.stderr
    assert "forgotten_card [ja]" in proc.stdout
    assert proc.stdout.rstrip().endswith("scenario forgotten-card: ended as scripted")


def test_unknown_scenario_is_one_line_and_non_zero():
    proc = atm("demo", "--scenario", "bank-robbery")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown scenario 'bank-robbery'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "text, field",
    [
        ("[timeouts]\nidle_help = -1\n", "timeouts.idle_help"),
        ("[devices]\ndispenser = 'lcdm9999://x'\n", "devices.dispenser"),
        ("[atm\n", "not valid TOML"),
        ("[[cassettes]]\nid = 'A'\ndenomination = 'ten'\ncount = 1\n", "cassettes[0].denomination"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["demo", "--scenario", "balance"], ["run"]])
def test_bad_config_is_one_line_naming_the_field(tmp_path, text, field, command):
    cfg = tmp_path / "atm.toml"
    cfg.write_text(text)
    proc = atm(*command, "--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and field in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_broker_url_is_one_line():
    proc = atm("demo", "--scenario", "balance", "--mqtt", "http://127.0.0.1:1")
    assert proc.returncode == 2 and "bad broker URL" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_status_reports_devices_service_and_cassettes():
    proc = atm("status", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["service"] == "in_service"
    assert set(report["devices"]) == {
        "card_reader",
        "chip",
        "dispenser",
        "acceptor",
        "proximity",
        "keypad",
        "camera",
        "speaker",
        "display",
    }
    assert all(d["status"] == "online" for d in report["devices"].values())
    assert [c["count"] for c in report["cassettes"]] == [500, 1000]
    human = atm("status")
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0].startswith("ATM atm-0001 (not running; devices opened by this command): in_service")
    assert lines[-3].split() == ["cassette", "denomination", "count", "status", "low", "empty", "accuracy"]
    assert lines[-2].split() == ["A", "10000", "500", "ok", "50", "0", "accurate"]


def test_a_camera_that_did_not_open_is_offline_and_opencv_stays_quiet(tmp_path):
    config = tmp_path / "atm.toml"
    config.write_text('[devices]\ncamera = "opencv://97"\n')
    proc = atm("status", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    camera = json.loads(proc.stdout)["devices"]["camera"]
    assert camera["status"] == "offline"
    assert [f["code"] for f in camera["faults"]] == ["offline"]
    assert "WARN" not in proc.stderr and "VIDEOIO" not in proc.stderr, proc.stderr


def test_status_reads_the_cash_counts_from_the_journal(tmp_path):
    journal = tmp_path / "j.db"
    cfg = tmp_path / "atm.toml"
    cfg.write_text(f"[journal]\npath = '{journal}'\n")
    assert atm("demo", "--scenario", "withdrawal", "--config", str(cfg)).returncode == 0
    report = json.loads(atm("status", "--json", "--config", str(cfg)).stdout)
    assert report["cassettes"][0]["count"] == 497


def test_run_serves_simulated_customers_and_stops_cleanly_on_sigterm(tmp_path):
    cfg = tmp_path / "atm.toml"
    cfg.write_text(f"[journal]\npath = '{tmp_path / 'j.db'}'\n")
    proc = subprocess.Popen(
        [ATM, "run", "--config", str(cfg), "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    deadline = time.monotonic() + 30
    try:
        for line in proc.stdout:
            lines.append(line)
            if "card_inserted" in line or time.monotonic() > deadline:
                break
        assert any(line.startswith("ready:") for line in lines), lines
        assert any("card_inserted" in line for line in lines), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.rstrip().endswith("stopped")
    assert "Traceback" not in err
    for pan in RAW_PANS:
        assert pan not in "".join(lines) + out + err


def test_corrupt_or_unwritable_journal_is_one_line(tmp_path):
    bad = tmp_path / "j.db"
    bad.write_bytes(b"this is not a database" * 100)
    proc = atm("demo", "--scenario", "balance", "--journal", str(bad))
    assert proc.returncode == 2 and proc.stderr.startswith("atm: error: journal:")
    assert proc.stderr.count("\n") == 1
    proc = atm("demo", "--scenario", "balance", "--journal", str(tmp_path / "missing" / "j.db"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_run_refuses_a_bad_duration():
    for bad in ("inf", "nan", "-1", "soon"):
        proc = atm("run", "--duration", bad)
        assert proc.returncode == 2 and "not a number of seconds" in proc.stderr


def test_demo_refuses_a_rig_that_is_not_simulated(tmp_path):
    cfg = tmp_path / "atm.toml"
    cfg.write_text("[devices]\nkeypad = 'terminal://'\n")
    proc = atm("demo", "--scenario", "balance", "--config", str(cfg))
    assert proc.returncode == 2 and "devices.keypad" in proc.stderr


def test_help_lists_every_scenario():
    proc = atm("demo", "--help")
    assert proc.returncode == 0
    for name in SCENARIOS:
        assert name in proc.stdout.replace("\n", " ").replace("  ", "")


# -- kiosk mode: simulated customers only on simulated devices --------------------------
def _kiosk_config(tmp_path) -> str:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        '[security]\ncard_key = "00112233445566778899aabbccddeeff"\n'
        f'[rig]\nfile = "{os.path.join(ROOT, "rigs", "pi-kiosk.toml")}"\n'
    )
    return str(config)


def test_a_rig_with_real_devices_starts_cleanly_and_waits_for_real_people(tmp_path):
    env_free = atm("run", "--config", _kiosk_config(tmp_path), "--journal", str(tmp_path / "j.db"), "--duration", "3")
    assert env_free.returncode == 0, env_free.stderr
    assert "customers: none: real card_reader, keypad, dispenser; waiting for real people" in env_free.stdout
    assert "Traceback" not in env_free.stdout + env_free.stderr
    assert "card_inserted" not in env_free.stdout and "ERROR" not in env_free.stderr, env_free.stderr


def test_simulated_customers_on_real_devices_are_refused_in_one_line(tmp_path):
    proc = atm("run", "--customers", "--config", _kiosk_config(tmp_path), "--journal", str(tmp_path / "j.db"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "atm: error: --customers: devices.card_reader is 'ict3q8:///dev/atm/card_reader?baud=38400', a real device;"
        " simulated customers act only through simulated or emulated devices"
    ]
    assert not (tmp_path / "j.db").exists()


# -- the journal atm run keeps ---------------------------------------------------------
def test_run_keeps_a_persistent_journal_by_default_and_says_where(tmp_path):
    atm_id = f"atm-test-{os.getpid()}"  # its own folder under var/, removed after
    folder = os.path.join(ROOT, "var", atm_id)
    config = tmp_path / "atm.toml"
    config.write_text(f'[atm]\nid = "{atm_id}"\n')
    try:
        first = atm("run", "--config", str(config), "--no-customers", "--duration", "1")
        assert first.returncode == 0, first.stderr
        assert f"journal: {folder}/journal.db" in first.stdout.splitlines()
        with sqlite3.connect(os.path.join(folder, "journal.db")) as db:  # the counts outlive the agent
            assert db.execute("SELECT count(*) FROM cassettes").fetchone()[0] == 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_journal_in_a_folder_that_does_not_exist_is_refused_and_not_made(tmp_path):
    missing = tmp_path / "typo" / "j.db"
    proc = atm("run", "--journal", str(missing), "--no-customers", "--duration", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"atm: error: journal {missing}: the folder {missing.parent} does not exist (make it, or name another file)"
    ]
    assert not missing.parent.exists()


def test_an_in_memory_journal_is_asked_for_explicitly():
    proc = atm("run", "--journal", ":memory:", "--no-customers", "--duration", "1")
    assert proc.returncode == 0, proc.stderr
    assert "journal: :memory:" in proc.stdout.splitlines()


# -- make run: a local broker, and the line to watch it --------------------------------
@pytest.mark.mosquitto
def test_run_with_a_local_broker_prints_the_line_to_watch_it_and_stops_it(tmp_path):
    proc = subprocess.Popen(
        [ATM, "run", "--local-broker", "--journal", str(tmp_path / "j.db"), "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = None
    try:
        watch = next(line for line in proc.stdout if line.startswith("watch: "))
        command = watch.split("   ")[0].removeprefix("watch: ").strip()
        assert command.startswith("mosquitto_sub -h 127.0.0.1 -p ")
        port = int(command.split(" -p ")[1].split()[0])
        watcher = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # the agent's own lines, until a customer's session has ended
            if '"event":"session"' in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert watcher is not None
    watcher.terminate()  # mosquitto_sub would wait for the broker to come back
    out, _ = watcher.communicate(timeout=10)
    seen = [line.split(" ", 1)[0] for line in out.splitlines()]
    assert {"atm/v1/atm-0001/birth", "atm/v1/atm-0001/status", "atm/v1/atm-0001/event"} <= set(seen), seen
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


@pytest.mark.mosquitto
def test_the_local_broker_dies_with_an_agent_killed_by_sigkill(tmp_path):
    proc = subprocess.Popen(
        [ATM, "run", "--local-broker", "--no-customers", "--journal", str(tmp_path / "j.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        watch = next(line for line in proc.stdout if line.startswith("watch: "))
        port = int(watch.split(" -p ")[1].split()[0])
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        proc.kill()
        proc.communicate(timeout=10)

    def closed() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) != 0

    deadline = time.monotonic() + 5
    while not closed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed(), "the broker outlived its agent"
