"""`atm exercise DEVICE ACTION` as a field engineer types it, against `atm run --no-customers` on
the sim rig (the real LCDM-2000 and ICT3Q8 drivers on their emulators)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

import cv2
import pytest

from agent.mqtt.commands import Request
from agent.remote import CommandHandler
from fsm import exercise as ex
from fsm.engineer_gate import IN_SESSION
from fsm.states import State
from tests.helpers import RAW_PANS, make_agent

ATM = os.path.join(os.path.dirname(sys.executable), "atm")


def atm(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([ATM, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """One `atm run` for the module, held out of service; yields (config, journal)."""
    tmp = tmp_path_factory.mktemp("exercise")
    folder = tempfile.mkdtemp(prefix="atm-ex-")  # a short socket path
    journal = tmp / "j.db"
    config = tmp / "atm.toml"
    config.write_text(f'[journal]\npath = "{journal}"\n[control]\nsocket = "{folder}/control.sock"\n')
    command = [ATM, "run", "--config", str(config), "--no-customers"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("ready:"):
                break
        held = atm("service", "out", "--reason", "exercises", "--config", str(config))
        assert held.returncode == 0, held.stderr
        yield str(config), str(journal)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


def exercise(agent, *args, engineer=None):
    config, _journal = agent
    extra = ["--engineer", engineer] if engineer else []
    return atm("exercise", *args, "--config", config, *extra)


def as_json(agent, *args, engineer=None):
    proc = exercise(agent, *args, "--json", engineer=engineer)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def rows(journal, *names):
    with sqlite3.connect(journal) as db:
        found = db.execute("SELECT kind, name, data FROM entries ORDER BY seq").fetchall()
    return [(kind, name, json.loads(data)) for kind, name, data in found if not names or name in names]


def last_exercise(journal):
    return [data for kind, name, data in rows(journal, "remote_command") if data["command"] == "exercise"][-1]


def one_line_refusal(proc, *words):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("atm: error: "), proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def cassette(report, cid):
    return next(c for c in report["cassettes"] if c["id"] == cid)


def status(agent):
    config, _journal = agent
    return json.loads(atm("status", "--json", "--config", config).stdout)


# -- refusals -------------------------------------------------------------------------
def test_refused_while_the_atm_is_in_service(agent):
    config, journal = agent
    assert atm("service", "in", "--config", config).returncode == 0
    try:
        before = cassette(status(agent), "A")["count"]
        proc = exercise(agent, "dispenser", "test-dispense", "--cassette", "A", "--notes", "2")
        one_line_refusal(proc, "take the ATM out of service first (atm service out)", "not_permitted")
        assert cassette(status(agent), "A")["count"] == before
        row = last_exercise(journal)
        assert (row["ok"], row["error"]) == (False, "not_permitted") and "outcome" not in row
    finally:
        assert atm("service", "out", "--config", config).returncode == 0


def test_refused_during_a_customer_session_on_the_loop():
    """At the loop, on the virtual clock: held, but a customer is entering a PIN."""
    sim = make_agent()
    sim.start()
    sim.loop.run_until_idle(max_time=sim.clock.now() + 5)
    answers: list[dict] = []
    operator = sim.atm.operator
    operator.remote_command("out_of_service", {}, answers.append, {"transport": "control", "engineer": "Sato"})
    sim.atm.machine.set_state(State.PIN_ENTRY.value)
    operator.remote_command("exercise", {"device": "dispenser", "action": "purge"}, answers.append, {})
    assert answers[-1] == {"ok": False, "command": "exercise", "error": "not_permitted", "reason": IN_SESSION}
    sim.atm.machine.set_state(State.OUT_OF_SERVICE.value)
    operator.remote_command("exercise", {"device": "card_reader", "action": "led", "colour": "red"}, answers.append, {})
    sim.loop.run_until_idle(max_time=sim.clock.now() + 1)
    assert answers[-1]["outcome"] == {"done": True, "led": "red"}
    sim.stop()


def test_the_monitoring_centre_may_not_exercise_a_device():
    posted, answers = [], []
    handler = CommandHandler(posted.append, lambda: None)
    body = json.dumps({"device": "dispenser", "action": "purge"}).encode()
    handler(Request("exercise", body, answers.append, transport="mqtt"))
    assert answers[0]["error"] == "not_permitted" and "control socket" in answers[0]["reason"]
    assert [type(e).__name__ for e in posted] == ["RemoteAudit"]  # journalled as refused, never run


@pytest.mark.parametrize(
    "args, words",
    [
        (["toaster", "eject"], ["'toaster'", "card_reader"]),
        (["dispenser", "explode"], ["'explode'", "test-dispense"]),
        (["dispenser", "test-dispense", "--cassette", "A", "--notes", "0"], ["notes", "0 is outside 1..20"]),
        (["dispenser", "test-dispense", "--cassette", "A", "--notes", "100"], ["notes", "100"]),
        (["dispenser", "test-dispense", "--cassette", "A", "--notes", "two"], ["--notes", "'two'"]),
        (["dispenser", "test-dispense", "--notes", "2"], ["cassette", "needs it"]),
        (["dispenser", "test-dispense", "--cassette", "Z", "--notes", "2"], ["'Z' is not a cassette", "A, B"]),
        (["card_reader", "led", "purple"], ["colour", "orange"]),
        (["card_reader", "led"], ["colour", "needs it"]),
        (["card_reader", "eject", "green"], ["'green'"]),
        (["proximity", "readings", "--seconds", "61"], ["seconds", "61"]),
        (["speaker", "play", "--prompt", "no_such_prompt"], ["'no_such_prompt' is not a prompt"]),
        (["speaker", "play", "--prompt", "welcome", "--language", "fr"], ["'fr' is not a language"]),
        (["display", "show", "--screen", "nonsense"], ["screen", "welcome"]),
        (["camera", "snapshot"], ["path", "needs it"]),
        (["chip", "read", "--notes", "2"], ["chip read takes no notes"]),
        (["card_reader", "led", "green", "--engineer", ""], ["--engineer"]),
    ],
)
def test_bad_arguments_are_one_line_and_nothing_is_done(agent, args, words):
    _config, journal = agent

    def done():  # device commands, and exercises answered with an outcome
        moved = [r for r in rows(journal) if r[0] in ("intent", "outcome")]
        return moved, [d for _k, _n, d in rows(journal, "remote_command") if "outcome" in d]

    before = done()
    one_line_refusal(exercise(agent, *args), *words)
    assert done() == before


@pytest.mark.parametrize(
    "name, problem",
    [
        ("relative.png", "not an absolute path"),
        ("/no/such/folder/x.png", "does not exist"),
        ("{tmp}/x.txt", "must end in .png"),
        ("{tmp}/taken.png", "exists already"),
    ],
)
def test_a_snapshot_path_the_agent_may_not_write_is_refused(agent, tmp_path, name, problem):
    (tmp_path / "taken.png").write_bytes(b"keep me")
    path = name.format(tmp=tmp_path)
    if not os.path.isabs(path):  # the CLI makes it absolute; the agent checks it again
        assert ex.snapshot_path_problem(path) == f"path: {path!r} is not an absolute path"
        return
    one_line_refusal(exercise(agent, "camera", "snapshot", "-o", path), problem)
    assert (tmp_path / "taken.png").read_bytes() == b"keep me"


# -- the actions ------------------------------------------------------------------------
def test_test_dispense_moves_notes_from_the_cassette_into_rejected(agent):
    config, journal = agent
    before = json.loads(atm("counters", "--journal", journal, "--json").stdout)
    count = cassette(status(agent), "A")["count"]
    code, answer = as_json(agent, "dispenser", "test-dispense", "--cassette", "A", "--notes", "2", engineer="Tanaka")
    assert code == 0 and answer["outcome"]["rejected"] == {"A": 2} and answer["outcome"]["count"] == count - 2
    assert cassette(status(agent), "A")["count"] == count - 2
    after = json.loads(atm("counters", "--journal", journal, "--json").stdout)
    a_before, a_after = cassette(before, "A"), cassette(after, "A")
    assert (a_after["rejected"] - a_before["rejected"], a_after["count"]) == (2, count - 2)
    assert a_after["presented"] == a_before["presented"] and cassette(after, "B") == cassette(before, "B")
    dispenser = (before["devices"]["dispenser"], after["devices"]["dispenser"])
    assert dispenser[1]["notes_rejected"] - dispenser[0]["notes_rejected"] == 2
    assert dispenser[1]["dispenses"] == dispenser[0]["dispenses"]  # not a customer's dispense
    (intent, outcome) = [(k, d) for k, _n, d in rows(journal, "test_dispense")][-2:]
    assert intent == ("intent", {"plan": {"A": 2}, "counts": {"A": count, "B": 1000}, "exercise": True})
    assert outcome[0] == "outcome" and outcome[1]["picked"] == {"A": 2} and outcome[1]["ok"] is True
    row = last_exercise(journal)
    assert row["engineer"] == f"Tanaka (uid {os.getuid()})" and row["outcome"]["rejected"] == {"A": 2}
    human = exercise(agent, "dispenser", "test-dispense", "--cassette", "B", "--notes", "1")
    assert human.stdout.strip() == (
        "dispenser test-dispense: 1 notes from cassette B into the reject bin; cassette B now holds 999"
    )


def test_purge_and_reset(agent):
    _config, journal = agent
    purge = exercise(agent, "dispenser", "purge")
    assert purge.returncode == 0 and purge.stdout.strip() == "dispenser purge: done", purge.stderr
    assert [k for k, _n, _d in rows(journal, "exercise_purge")][-2:] == ["intent", "outcome"]
    reset = exercise(agent, "dispenser", "reset")
    assert reset.stdout.strip() == "dispenser reset: done, the dispenser is online", reset.stderr
    assert last_exercise(journal)["outcome"] == {"done": True, "status": "online"}


def test_card_reader_led_and_eject(agent):
    _config, journal = agent
    led = exercise(agent, "card_reader", "led", "orange", engineer="Sato")
    assert led.returncode == 0 and led.stdout.strip() == "card_reader led: the LED is orange", led.stderr
    row = last_exercise(journal)
    assert row["args"]["colour"] == "orange" and row["engineer"].startswith("Sato")
    eject = exercise(agent, "card_reader", "eject")
    assert eject.returncode == 0, eject.stderr
    assert [k for k, _n, _d in rows(journal, "exercise_eject")][-2:] == ["intent", "outcome"]


def test_card_reader_read_without_a_card_says_so(agent):
    code, answer = as_json(agent, "card_reader", "read")
    assert code == 1 and answer["outcome"]["fault"] == "no_card"


def test_speaker_plays_a_prompt_in_japanese(agent):
    code, answer = as_json(agent, "speaker", "play", "--prompt", "welcome", "--language", "ja")
    assert code == 0 and answer["outcome"]["spoken"] is True and answer["outcome"]["seconds"] > 0


def test_display_shows_a_screen_and_plays_the_help_video(agent):
    show = exercise(agent, "display", "show", "--screen", "take_card")
    assert show.returncode == 0 and show.stdout.strip() == "display show: showing take_card (ja)", show.stderr
    code, answer = as_json(agent, "display", "help-video", "--language", "en")
    assert code == 0 and answer["outcome"]["language"] == "en" and answer["outcome"]["video"].endswith(".mp4")


def test_camera_snapshot_writes_a_valid_image(agent, tmp_path):
    path = tmp_path / "snap.png"
    proc = exercise(agent, "camera", "snapshot", "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (48, 64, 3)
    assert proc.stdout.strip() == f"camera snapshot: wrote {path} (64x48, {path.stat().st_size} bytes)"


def test_proximity_readings_for_a_second(agent):
    code, answer = as_json(agent, "proximity", "readings", "--seconds", "1")
    readings = answer["outcome"]["readings"]
    assert code == 0 and len(readings) == 5 and all(r["present"] is False for r in readings)
    assert readings[0]["t"] == 0.0 and 0.9 <= readings[-1]["t"] <= 1.5


def test_chip_read_without_a_card_is_a_clear_answer_and_no_card_number_anywhere(agent):
    _config, journal = agent
    proc = exercise(agent, "chip", "read")
    assert proc.returncode == 1 and proc.stdout.strip() == "chip read: not done: no card at the contacts (no_card)"
    with sqlite3.connect(journal) as db:
        everything = "\n".join(d for (d,) in db.execute("SELECT data FROM entries"))
    for pan in RAW_PANS:
        assert pan not in proc.stdout + proc.stderr and pan not in everything


# -- without an agent ---------------------------------------------------------------------
@pytest.fixture
def stopped(tmp_path):
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n')
    return str(config), str(tmp_path / "j.db")


def test_without_an_agent_a_signal_opens_the_device_itself_and_is_journalled(stopped):
    from agent.journal import Journal
    from fsm.clock import VirtualClock

    missing = exercise(stopped, "card_reader", "led", "green")
    one_line_refusal(missing, "no such file")  # a mistyped journal is refused, never made
    assert not os.path.exists(stopped[1])
    Journal(stopped[1], VirtualClock()).close()  # an agent ran here once
    proc = exercise(stopped, "card_reader", "led", "green", engineer="Sato")
    assert proc.returncode == 0 and proc.stdout.strip() == "card_reader led: the LED is green", proc.stderr
    row = last_exercise(stopped[1])
    assert (row["transport"], row["engineer"], row["outcome"]) == ("direct", "Sato", {"done": True, "led": "green"})


def test_without_an_agent_what_moves_notes_or_cards_needs_it(stopped):
    for args in (["dispenser", "test-dispense", "--cassette", "A", "--notes", "2"], ["card_reader", "eject"]):
        one_line_refusal(exercise(stopped, *args), "needs the running agent", "atm service out")
    assert not os.path.exists(stopped[1])  # nothing opened, nothing journalled


def test_without_an_agent_an_interrupted_journal_is_refused(stopped):
    from agent.journal import Journal
    from fsm.clock import VirtualClock

    journal = Journal(stopped[1], VirtualClock())
    journal.intent("atm-0001-1", "dispense", plan={"A": 1})
    journal.close()
    one_line_refusal(exercise(stopped, "chip", "read"), "interrupted", "atm run")
    assert [k for k, _n, _d in rows(stopped[1])] == ["intent"]
