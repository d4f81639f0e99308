"""`atm journal query` as an investigator types it: windows, cards, sessions, types, formats;
on a history built with chosen times and on one `atm demo` wrote. No card number in any output."""

import csv
import hashlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from agent.journal import Journal, JournalBusy, JournalLock
from agent.journal_query import COLUMNS, KINDS
from devices.carddata import card_token, luhn_ok
from fsm.clock import VirtualClock
from hw_mocks.cards import CARDS

ATM = os.path.join(os.path.dirname(sys.executable), "atm")
KEY_HEX = "00112233445566778899aabbccddeeff"
KEY = bytes.fromhex(KEY_HEX)
DOMESTIC, DOMESTIC2, OVERSEAS = CARDS["domestic"].pan, CARDS["domestic2"].pan, CARDS["overseas"].pan
PANS = [card.pan for card in CARDS.values()]
DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")
QUERY_INDEXES = {"entries_ts", "entries_session", "entries_card_token", "entries_card_last4"}
DAY1, DAY2, DAY3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"


def assert_no_card_number(*texts):
    for text in texts:
        for pan in PANS:
            assert pan not in text
        for run in DIGIT_RUN.findall(text):
            assert not luhn_ok(run), f"a Luhn-valid digit run in the output: {run[:4]}..."


def atm(*args, stdin=None):
    proc = subprocess.run([ATM, *args], capture_output=True, text=True, timeout=60, input=stdin)
    assert_no_card_number(proc.stdout, proc.stderr)
    return proc


def query(journal, *args):
    proc = atm("journal", "query", "--journal", str(journal), *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refused(proc, *words):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("atm: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def seqs(report):
    return sorted([r["seq"] for s in report["sessions"] for r in s["rows"]] + [r["seq"] for r in report["other_rows"]])


def at(clock, iso):
    clock.advance_to((datetime.fromisoformat(iso) - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds())


def card_session(journal, clock, sid, pan, start, function="withdrawal", amount=10_000):
    """card_inserted and card_read at ``start``, chosen 5 s later, session_end 20 s later."""
    at(clock, start)
    journal.step(sid, "card_inserted", camera=None)
    if pan is not None:
        journal.step(sid, "card_read", last4=pan[-4:], token=card_token(pan, KEY), source="chip")
    clock.advance(5)
    journal.step(sid, "chosen", function=function)
    clock.advance(15)
    journal.event(sid, "session_end", session=sid, function=function, outcome="completed", amount=amount)
    journal.flush()


@pytest.fixture
def history(tmp_path):
    """Known rows (seq: time, session, name):
    1-4   S1 domestic, withdrawal: 2026-01-01 09:00:00 .. 09:00:20; 3 is a jam fault of no session at 09:00:05
    5-8   S2 domestic2, balance:   2026-01-01 10:00:00 .. 10:00:20
    9-12  S3 domestic, withdrawal: 2026-01-02 00:00:00.000 (the day's first instant) .. 00:00:20
    13-15 S4 no card read:         2026-01-02 08:00:00 .. 08:00:20
    16-19 S5 overseas, deposit:    2026-01-02 23:59:50 .. 2026-01-03 00:00:10 (across midnight)"""
    path = tmp_path / "journal.db"
    clock = VirtualClock()
    journal = Journal(str(path), clock)
    at(clock, "2026-01-01T09:00:00Z")
    journal.step("atm-0001-000001", "card_inserted", camera=None)
    journal.step("atm-0001-000001", "card_read", last4=DOMESTIC[-4:], token=card_token(DOMESTIC, KEY), source="chip")
    clock.advance(5)
    journal.fault({"device": "dispenser", "code": "jam", "state": "raised", "severity": "error"})
    clock.advance(15)
    journal.event("atm-0001-000001", "session_end", session="atm-0001-000001", function="withdrawal",
                  outcome="completed", amount=10_000)  # fmt: skip
    card_session(journal, clock, "atm-0001-000002", DOMESTIC2, "2026-01-01T10:00:00Z", "balance", 0)
    card_session(journal, clock, "atm-0001-000003", DOMESTIC, "2026-01-02T00:00:00Z")
    card_session(journal, clock, "atm-0001-000004", None, "2026-01-02T08:00:00Z")
    card_session(journal, clock, "atm-0001-000005", OVERSEAS, "2026-01-02T23:59:50Z", "deposit", 23_000)
    journal.close()
    with sqlite3.connect(path) as db:
        got = db.execute("SELECT seq, ts, session, name FROM entries ORDER BY seq").fetchall()
    assert [s for s, *_ in got] == list(range(1, 20)) and got[8][1] == "2026-01-02T00:00:00.000+00:00", got
    return path


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "atm.toml"
    path.write_text(f'[security]\ncard_key = "{KEY_HEX}"\n')
    return path


# -- time windows ---------------------------------------------------------------------
def test_a_window_is_from_inclusive_to_exclusive(history):
    day1 = query(history, "--from", DAY1, "--to", DAY2)
    assert seqs(day1) == list(range(1, 9))  # S3's first rows, at 2026-01-02T00:00:00.000, are not in it
    assert [s["session"] for s in day1["sessions"]] == ["atm-0001-000001", "atm-0001-000002"]
    assert [r["name"] for r in day1["other_rows"]] == ["jam"]
    assert day1["from"] == "2026-01-01T00:00:00.000+00:00" and day1["to"] == "2026-01-02T00:00:00.000+00:00"
    assert day1["matched"] == "rows" and day1["rows"] == 8
    day2 = query(history, "--from", DAY2, "--to", DAY3)
    assert seqs(day2) == list(range(9, 19))  # from S3's first row to S5's rows before midnight (not 19)


def test_a_window_shows_only_its_rows_of_a_session_but_the_whole_sessions_summary(history):
    report = query(history, "--from", "2026-01-02T23:59:55Z", "--to", "2026-01-03T09:00:11+09:00")  # 00:00:11 UTC
    (s5,) = report["sessions"]
    assert [r["seq"] for r in s5["rows"]] == [18, 19]  # chosen at 23:59:55 and session_end at 00:00:10
    assert s5["started"] == "2026-01-02T23:59:50.000+00:00" and s5["last4"] == OVERSEAS[-4:]
    assert (s5["function"], s5["outcome"], s5["amount"]) == ("deposit", "completed", 23_000)


def test_times_round_to_the_journals_milliseconds_and_offsets_are_honoured(history):
    just_after = query(history, "--from", "2026-01-01T09:00:00.0001Z", "--to", "2026-01-01T09:00:05.0001Z")
    assert seqs(just_after) == [3]  # the rows at 09:00:00.000 are before it; the fault at 09:00:05.000 is in
    tokyo = query(history, "--from", "2026-01-01T19:00:00+09:00", "--to", "2026-01-01T19:00:20.001+09:00")
    assert seqs(tokyo) == [5, 6, 7, 8]


def test_to_defaults_to_now(history):
    assert seqs(query(history, "--from", DAY1)) == list(range(1, 20))


# -- by card ----------------------------------------------------------------------------
def test_a_token_gives_every_row_of_its_sessions_and_the_devices_rows_while_they_ran(history):
    report = query(history, "--from", DAY1, "--to", DAY3, "--token", card_token(DOMESTIC, KEY))
    assert report["matched"] == "sessions"
    assert [s["session"] for s in report["sessions"]] == ["atm-0001-000001", "atm-0001-000003"]
    assert [[r["seq"] for r in s["rows"]] for s in report["sessions"]] == [[1, 2, 4], [9, 10, 11, 12]]
    assert [r["seq"] for r in report["other_rows"]] == [3]  # the jam during S1
    assert {s["token"] for s in report["sessions"]} == {card_token(DOMESTIC, KEY)}
    assert report["filters"]["token"] == card_token(DOMESTIC, KEY)


def test_a_card_number_gives_the_same_as_its_token_and_is_never_printed(history, config):
    by_token = query(history, "--from", DAY1, "--to", DAY3, "--token", card_token(DOMESTIC, KEY).upper())
    by_pan = query(history, "--from", DAY1, "--to", DAY3, "--card", DOMESTIC, "--config", str(config))
    assert by_pan == by_token and len(by_pan["sessions"]) == 2
    spaced = " ".join(DOMESTIC[i : i + 4] for i in range(0, 16, 4))
    assert query(history, "--from", DAY1, "--to", DAY3, "--card", spaced, "--config", str(config)) == by_token
    from_stdin = atm("journal", "query", "--journal", str(history), "--from", DAY1, "--to", DAY3, "--card", "-",
                     "--config", str(config), "--json", stdin=DOMESTIC + "\n")  # fmt: skip
    assert from_stdin.returncode == 0 and json.loads(from_stdin.stdout) == by_token


def test_the_card_key_is_the_configs(history, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('[security]\ncard_key = "ffeeddccbbaa99887766554433221100"\n')
    report = query(history, "--from", DAY1, "--to", DAY3, "--card", DOMESTIC, "--config", str(other))
    assert report["sessions"] == [] and report["rows"] == 0


def test_last4_matches_the_card_read_in_the_window_and_shows_the_whole_session(history):
    assert [s["session"] for s in query(history, "--from", DAY1, "--to", DAY3, "--last4", "0023")["sessions"]] == [
        "atm-0001-000002"
    ]
    across = query(history, "--from", DAY2, "--to", DAY3, "--last4", OVERSEAS[-4:])
    assert [r["seq"] for r in across["sessions"][0]["rows"]] == [16, 17, 18, 19]  # 19 is after the window
    after = query(history, "--from", DAY3, "--to", "2026-01-04T00:00Z", "--last4", OVERSEAS[-4:])
    assert after["sessions"] == []  # its card was read before the window


def test_a_session_without_a_card_read_is_never_a_cards(history):
    report = query(history, "--from", DAY1, "--to", DAY3, "--session", "atm-0001-000004")
    (s4,) = report["sessions"]
    assert (s4["token"], s4["last4"]) == (None, None) and [r["seq"] for r in s4["rows"]] == [13, 14, 15]
    for last4 in ("0015", "0023", OVERSEAS[-4:]):
        found = query(history, "--from", DAY1, "--to", DAY3, "--last4", last4)["sessions"]
        assert "atm-0001-000004" not in [s["session"] for s in found]


# -- by session and type ---------------------------------------------------------------
def test_a_session_is_shown_whole_when_any_of_its_rows_is_in_the_window(history):
    report = query(history, "--from", "2026-01-03T00:00Z", "--to", "2026-01-04T00:00Z", "--session",
                   "atm-0001-000005")  # fmt: skip
    assert [r["seq"] for r in report["sessions"][0]["rows"]] == [16, 17, 18, 19]
    assert query(history, "--from", DAY1, "--to", DAY2, "--session", "atm-0001-000005")["sessions"] == []
    both = query(history, "--from", DAY1, "--to", DAY3, "--session", "atm-0001-000003", "--last4", "0015")
    assert [s["session"] for s in both["sessions"]] == ["atm-0001-000003"]


def test_type_is_a_kind_or_a_name(history):
    ends = query(history, "--from", DAY1, "--to", DAY3, "--type", "session_end")
    assert seqs(ends) == [4, 8, 12, 15] and all(len(s["rows"]) == 1 for s in ends["sessions"])
    faults = query(history, "--from", DAY1, "--to", DAY3, "--type", "fault")
    assert seqs(faults) == [3] and faults["sessions"] == []
    events = query(history, "--from", DAY1, "--to", DAY3, "--type", "event", "--token", card_token(DOMESTIC, KEY))
    assert seqs(events) == [4, 12]
    assert query(history, "--from", DAY1, "--to", DAY3, "--type", "card_read", "--last4", "0023")["rows"] == 1


# -- formats ---------------------------------------------------------------------------
def test_csv_has_a_header_and_one_line_a_row_with_its_sessions_card(history):
    proc = atm("journal", "query", "--journal", str(history), "--from", DAY1, "--to", DAY2, "--csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == ["seq", "ts", "session", "kind", "name", "intent", "last4", "token", "data"]
    assert [int(r["seq"]) for r in rows] == list(range(1, 9))
    assert rows[0]["token"] == card_token(DOMESTIC, KEY) and rows[0]["last4"] == DOMESTIC[-4:]
    assert rows[2]["session"] == "" and rows[2]["token"] == "" and json.loads(rows[2]["data"])["code"] == "jam"
    assert json.loads(rows[1]["data"]) == {"last4": "0015", "token": card_token(DOMESTIC, KEY), "source": "chip"}


def test_the_table_names_each_session_with_its_card_and_rows(history):
    proc = atm("journal", "query", "--journal", str(history), "--from", DAY1, "--to", DAY2)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "2 sessions, 8 rows" in lines[0]
    assert any(
        line.startswith("session atm-0001-000001  card ...0015 token " + card_token(DOMESTIC, KEY)) for line in lines
    )
    assert any("withdrawal completed 10000" in line for line in lines)
    assert any(line.startswith("rows of no session") for line in lines)
    empty = atm("journal", "query", "--journal", str(history), "--from", "2025-01-01T00:00Z", "--to", DAY1)
    assert empty.returncode == 0 and "no rows match" in empty.stdout


# -- bad arguments -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "yesterday"], ["--from", "ISO time"]),
        (["--from", DAY2, "--to", DAY1], ["--from", "not before --to"]),
        (["--to", DAY2], ["--from TIME is required"]),
        (["--from", DAY1, "--card", "4999990000000016", "--config", "CONFIG"], ["--card", "Luhn"]),
        (["--from", DAY1, "--card", "4999-9900-0000-0015x", "--config", "CONFIG"], ["--card", "Luhn"]),
        (["--from", DAY1, "--card", DOMESTIC], ["--card needs --config"]),
        (["--from", DAY1, "--card", DOMESTIC, "--token", "a" * 64, "--config", "CONFIG"], ["give one of"]),
        (["--from", DAY1, "--token", "xyz"], ["--token", "64 hex"]),
        (["--from", DAY1, "--last4", "12a4"], ["--last4", "4 digits"]),
        (["--from", DAY1, "--type", "dispence"], ["--type", "'dispence'", "kind"]),
        (["--from", DAY1, "--json", "--csv"], ["--json and --csv"]),
        (["--from", DOMESTIC], ["--from", "[digits withheld]"]),  # a card number in the wrong place
        (["--from", DAY1, "--session", DOMESTIC, "--to", DOMESTIC], ["[digits withheld]"]),
    ],
)
def test_bad_arguments_are_one_line_and_never_show_the_card_number(history, config, args, words):
    args = [str(config) if a == "CONFIG" else a for a in args]
    refused(atm("journal", "query", "--journal", str(history), *args), *words)


def test_a_missing_journal_and_a_stray_card_number_are_refused(tmp_path, config):
    refused(atm("journal", "query", "--journal", str(tmp_path / "none.db"), "--from", DAY1), "no journal at")
    stray = atm("journal", "query", "--journal", str(tmp_path / "none.db"), "--from", DAY1, DOMESTIC)
    assert stray.returncode == 2 and "unrecognized arguments: [digits withheld]" in stray.stderr


# -- read-only, beside a running agent ------------------------------------------------------
def test_a_query_works_while_an_agent_holds_the_journal_and_sees_its_committed_rows(tmp_path):
    path = str(tmp_path / "journal.db")
    clock = VirtualClock()
    journal = Journal(path, clock)  # holds the lock, as atm run does
    try:
        card_session(journal, clock, "atm-0001-000001", DOMESTIC, "2026-01-01T09:00:00Z")
        before = query(path, "--from", DAY1, "--to", DAY2, "--last4", "0015")
        assert [len(s["rows"]) for s in before["sessions"]] == [4]
        card_session(journal, clock, "atm-0001-000002", DOMESTIC, "2026-01-01T10:00:00Z")
        assert len(query(path, "--from", DAY1, "--to", DAY2, "--last4", "0015")["sessions"]) == 2
        with pytest.raises(JournalBusy):
            JournalLock(path)  # the queries neither took nor broke the agent's lock
    finally:
        journal.close()


def test_a_query_never_writes_the_journal_nor_takes_its_lock(history):
    lock = JournalLock(str(history))  # another agent's
    try:
        digest = hashlib.sha256(history.read_bytes()).hexdigest()
        assert len(query(history, "--from", DAY1, "--to", DAY3)["sessions"]) == 5
        assert hashlib.sha256(history.read_bytes()).hexdigest() == digest
    finally:
        lock.release()


# -- indexes ---------------------------------------------------------------------------------
def plan(db, sql, args):
    return " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))


def test_the_queries_use_the_journals_indexes(history):
    from agent import journal_query as jq

    db = sqlite3.connect(history)
    window = ("2026-01-01T00:00:00.000+00:00", "2026-01-02T00:00:00.000+00:00")
    assert "entries_card_token" in plan(db, jq.CARD_SESSIONS.format(field="token"), ("t", *window))
    assert "entries_card_last4" in plan(db, jq.CARD_SESSIONS.format(field="last4"), ("0015", *window))
    assert "entries_ts" in plan(db, jq.WINDOW_ROWS + " ORDER BY seq", window)
    assert "entries_session" in plan(db, jq.SESSION_ROWS, ('["atm-0001-000001"]',))
    assert "entries_session" in plan(db, jq.SESSION_IN_WINDOW, ("atm-0001-000001", *window))
    assert COLUMNS.split(", ") == ["seq", "ts", "session", "kind", "name", "intent", "data"]
    assert set(KINDS) == {"step", "intent", "outcome", "fault", "event", "recovery"}


def test_a_journal_from_before_the_indexes_is_queried_the_same_and_gets_them_at_the_next_start(history):
    expected = query(history, "--from", DAY1, "--to", DAY3, "--last4", "0015")
    with sqlite3.connect(history) as db:
        for name in QUERY_INDEXES:
            db.execute(f"DROP INDEX {name}")
    assert query(history, "--from", DAY1, "--to", DAY3, "--last4", "0015") == expected
    Journal(str(history), VirtualClock()).close()  # an agent starting on it
    with sqlite3.connect(history) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert QUERY_INDEXES <= names


# -- a journal atm demo wrote ---------------------------------------------------------------
def test_on_a_demo_journal_the_jammed_withdrawal_is_found_by_card_with_its_fault(tmp_path):
    path = tmp_path / "demo.db"
    demo = atm("demo", "--scenario", "dispenser-jam", "--journal", str(path))
    assert demo.returncode == 0, demo.stderr
    config = tmp_path / "demo.toml"
    config.write_text("")  # the defaults: the demo's card key
    report = query(path, "--from", DAY1, "--to", DAY2, "--card", DOMESTIC, "--config", str(config))
    (session,) = report["sessions"]
    assert (session["function"], session["outcome"], session["last4"]) == ("withdrawal", "dispense_failed", "0015")
    names = [r["name"] for r in session["rows"]]
    assert names[:3] == ["card_inserted", "evidence", "card_read"]  # the camera's evidence beside the chip read
    assert names[-1] == "session_end" and "dispense" in names
    assert [(r["name"], r["data"].get("state")) for r in report["other_rows"] if r["kind"] == "fault"] == [
        ("jam", "raised")
    ]
    balance = query(path, "--from", DAY1, "--to", DAY2, "--last4", DOMESTIC2[-4:])
    assert [(s["function"], s["outcome"]) for s in balance["sessions"]] == [("balance", "completed")]
    everything = atm("journal", "query", "--journal", str(path), "--from", DAY1, "--csv")
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
    assert everything.returncode == 0 and len(everything.stdout.splitlines()) == count + 1
