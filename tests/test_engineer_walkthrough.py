"""A field engineer's visit, end to end, with the CLI alone: a dispenser jams during a
customer's withdrawal on the sim rig (the real LCDM-2000 driver on its emulator); the
engineer finds it, takes the ATM out of service, clears it, tests it and puts it back."""

import json

import pytest

from hw_mocks.servers.wait import wait_for
from tests.helpers import RAW_PANS
from tests.running import AtmRun

pytestmark = pytest.mark.timeout(300)


def wait(what, check, timeout=90.0):
    return wait_for(check, timeout=timeout, interval=0.2, message=what)


def fault_codes(status: dict, device: str) -> list[str]:
    return [f["code"] for f in status["devices"][device]["faults"]]


def test_a_jam_found_cleared_tested_and_the_next_withdrawal_pays(tmp_path):
    run = AtmRun(tmp_path, {"card_reader": "ict3q8+emu://", "dispenser": "lcdm2000+emu://?fault=jam"})
    run.start("--customers", "--seed", "11")
    outputs = []

    def ask(*args):
        proc = run.ask(*args)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def status():
        return json.loads(ask("status", "--json"))

    try:
        # 1. A customer's withdrawal jams; the engineer looks.
        wait("jam", lambda: "jam" in fault_codes(status(), "dispenser"))
        report = status()
        assert "withdrawal" not in report["functions"]
        (jam,) = [f for f in report["devices"]["dispenser"]["faults"] if f["code"] == "jam"]
        text = ask("status")
        jam_line = next(line for line in text.splitlines() if "  jam" in line)
        assert jam["message"] in jam_line and "atm exercise dispenser reset" in jam_line
        active = json.loads(ask("faults", "--active", "--json"))["faults"]
        assert [(f["device"], f["code"], f["action"]) for f in active if f["code"] == "jam"] == [
            ("dispenser", "jam", "reset")
        ]
        trace = ask("trace", "dispenser", "--lines", "50")
        assert "jam" in trace.lower() or "error" in trace.lower()  # the reply that said so, decoded

        # 2. Out of service (after the customer's session), then clear it by hand.
        ask("service", "out", "--reason", "dispenser jam", "--engineer", "Suzuki")
        wait("out of service", lambda: (s := status())["state"] == "out_of_service" and s["session"] is None)
        ask("emulator", "dispenser", "clear-jam")  # the notes taken out of the transport by hand
        purge = ask("exercise", "dispenser", "purge", "--engineer", "Suzuki")
        reset = ask("exercise", "dispenser", "reset", "--engineer", "Suzuki")
        assert purge.strip() == "dispenser purge: done" and "online" in reset
        count = {c["id"]: c["count"] for c in status()["cassettes"]}["A"]
        tested = ask("exercise", "dispenser", "test-dispense", "--cassette", "A", "--notes", "1")
        assert tested.strip() == (
            f"dispenser test-dispense: 1 notes from cassette A into the reject bin; cassette A now holds {count - 1}"
        )
        after = status()
        assert "jam" not in fault_codes(after, "dispenser") and after["devices"]["dispenser"]["status"] == "online"
        assert not [f for f in json.loads(ask("faults", "--active", "--json"))["faults"] if f["code"] == "jam"]

        # 3. Back in service: the next withdrawal pays out.
        ask("service", "in", "--engineer", "Suzuki")
        assert "withdrawal" in status()["functions"]
        back = max(seq for seq, *_ in run.rows())
        wait(
            "paid withdrawal",
            lambda: any(
                d["function"] == "withdrawal" and d["outcome"] == "completed" and d["notes_dispensed"]
                for seq, _, _, d in run.rows("event", "session_end")
                if seq > back
            ),
        )
    finally:
        assert run.stop() == 0
    jams = [(d["code"], d["state"]) for _, _, _, d in run.rows("fault") if d["code"] == "jam"]
    assert jams == [("jam", "raised"), ("jam", "cleared")]  # once per occurrence, cleared once
    done = [d for _, _, _, d in run.rows("event", "remote_command") if d["command"] == "exercise"]
    assert [d["args"]["action"] for d in done] == ["purge", "reset", "test-dispense"]
    assert all(d["engineer"].startswith("Suzuki") for d in done[:2])
    everything = "\n".join(outputs) + json.dumps([d for *_, d in run.rows()])
    assert not any(pan in everything for pan in RAW_PANS)


def test_the_emulator_console_is_for_emulated_devices_of_a_running_agent(tmp_path):
    from tests.running import one_line_refusal

    run = AtmRun(tmp_path, {"dispenser": "lcdm2000+emu://"})
    one_line_refusal(run.ask("emulator", "dispenser", "status"), "no agent is running", "atm emulate")
    run.start("--no-customers")
    try:
        state = json.loads(json.loads(run.ask("emulator", "dispenser", "status", "--json").stdout)["answer"])
        assert state["counts"] == {"upper": 500, "lower": 1000} and state["jam"] is None
        one_line_refusal(run.ask("emulator", "chip", "status"), "devices.chip (sim://) is not emulated")
        one_line_refusal(run.ask("emulator", "dispenser", "explode"), "unknown command 'explode'")
        one_line_refusal(run.ask("emulator", "toaster", "status"), "device", "toaster")
        assert run.ask("emulator", "dispenser", "fault", "cassette_removed_upper").returncode == 0
        wait("cassette_missing", lambda: "cassette_missing" in fault_codes(run.json("status"), "dispenser"))
    finally:
        assert run.stop() == 0
    asked = [
        (d["command"], d["ok"]) for _, _, _, d in run.rows("event", "remote_command") if d["command"] == "emulator"
    ]
    assert asked == [
        ("emulator", True),
        ("emulator", False),
        ("emulator", False),
        ("emulator", False),
        ("emulator", True),
    ]
