"""A full or broken outbox disk: one clear error naming the outbox, the link keeps
running and sending, and everything is stored again once space comes back.

A full disk is simulated with SQLite's ``PRAGMA max_page_count`` (no root, no tmpfs);
``query_only`` makes every write fail, as a read-only remount would.
"""

from __future__ import annotations

import logging
import threading

import pytest

from agent.outbox import Outbox, OutboxError
from hw_mocks.servers.broker import free_port
from hw_mocks.servers.wait import wait_for
from tests.test_cli import atm
from tests.test_mqtt import Consumer

FULL = "database or disk is full"


def fill_up(box: Outbox) -> None:
    """No page more for the outbox: the next insert that needs one fails."""
    with box._lock:
        pages = box.db.execute("PRAGMA page_count").fetchone()[0]
        box.db.execute(f"PRAGMA max_page_count = {pages}")


def make_room(box: Outbox) -> None:
    with box._lock:
        box.db.execute("PRAGMA max_page_count = 1073741823")
        box.db.execute("PRAGMA query_only = 0")


def read_only(box: Outbox) -> None:
    with box._lock:
        box.db.execute("PRAGMA query_only = 1")


def test_a_full_outbox_raises_the_real_error_naming_the_outbox_and_changes_nothing(tmp_path):
    box = Outbox(str(tmp_path / "o.db"))
    box.put("atm/v1/x/fault", b'{"n":0}', 1, False, "critical")
    fill_up(box)
    before = (box.count(), box.bytes)
    with pytest.raises(OutboxError) as raised:
        for i in range(1, 200):
            box.put("atm/v1/x/fault", b'{"n":%d}' % i + b" " * 2000, 1, False, "critical")
    assert FULL in str(raised.value) and str(tmp_path / "o.db") in str(raised.value)
    assert "rollback" not in str(raised.value) and "\n" not in str(raised.value)
    stored = box.count()
    assert stored >= before[0] and box.bytes == sum(len(r.payload) for r in box.pending(limit=10_000))
    make_room(box)
    box.put("atm/v1/x/fault", b'{"n":-1}', 1, False, "critical")
    assert box.count() == stored + 1


def test_a_counter_that_cannot_be_written_is_an_outbox_error(tmp_path):
    box = Outbox(str(tmp_path / "o.db"))
    read_only(box)
    with pytest.raises(OutboxError, match="outbox .*o.db"):
        box.next_counter("bdseq")
    make_room(box)
    assert box.next_counter("bdseq") == 1


def test_a_corrupt_outbox_file_is_one_line_naming_the_outbox(tmp_path):
    bad = tmp_path / "out.db"
    bad.write_bytes(b"this is not a database" * 100)
    cfg = tmp_path / "atm.toml"
    cfg.write_text(f"[telemetry]\noutbox = '{bad}'\n")
    proc = atm("demo", "--scenario", "balance", "--config", str(cfg), "--mqtt", f"mqtt://127.0.0.1:{free_port()}")
    assert proc.returncode == 2 and proc.stderr.startswith(f"atm: error: outbox {bad}:"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "journal" not in proc.stderr


@pytest.mark.mosquitto
def test_the_link_survives_a_full_outbox_keeps_sending_and_stores_again_when_space_returns(mosquitto, links, caplog):
    caplog.set_level(logging.WARNING, logger="agent.mqtt")
    consumer = Consumer(mosquitto).start()
    link, tel = links(mosquitto.url)
    link.start()
    try:
        assert link.wait_connected(5)
        box = link.outbox
        fill_up(box)
        for i in range(30):
            tel.fault({"code": "X", "n": i, "pad": "x" * 500})  # never raises
        wait_for(lambda: set(consumer.numbers()) == set(range(30)), message="the faults, sent from memory")
        assert any(FULL in r.getMessage() and box.path in r.getMessage() for r in caplog.records)
        read_only(box)  # the bdSeq cannot be written either
        first = link.bdseq
        mosquitto.kill()
        mosquitto.start()
        wait_for(lambda: link.connected and link.bdseq > first, timeout=8, message="a new session")
        for i in range(30, 40):
            tel.fault({"code": "X", "n": i})
        wait_for(lambda: set(consumer.numbers()) >= set(range(40)), message="the faults after the reconnect")
        assert threading.enumerate().count(link._thread) == 1 and link._thread.is_alive()
        make_room(box)
        for i in range(40, 50):
            tel.fault({"code": "X", "n": i})
        assert link.flush(10), f"{box.count()} left in the outbox"
        wait_for(lambda: set(consumer.numbers()) == set(range(50)))
        seqs = {f["seq"] for f in consumer.of("fault")}
        assert seqs == set(range(1, 51))
        link.stop(timeout=1)
        assert box.next_counter("bdseq") > link.bdseq  # the unsaved bdSeq was saved once it could be
    finally:
        consumer.stop()
