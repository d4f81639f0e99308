"""The chip driver through the real PC/SC stack: pyscard → pcscd → vpcd → a virtual EMV card.

The tests use the running pcscd if there is one (with vsmartcard's vpcd
reader), or start their own ``pcscd --foreground``, and stop it afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as configmod
from agent.output import Recorder
from agent.runtime import Agent
from agent.scenarios import Scenario, ScenarioRun
from devices.base import DeviceContext, DeviceError, DeviceStatus
from devices.registry import create_device
from fsm.clock import VirtualClock
from hw_mocks import pcscd
from hw_mocks.cards import CARDS
from hw_mocks.customer import Visit
from hw_mocks.pcsc_rig import profile_for
from hw_mocks.virtual_card import VirtualCard, load_profile
from tests.helpers import RAW_PANS

ROOT = Path(__file__).resolve().parent.parent
KEY = b"k" * 32


@pytest.fixture(scope="module")
def daemon():
    d = pcscd.acquire()
    yield d
    pcscd.release()


@pytest.fixture
def chip(daemon):
    reader = create_device("chip", f"pcsc://{pcscd.READER}?timeout=1.5", DeviceContext())
    reader.open()
    yield reader
    reader.close()


@contextlib.contextmanager
def card_in(daemon, card_name):
    """A virtual card in the reader; pcscd sees the last one go before it comes."""
    pcscd.settle()
    try:
        with VirtualCard(profile_for(CARDS[card_name]), port=daemon.port) as card:
            yield card
    finally:
        pcscd.card_removed()


def read_with(chip, daemon, card_name):
    with card_in(daemon, card_name):
        return chip.read_card(KEY)


@pytest.mark.parametrize(
    "name, masked, country, label",
    [
        ("domestic", "499999******0015", "0392", "SIM DEBIT"),
        ("overseas", "543210******0005", "0840", "SIM CREDIT"),
        ("no-pse", "499999******0064", "0392", None),
        ("chunked", "499999******0072", "0392", None),
    ],
)
def test_good_cards_are_read_through_pcscd(chip, daemon, name, masked, country, label):
    card = read_with(chip, daemon, name)
    assert card.masked == masked and card.source == "chip" and card.country == country
    assert card.expiry == CARDS[name].expiry or len(card.expiry) == 4
    if label:
        assert card.label == label
    assert chip.atr == load_profile(CARDS[name].profile).atr
    assert CARDS[name].pan not in repr(card) and CARDS[name].pan not in str(card)
    assert chip.status is DeviceStatus.ONLINE and not chip.faults


def test_an_expired_card_is_returned_for_the_policy_to_refuse(chip, daemon):
    card = read_with(chip, daemon, "expired")
    assert card.expired("2611") and card.masked == "499999******0049"


@pytest.mark.parametrize(
    "name, code",
    [
        ("blocked", "application_blocked"),
        ("broken-tlv", "chip_error"),
        ("pulled-out", "card_removed"),
        ("mute", "mute_card"),
    ],
)
def test_bad_cards_become_clear_faults_never_exceptions(chip, daemon, name, code):
    with pytest.raises(DeviceError) as err:
        read_with(chip, daemon, name)
    assert err.value.fault.code == code
    assert CARDS[name].pan not in err.value.fault.message
    assert chip.status is DeviceStatus.ONLINE  # a bad card is not a broken reader


def test_no_card_at_all_is_a_mute_card_after_the_timeout(chip):
    with pytest.raises(DeviceError) as err:
        chip.read_card(KEY)
    assert err.value.fault.code == "mute_card" and "1.5 s" in err.value.fault.message


def test_a_reader_chosen_by_index_and_a_missing_reader(daemon):
    by_index = create_device("chip", "pcsc://0", DeviceContext())
    by_index.open()
    assert by_index.status is DeviceStatus.ONLINE
    missing = create_device("chip", "pcsc://No%20Such%20Reader", DeviceContext())
    missing.open()
    assert missing.status is DeviceStatus.HARDWARE_ERROR and "reader_missing" in missing.faults
    with pytest.raises(ValueError, match="aids"):
        create_device("chip", "pcsc://0?aids=zz", DeviceContext())


def test_a_pcsc_client_that_is_not_ours_sees_the_virtual_card(daemon):
    with card_in(daemon, "domestic"):
        proc = subprocess.run(["pcsc_scan", "-r"], capture_output=True, text=True, timeout=10)
        atr = load_profile("domestic_debit").atr.hex(" ").upper()
        scan = subprocess.Popen(["pcsc_scan", "-n"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = ""
        try:
            for line in scan.stdout:
                seen += line
                if "ATR:" in line:
                    break
        finally:
            scan.kill()
            scan.wait()
    assert pcscd.READER in proc.stdout
    assert f"ATR: {atr}" in seen


# -- the whole ATM on rigs/pcsc.toml ---------------------------------------------------
def pcsc_agent(**overrides):
    cfg = configmod.from_dict(overrides, rig=str(ROOT / "rigs" / "pcsc.toml"))
    clock = VirtualClock()
    return Agent(cfg, clock, Recorder(clock))


def play(agent, visits):
    run = ScenarioRun(Scenario("t", "", list(visits), check=lambda r: []), agent)
    try:
        assert run.run() == []
        return run
    finally:
        agent.stop()


@pytest.mark.parametrize(
    "card, outcome, prompt",
    [
        ("overseas", "completed", None),
        ("expired", "card_refused", "card_expired"),
        ("blocked", "card_refused", "card_blocked"),
        ("broken-tlv", "card_refused", "card_unreadable"),
    ],
)
def test_chip_policy_on_the_pcsc_rig(daemon, card, outcome, prompt):
    run = play(pcsc_agent(), [Visit("balance", card=card)])
    assert [s["outcome"] for s in run.sessions()] == [outcome]
    if prompt:
        assert prompt in [p["prompt"] for p in run.prompts()]


def test_a_mute_chip_falls_back_to_the_stripe_only_when_allowed(daemon):
    run = play(pcsc_agent(), [Visit("balance", card="mute")])
    assert [s["outcome"] for s in run.sessions()] == ["completed"]
    assert [r["source"] for r in run.agent.recorder.of_type("card")] == ["magstripe"]
    run = play(pcsc_agent(session={"magstripe_fallback": False}), [Visit("balance", card="mute")])
    assert [s["outcome"] for s in run.sessions()] == ["card_refused"]


def test_a_readable_chip_never_falls_back_to_the_stripe(daemon):
    run = play(pcsc_agent(), [Visit("balance", card="blocked")])
    assert [r["source"] for r in run.agent.recorder.of_type("card")] == []
    assert not [
        r
        for r in run.agent.recorder.of_type("device")
        if r.get("event") == "fault" and r.get("fault", {}).get("code") == "read_error"
    ]


def test_demo_on_the_pcsc_rig_shows_only_the_masked_number(daemon, tmp_path):
    journal = tmp_path / "j.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "-v",
            "demo",
            "--scenario",
            "withdrawal",
            "--rig",
            "rigs/pcsc.toml",
            "--journal",
            str(journal),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "card    499999******0015 (chip, SIM DEBIT, country 0392)" in proc.stdout
    blob = proc.stdout + proc.stderr + journal.read_bytes().decode("latin-1")
    for pan in RAW_PANS:
        assert pan not in blob
