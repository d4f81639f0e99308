"""Camera evidence: snapshots at session events, journalled by SHA-256; their retention."""

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from agent.config import ConfigError
from agent.evidence import EvidenceFolder, file_sha256, image_name, taken_at
from hw_mocks.customer import Customer, Visit
from tests.helpers import RAW_PANS, make_agent, run_visits

DAY = 86_400.0
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # the virtual clock's
# Slow periodic timers, so that days pass on the virtual clock in a few hundred timers
SLOW = {
    "timeouts": {"status_poll": 86_400},
    "telemetry": {"heartbeat_interval": 3600, "cash_interval": 86_400},
}


def evidence_rows(agent):
    return [e for e in agent.journal.entries() if e.name == "evidence"]


def folder_of(tmp_path):
    return tmp_path / "evidence"


def run_days(overrides, tmp_path, visits, days):
    """Start an agent with a journal in ``tmp_path``, serve ``visits`` from the second
    second on, and run the virtual clock for ``days``; the agent is returned running."""
    agent = make_agent({**SLOW, **overrides}, journal=str(tmp_path / "journal.db"))
    agent.warm_prompts()
    agent.start()
    delay = 2.0
    for visit in visits:
        Customer(agent, visit).arrive(delay=delay)
        delay += 300.0
    agent.loop.run_until_idle(max_time=days * DAY)
    return agent


def verify(journal):
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "journal", "verify", "--journal", str(journal)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def evidence_cli(journal, sha, *more):
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "journal", "evidence", sha, "--journal", str(journal), *more],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_withdrawal_has_evidence_of_card_inserted_and_cash_presented_matching_the_files(tmp_path):
    run = run_visits([Visit("withdrawal")], journal=str(tmp_path / "journal.db"))
    rows = evidence_rows(run.agent)
    assert [r.data["reason"] for r in rows] == ["card_inserted", "cash_presented"]
    for row in rows:
        path = folder_of(tmp_path) / row.data["file"]
        assert row.session == "atm-0001-000001"
        assert file_sha256(str(path)) == row.data["sha256"]
        assert path.stat().st_size == row.data["bytes"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (row.data["height"], row.data["width"]) == (48, 64)
    assert sorted(os.listdir(folder_of(tmp_path))) == sorted(r.data["file"] for r in rows)


def test_a_retained_card_has_its_evidence(tmp_path):
    run = run_visits([Visit("balance", forget_card=True)], journal=str(tmp_path / "journal.db"))
    entries = run.agent.journal.entries()
    names = [e.name for e in entries]
    reasons = [r.data["reason"] for r in evidence_rows(run.agent)]
    assert reasons == ["card_inserted", "card_retained"]
    retained = names.index("card_retained")
    assert any(e.name == "evidence" and e.data["reason"] == "card_retained" for e in entries[retained:])
    assert (folder_of(tmp_path) / evidence_rows(run.agent)[1].data["file"]).is_file()


def test_the_snapshot_is_taken_and_encoded_on_the_camera_queue_not_the_loop(tmp_path):
    threads: list[str] = []

    def record_thread(agent):
        camera = agent.devices.camera
        encode = camera.jpeg_snapshot

        def recorded(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return encode(*args, **kwargs)

        camera.jpeg_snapshot = recorded

    loop_thread = threading.current_thread().name  # run_until_idle runs the loop on this thread
    run = run_visits([Visit("withdrawal")], journal=str(tmp_path / "journal.db"), workers=True, setup=record_thread)
    assert len(evidence_rows(run.agent)) == 2
    assert threads == ["dev-camera", "dev-camera"]
    assert loop_thread not in threads


def test_retention_deletes_by_age_and_the_journal_still_verifies(tmp_path):
    agent = run_days({"evidence": {"keep_days": 1}}, tmp_path, [Visit("withdrawal")], days=2.5)
    rows = evidence_rows(agent)
    files = [r.data["file"] for r in rows]
    assert len(files) == 2
    deleted = [e for e in agent.journal.entries() if e.name == "evidence_deleted"]
    assert len(deleted) == 1
    assert deleted[0].data["files"] == files  # oldest first, all of them by age
    assert deleted[0].data["by_age"] == 2 and deleted[0].data["by_size"] == 0
    # the sweep that deleted them came in the hour after the day had passed
    swept_at = datetime.fromisoformat(deleted[0].ts)
    taken = max(taken_at(f) for f in files)
    assert timedelta(days=1) < swept_at - taken <= timedelta(days=1, hours=1)
    assert os.listdir(folder_of(tmp_path)) == []
    agent.stop()
    proc = verify(tmp_path / "journal.db")
    assert proc.returncode == 0 and proc.stdout.startswith("intact"), proc.stdout + proc.stderr
    gone = evidence_cli(tmp_path / "journal.db", rows[0].data["sha256"])
    assert gone.returncode == 0 and "deleted by retention" in gone.stdout, gone.stdout + gone.stderr


def test_retention_keeps_the_folder_under_max_mb_oldest_first(tmp_path):
    folder = folder_of(tmp_path)
    folder.mkdir()
    old = [image_name(EPOCH - timedelta(hours=h), "atm-0001-000000", "card_inserted", f"{h:064x}") for h in (3, 1, 2)]
    for name in old:
        (folder / name).write_bytes(b"\0" * 400_000)
    (folder / "notes.txt").write_bytes(b"\0" * 2_000_000)  # not an image of ours: never deleted
    agent = run_days({"evidence": {"max_mb": 1}}, tmp_path, [Visit("balance")], days=0.01)
    deleted = [e for e in agent.journal.entries() if e.name == "evidence_deleted"]
    assert len(deleted) == 1 and deleted[0].data["by_size"] == 1 and deleted[0].data["by_age"] == 0
    assert deleted[0].data["files"] == [old[0]]  # three hours old: the oldest
    assert deleted[0].data["bytes"] == 400_000
    kept = sorted(os.listdir(folder))
    assert old[0] not in kept and {old[1], old[2], "notes.txt"} <= set(kept)
    assert len(evidence_rows(agent)) == 1  # the session's own image was written meanwhile
    agent.stop()
    assert verify(tmp_path / "journal.db").returncode == 0


def test_the_sweep_deletes_oldest_first_while_over_the_bound_then_by_age(tmp_path):
    hours_old = [5, 1, 3, 2]
    for i, hours in enumerate(hours_old):
        name = image_name(EPOCH - timedelta(hours=hours), "atm-0001-000001", "alarm", f"{i:064x}")
        (tmp_path / name).write_bytes(b"x" * 300)
    store = EvidenceFolder(str(tmp_path), keep_days=1, max_bytes=700)
    by_age = sorted(os.listdir(tmp_path), key=lambda n: taken_at(n))
    deleted = store.sweep(EPOCH)
    assert [d["file"] for d in deleted] == by_age[:2]  # 5 then 3 hours old
    assert [d["why"] for d in deleted] == ["size", "size"]
    assert sorted(os.listdir(tmp_path)) == sorted(by_age[2:])
    later = store.sweep(EPOCH + timedelta(hours=22.5))  # 24.5 h and 23.5 h old by then
    assert [(d["file"], d["why"]) for d in later] == [(by_age[2], "age")]
    assert os.listdir(tmp_path) == [by_age[3]]


def test_an_unwritable_evidence_folder_is_a_warning_and_the_session_completes(tmp_path):
    folder = folder_of(tmp_path)

    def break_folder(agent):  # root may write anywhere: a file where the folder was
        shutil.rmtree(folder)
        folder.write_text("not a folder")

    run = run_visits([Visit("withdrawal")], journal=str(tmp_path / "journal.db"), setup=break_folder)
    assert [s["outcome"] for s in run.sessions()] == ["completed"]
    rows = evidence_rows(run.agent)
    assert [r.data["reason"] for r in rows] == ["card_inserted", "cash_presented"]
    assert all(r.data["error"] == "evidence_not_written" and "sha256" not in r.data for r in rows)
    assert str(folder) in rows[0].data["message"]
    camera = run.agent.devices.camera
    assert camera.faults["evidence_not_written"].severity.value == "warning" and camera.usable
    faults = [e for e in run.agent.journal.entries() if e.kind == "fault"]
    assert [f.data["code"] for f in faults] == ["evidence_not_written"]  # raised once, not at each image
    folder.unlink()  # mended: the next image clears the warning
    written = run.agent.evidence.capture(camera, EPOCH, None, "alarm")
    assert (folder / written["file"]).is_file() and "evidence_not_written" not in camera.faults


def test_a_camera_that_gives_no_frame_is_an_evidence_row_with_its_fault(tmp_path):
    run = run_visits(
        [Visit("withdrawal")],
        journal=str(tmp_path / "journal.db"),
        setup=lambda agent: agent.devices.camera.inject("offline"),
    )
    assert [s["outcome"] for s in run.sessions()] == ["completed"]
    rows = evidence_rows(run.agent)
    assert [(r.data["reason"], r.data["error"]) for r in rows] == [
        ("card_inserted", "offline"),
        ("cash_presented", "offline"),
    ]
    assert os.listdir(folder_of(tmp_path)) == []


def test_no_card_number_in_any_file_name_or_row(tmp_path):
    run = run_visits(
        [Visit("withdrawal"), Visit("balance", forget_card=True), Visit("deposit")],
        journal=str(tmp_path / "journal.db"),
    )
    names = os.listdir(folder_of(tmp_path))
    assert len(names) >= 5
    rows = [json.dumps(e.data) for e in run.agent.journal.entries()]
    for pan in RAW_PANS:
        assert not any(pan in name or pan[-10:] in name for name in names)
        assert not any(pan in row for row in evidence_rows_json(run.agent))
        assert not any(pan in row for row in rows)


def evidence_rows_json(agent):
    return [json.dumps(r.data) for r in evidence_rows(agent)]


def test_the_evidence_cli_says_intact_or_changed(tmp_path):
    run = run_visits([Visit("withdrawal")], journal=str(tmp_path / "journal.db"))
    first, second = evidence_rows(run.agent)
    run.agent.stop()
    out = tmp_path / "copy.jpg"
    intact = evidence_cli(tmp_path / "journal.db", first.data["sha256"], "-o", str(out))
    assert intact.returncode == 0 and intact.stdout.count("kept and intact") == 2, intact.stdout + intact.stderr
    assert file_sha256(str(out)) == first.data["sha256"]
    (folder_of(tmp_path) / second.data["file"]).write_bytes(b"edited")
    changed = evidence_cli(tmp_path / "journal.db", first.data["sha256"][:12], "--json")
    assert changed.returncode == 1
    states = [i["state"] for i in json.loads(changed.stdout)["images"]]
    assert states == ["intact", "changed"]
    unknown = evidence_cli(tmp_path / "journal.db", "0" * 64)
    assert unknown.returncode == 1 and "no evidence row" in unknown.stdout


def test_an_alarm_takes_evidence_between_sessions(tmp_path):
    def alarm(agent):
        with pytest.raises(ValueError, match="evidence reason"):
            agent.atm.evidence.take("card 4999990000000015")
        agent.atm.evidence.take("alarm")

    run = run_visits([Visit("balance")], journal=str(tmp_path / "journal.db"), epilogue=alarm)
    (row,) = [r for r in evidence_rows(run.agent) if r.data["reason"] == "alarm"]
    assert row.session is None and ".none.alarm." in row.data["file"]
    assert file_sha256(str(folder_of(tmp_path) / row.data["file"])) == row.data["sha256"]


def test_the_sweep_drops_the_temporary_file_of_a_write_cut_short(tmp_path):
    name = image_name(EPOCH, "atm-0001-000001", "card_inserted", "ab" * 32)
    (tmp_path / f".{name}.part").write_bytes(b"half an image")
    store = EvidenceFolder(str(tmp_path), keep_days=1, max_bytes=10**9)
    assert store.sweep(EPOCH + timedelta(minutes=30)) == [] and os.listdir(tmp_path) == [f".{name}.part"]
    assert store.sweep(EPOCH + timedelta(hours=2)) == [] and os.listdir(tmp_path) == []


def test_no_images_with_an_in_memory_journal_and_no_folder():
    run = run_visits([Visit("withdrawal")])
    assert run.agent.evidence is None and evidence_rows(run.agent) == []


@pytest.mark.parametrize(
    "evidence, field",
    [
        ({"keep_days": -1}, "evidence.keep_days"),
        ({"keep_days": 0}, "evidence.keep_days"),
        ({"max_mb": 0}, "evidence.max_mb"),
        ({"max_mb": 10**9}, "evidence.max_mb"),
        ({"folder": 3}, "evidence.folder"),
    ],
)
def test_bad_evidence_config_is_one_line_naming_the_field(evidence, field):
    from agent import config

    with pytest.raises(ConfigError) as err:
        config.from_dict({"evidence": evidence})
    assert str(err.value).startswith(field + ":") and "\n" not in str(err.value)


def test_an_evidence_folder_that_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^evidence.folder .*/file/evidence: cannot be made: "):
        make_agent({"evidence": {"folder": str(tmp_path / "file" / "evidence")}}, journal=str(tmp_path / "j.db"))
