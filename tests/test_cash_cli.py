"""`atm status` (live), `atm cash replenish` and `atm cash reconcile`, as an engineer types them."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from agent.mqtt.commands import Request
from agent.remote import CommandHandler
from tests.helpers import RAW_PANS, make_agent
from tests.running import AtmRun, atm, one_line_refusal
from tests.test_schemas import assert_valid

pytestmark = pytest.mark.timeout(240)

SIM = {"card_reader": "ict3q8+emu://", "dispenser": "lcdm2000+emu://"}


@pytest.fixture
def agent(tmp_path):
    run = AtmRun(tmp_path, SIM).start("--no-customers")
    yield run
    assert run.stop() == 0


def counts(run) -> dict:
    return {c["id"]: c["count"] for c in run.json("cash")["cassettes"]}


def test_live_status_shows_session_link_uptime_versions_and_what_to_do_about_a_fault(tmp_path):
    removed = {**SIM, "dispenser": "lcdm2000+emu://?fault=cassette_removed_upper"}
    run = AtmRun(tmp_path, removed).start("--no-customers", "--local-broker")
    try:
        report = run.json("status")
        assert report["agent"] == "running" and report["session"] is None and report["uptime_s"] >= 0
        answer = {k: v for k, v in report.items() if k != "agent"}  # what the CLI adds
        assert_valid("command-response.schema.json#/$defs/status", answer, "the status answer")
        assert report["versions"]["agent"] and report["versions"]["devices"]["dispenser"]  # its ROM version
        link = report["link"]
        assert link["transport"] == "mqtt" and link["connected"] and link["broker"].startswith("mqtt://127.0.0.1:")
        assert link["backlog"] == 0 and link["last_ack"]  # the birth and the status were acknowledged
        (fault,) = report["devices"]["dispenser"]["faults"]
        assert fault["code"] == "cassette_missing" and fault["message"] and fault["action"] == "maintenance"
        assert [(c["id"], c["low"], c["empty"]) for c in report["cassettes"]] == [("A", 50, 0), ("B", 100, 0)]
        text = run.ask("status").stdout
        lines = text.splitlines()
        assert lines[0].startswith("ATM atm-0001 (running, up ") and "agent " in lines[0]
        assert lines[1] == "session: none"
        assert lines[2].startswith(f"telemetry: connected to {link['broker']}; backlog 0; last ack 20")
        fault_line = next(line for line in lines if "cassette_missing" in line)
        assert fault["message"] in fault_line and "atm trace dispenser" in fault_line
    finally:
        assert run.stop() == 0


def test_replenish_and_reconcile_through_the_agent_are_journalled_and_counted(agent):
    assert agent.ask("service", "out", "--reason", "cash").returncode == 0
    out = agent.ask("cash", "replenish", "A", "--count", "420", "--engineer", "Sato")
    assert out.returncode == 0 and out.stdout.strip() == (
        "cassette A: 500 -> 420 x 10000 (ok); journalled as a replenishment"
    ), out.stderr
    assert counts(agent) == {"A": 420, "B": 1000}
    answer = agent.json("cash", "reconcile", "--counted", "A=418,B=1000")
    assert_valid("command-response.schema.json#/$defs/reconcile", answer, "the reconcile answer")
    replenished = agent.json("cash", "replenish", "B", "--count", "1000")
    assert_valid("command-response.schema.json#/$defs/replenish", replenished, "the replenish answer")
    assert answer["differences"] == [
        {"id": "A", "journal": 420, "counted": 418, "difference": -2},
        {"id": "B", "journal": 1000, "counted": 1000, "difference": 0},
    ]
    assert answer["count_was_unknown"] is False
    assert counts(agent) == {"A": 418, "B": 1000}
    figures = {c["id"]: c for c in agent.json("counters")["cassettes"]}
    assert figures["A"]["initial"] == 418 and figures["A"]["count"] == 418
    (reconcile,) = agent.rows("outcome", "reconcile")
    assert reconcile[3]["differences"][0]["difference"] == -2
    asked = [(d["command"], d["ok"], d.get("engineer")) for _, _, _, d in agent.rows("event", "remote_command")]
    assert ("replenish", True, f"Sato (uid {os.getuid()})") in asked
    assert agent.ask("service", "in").returncode == 0
    assert agent.json("status")["service"] == "in_service"


REFUSALS = [
    (("cash", "replenish", "A", "--count", "10"), ["take the ATM out of service first"], False),
    (("cash", "replenish", "Z", "--count", "10"), ["no cassette 'Z'", "cassettes: A, B"], True),
    (("cash", "replenish", "A", "--count", "10001"), ["count", "outside 0..10000"], True),
    (("cash", "replenish", "A", "--count", "-1"), ["count", "outside"], True),
    (("cash", "replenish", "A"), ["--count N"], True),
    (("cash", "replenish", "A", "--count", "5", "--denomination", "0"), ["denomination"], True),
    (("cash", "replenish", "A", "--count", "5", "--counted", "A=1"), ["--counted goes with"], True),
    (("cash", "reconcile"), ["--counted A=N,B=M"], True),
    (("cash", "reconcile", "--counted", "A=5"), ["count every cassette: B missing"], True),
    (("cash", "reconcile", "--counted", "A=5,B=5,C=5"), ["no cassette 'C'"], True),
    (("cash", "reconcile", "--counted", "A=5,A=6,B=1"), ["named twice"], True),
    (("cash", "reconcile", "--counted", "A=five,B=1"), ["is not CASSETTE=NOTES"], True),
    (("cash", "reconcile", "--counted", "A=5,B=5", "--count", "3"), ["--count goes with"], True),
    (("cash", "reconcile", "--counted", "A=5,B=5", "--engineer", ""), ["--engineer"], True),
    (("cash", "replenish", "A", "--count", "5", "--engineer", "x" * 65), ["--engineer"], True),
    (("cash", "A"), ["invalid choice"], True),
]


def test_cash_refusals_are_one_line_exit_2_and_change_nothing(agent):
    before = counts(agent)
    for args, words, held in REFUSALS:
        if held:
            agent.ask("service", "out")
        proc = agent.ask(*args)
        if "invalid choice" in words:  # argparse's own usage error: exit 2, usage and one line
            assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
        else:
            one_line_refusal(proc, *words)
        agent.ask("service", "in")
    assert counts(agent) == before
    assert not agent.rows("intent", "replenish") and not agent.rows("intent", "reconcile")


def test_replenish_and_reconcile_are_refused_over_mqtt():
    posted, replies = [], []
    handler = CommandHandler(posted.append, lambda: None)
    for name, body in (("replenish", {"cassette": "A", "count": 1}), ("reconcile", {"counted": {"A": 1}})):
        handler(Request(name, json.dumps(body).encode(), replies.append, transport="mqtt", engineer=""))
    assert [(r["ok"], r["error"]) for r in replies] == [(False, "not_permitted")] * 2
    assert all("control socket" in r["reason"] for r in replies)
    assert [(p.command, p.ok, p.error) for p in posted] == [("replenish", False, "not_permitted")] + [
        ("reconcile", False, "not_permitted")
    ]


def test_with_no_agent_running_reconcile_opens_the_journal_itself(tmp_path):
    run = AtmRun(tmp_path, SIM).start("--no-customers")
    assert run.stop() == 0
    done = run.ask("cash", "reconcile", "--counted", "A=499,B=1000", "--engineer", "Ito")
    assert done.returncode == 0, done.stderr
    assert "A             500      499          -1" in done.stdout
    (outcome,) = run.rows("outcome", "reconcile")
    asked = run.rows("event", "remote_command")[-1][3]
    assert (asked["command"], asked["transport"], asked["engineer"]) == ("reconcile", "direct", "Ito")
    assert outcome[3]["after"][0]["count"] == 499
    journalled = [
        ts for (ts,) in sqlite3.connect(run.journal).execute("SELECT ts FROM entries ORDER BY seq DESC LIMIT 3")
    ]
    assert all(ts[:10] == datetime.now(UTC).date().isoformat() for ts in journalled)  # the wall clock's times
    looked = run.json("status")  # no agent: the devices opened here, the journal's counts only read
    assert looked["agent"] == "not running" and looked["counts_from"] == "journal"
    assert {c["id"]: c["count"] for c in looked["cassettes"]} == {"A": 499, "B": 1000}
    holder = subprocess.Popen(  # an agent starting meanwhile: `atm status` never takes the journal's lock
        [sys.executable, "-c", f"from agent.journal import JournalLock; JournalLock({str(run.journal)!r}); input()"],
        stdin=subprocess.PIPE,
    )
    try:
        assert run.ask("status").returncode == 0
    finally:
        holder.communicate(b"\n", timeout=10)
    again = AtmRun(tmp_path, SIM).start("--no-customers")  # the next agent starts from the counted notes
    try:
        assert counts(again) == {"A": 499, "B": 1000}
    finally:
        assert again.stop() == 0
    missing = atm("cash", "reconcile", "--counted", "A=1,B=1", "--journal", str(tmp_path / "none.db"))
    one_line_refusal(missing, "no such file")


def wait_for_dispense_in_flight(run, timeout=60.0) -> int:
    """The seq of a dispense intent with no outcome yet: notes are moving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = _pending_dispense(run)
        if pending is not None:
            return pending
        time.sleep(0.05)
    raise AssertionError("no dispense was in flight")


def _pending_dispense(run) -> int | None:
    if not run.journal.exists():
        return None
    db = sqlite3.connect(f"file:{run.journal}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute(
            "SELECT seq FROM entries i WHERE kind = 'intent' AND name = 'dispense' AND NOT EXISTS"
            " (SELECT 1 FROM entries o WHERE o.kind = 'outcome' AND o.intent = i.seq)"
        ).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def test_kill_9_mid_dispense_then_reconcile_clears_count_unknown_and_a_withdrawal_succeeds(tmp_path):
    slow = AtmRun(tmp_path, {**SIM, "dispenser": "lcdm2000+emu://?note_ms=400"})
    slow.start("--customers", "--seed", "7")
    try:
        wait_for_dispense_in_flight(slow)
    finally:
        slow.kill()
    run = AtmRun(tmp_path, SIM).start("--customers", "--seed", "8")
    try:
        report = run.json("status")
        codes = [f["code"] for f in report["devices"]["dispenser"]["faults"]]
        assert "count_unknown" in codes and "withdrawal" not in report["functions"]
        assert {c["accuracy"] for c in report["cassettes"]} == {"unknown"}
        assert "atm cash reconcile --counted" in run.ask("status").stdout
        assert run.ask("service", "out", "--reason", "count the cassettes").returncode == 0
        one_line_refusal(run.ask("cash", "replenish", "A", "--count", "5"), "count every cassette first")
        journal_counts = {c["id"]: c["count"] for c in report["cassettes"]}
        counted = ",".join(f"{cid}={max(n - 3, 0)}" for cid, n in journal_counts.items())
        answer = run.json("cash", "reconcile", "--counted", counted)
        assert answer["count_was_unknown"] is True
        assert [d["difference"] for d in answer["differences"]] == [-3, -3]
        after = run.json("status")
        assert "count_unknown" not in [f["code"] for f in after["devices"]["dispenser"]["faults"]]
        assert {c["accuracy"] for c in after["cassettes"]} == {"accurate"}
        (reconciled,) = run.rows("outcome", "reconcile")
        assert run.ask("service", "in").returncode == 0
        assert "withdrawal" in run.json("status")["functions"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ends = [d for seq, _, _, d in run.rows("event", "session_end") if seq > reconciled[0]]
            if any(d["function"] == "withdrawal" and d["outcome"] == "completed" for d in ends):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no withdrawal completed after the reconciliation")
    finally:
        assert run.stop() == 0
    text = json.dumps([d for _, _, _, d in run.rows()])
    assert not any(pan in text for pan in RAW_PANS)


def test_counters_reset_goes_through_the_running_agent_and_the_counters_start_again(agent):
    assert agent.ask("service", "out").returncode == 0
    assert agent.ask("cash", "replenish", "A", "--count", "300").returncode == 0
    before = agent.json("counters")
    assert before["reset"] is None
    reset = agent.json("counters", "reset", "--engineer", "Kato")
    assert reset["engineer"] == f"Kato (uid {os.getuid()})" and reset["through"] < reset["seq"]
    assert reset["counts"] == {"A": 300, "B": 1000}
    rows = agent.rows("event", "counters_reset")
    assert [(seq, d["engineer"], d["through"]) for seq, _, _, d in rows] == [
        (reset["seq"], reset["engineer"], reset["through"])
    ]
    assert rows[0][3]["counters"]["devices"] == before["devices"]
    after = agent.json("counters")
    assert after["reset"]["seq"] == reset["seq"] and after["reset"]["engineer"] == reset["engineer"]
    assert {c["id"]: c["initial"] for c in after["cassettes"]} == {"A": 300, "B": 1000}
    asked = agent.rows("event", "remote_command")[-1][3]
    assert (asked["command"], asked["transport"], asked["ok"]) == ("counters_reset", "control", True)


def test_a_counters_reset_of_figures_the_journal_has_moved_past_or_of_made_up_counts_is_refused():
    agent = make_agent()  # the loop's side, on the virtual clock
    counts = {c.id: c.count for c in agent.devices.dispenser.cassettes}
    answers = []
    agent.atm.operator.remote_command(
        "counters_reset", {"through": 0, "counters": {}, "counts": counts}, answers.append
    )
    agent.atm.journal.event(None, "something")
    stale = {"through": 0, "counters": {}, "counts": counts}
    agent.atm.operator.remote_command("counters_reset", stale, answers.append)
    (seq, _) = agent.atm.journal.head()
    made_up = {"through": seq, "counters": {}, "counts": {**counts, "A": 1}}
    agent.atm.operator.remote_command("counters_reset", made_up, answers.append)
    assert answers[0]["ok"] is True and answers[1]["error"] == "journal_moved" and answers[2]["error"] == "bad_field"
    assert [e.name for e in agent.atm.journal.entries(kind="event")].count("counters_reset") == 1
    agent.close()


def test_with_no_agent_running_a_port_another_process_holds_is_refused_in_one_line(tmp_path):
    import fcntl

    from agent.journal import Journal
    from fsm.clock import VirtualClock
    from hw_mocks.ict3q8_emulator import Ict3q8Emulator

    Journal(str(tmp_path / "journal.db"), VirtualClock()).close()
    with Ict3q8Emulator(initialised=True) as emu:
        fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as pyserial's exclusive open takes it
        try:
            secret = '[security]\ncard_key = "00112233445566778899aabbccddeeff"\n'
            run = AtmRun(tmp_path, {"card_reader": f"ict3q8://{emu.port}"}, extra=secret)
            before = run.rows()
            refused = run.ask("exercise", "card_reader", "led", "green")
            one_line_refusal(refused, f"cannot open {emu.port}: in use by another process")
            assert run.rows() == before  # nothing journalled, nothing changed
            assert emu.led == "off"
            status = run.json("status")  # only looks: the port is shown as held, and why
            (fault,) = status["devices"]["card_reader"]["faults"]
            assert (fault["code"], fault["action"]) == ("port_busy", "configuration")
        finally:
            os.close(fd)


def test_live_figures_are_what_the_agent_has_done(tmp_path):
    """After simulated customers: status and counters agree with the journal's own rows."""
    run = AtmRun(tmp_path, SIM).start("--customers", "--seed", "5")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ends = run.rows("event", "session_end")
            if sum(1 for *_, d in ends if d["function"] == "withdrawal" and d["notes_dispensed"]) >= 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no two withdrawals paid out")
        assert run.ask("service", "out").returncode == 0
        while run.json("status")["session"] is not None or run.json("status")["state"] != "out_of_service":
            time.sleep(0.1)
        status, counters = run.json("status"), run.json("counters")
        rows = run.rows()
    finally:
        assert run.stop() == 0
    picked = {"A": 0, "B": 0}
    for _, kind, name, data in rows:
        if kind == "outcome" and name == "dispense":
            for cid, n in data.get("picked", {}).items():
                picked[cid] += n
    assert {c["id"]: c["count"] for c in status["cassettes"]} == {"A": 500 - picked["A"], "B": 1000 - picked["B"]}
    sessions = [d for _, _, name, d in rows if name == "session_end"]
    paid = sum(d["notes_dispensed"] or 0 for d in sessions if d["function"] == "withdrawal")
    dispenser = counters["devices"]["dispenser"]
    assert dispenser["notes_dispensed"] == paid > 0
    assert dispenser["dispenses"] == sum(1 for _, k, n, _ in rows if k == "outcome" and n == "dispense")
    cards = counters["devices"]["card_reader"]
    assert cards["cards_inserted"] >= len(sessions) and cards["cards_retained"] == sum(
        1 for d in sessions if d["card_retained"]
    )
    for c in counters["cassettes"]:  # every note that left a cassette was presented or rejected
        assert (c["initial"] - c["count"], c["unknown"]) == (c["presented"] + c["rejected"], 0), c
        assert c["count"] == status["cassettes"][[x["id"] for x in status["cassettes"]].index(c["id"])]["count"]


def test_a_storm_of_stop_signals_never_hangs_the_agents_main_thread():
    """SIGTERM from systemd and again from an impatient engineer: the handler only sets a flag
    (an Event's set() in a handler could wait forever for the lock its own thread holds in
    wait(): an agent seen hung that way, every thread idle)."""
    code = (
        "import os, signal, threading\n"
        "from agent.cli.run import StopSignal\n"
        "stop = StopSignal()\n"
        "threading.Thread(target=lambda: [os.kill(os.getpid(), signal.SIGTERM) for _ in range(3000)]).start()\n"
        "for _ in range(300):\n"
        "    stop.wait(0.001)\n"
        "    stop.requested = False\n"
        "print('stopped')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "stopped\n", proc.stderr


def test_two_quick_sigterms_stop_atm_run_cleanly(tmp_path):
    import signal

    run = AtmRun(tmp_path, SIM).start("--no-customers")
    run.proc.send_signal(signal.SIGTERM)
    run.proc.send_signal(signal.SIGTERM)
    out, err = run.proc.communicate(timeout=30)
    assert run.proc.returncode == 0 and out.rstrip().endswith("stopped"), err
    run.proc = None
