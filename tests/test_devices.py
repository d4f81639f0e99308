"""Device interfaces, card data hygiene and the simulated devices."""

import pytest

from devices.base import DeviceContext, DeviceError, DeviceStatus
from devices.carddata import CardData, CardDataError, mask_pan
from devices.dispenser import Cassette, plan_notes
from devices.registry import LocatorError, create_device
from hw_mocks.cards import CARDS

KEY = b"k" * 16
PAN = CARDS["domestic"].pan


def test_card_data_never_shows_the_pan():
    card = CardData(PAN, KEY)
    assert card.masked == PAN[:6] + "******" + PAN[-4:]
    assert PAN not in repr(card) and PAN not in str(card)
    assert PAN not in card.token and len(card.token) == 64
    assert CardData(PAN, b"other key 123456").token != card.token
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(card)


@pytest.mark.parametrize(
    "track2", ["", ";4999=", ";12345=3012201?", ";4999990000000015=30AB201?", ";4999990000000016=3012201000?"]
)
def test_bad_track2_is_a_clear_error(track2):
    with pytest.raises(CardDataError):
        CardData.from_track2(track2, KEY)


def test_mask_keeps_six_and_four_and_always_hides_six_digits():
    assert mask_pan("5432100000000005") == "543210******0005"
    assert mask_pan("543210000005") == "********0005"
    assert mask_pan("54321000000005") == "**********0005"


def test_plan_notes_prefers_fewest_notes_and_respects_counts():
    cas = [Cassette("A", 10_000, 2), Cassette("B", 1_000, 100)]
    assert plan_notes(cas, 23_000, 60) == {"A": 2, "B": 3}
    assert plan_notes(cas, 500, 60) is None
    assert plan_notes(cas, 50_000, 60) == {"A": 2, "B": 30}
    assert plan_notes(cas, 50_000, 20) is None


def test_cassette_status():
    assert Cassette("A", 1000, 0, low=5).status == "empty"
    assert Cassette("A", 1000, 5, low=5).status == "low"
    assert Cassette("A", 1000, 50, low=5, near_end=True).status == "low"
    assert Cassette("A", 1000, 50, low=5).status == "ok"


def test_locators_select_backends_and_bad_ones_are_named():
    dev = create_device("dispenser", "sim://", DeviceContext())
    assert type(dev).__name__ == "SimDispenser"
    with pytest.raises(LocatorError, match="unknown backend 'lcdm9'"):
        create_device("dispenser", "lcdm9:///dev/ttyUSB0", DeviceContext())
    with pytest.raises(LocatorError):
        create_device("dispenser", "/dev/ttyUSB0", DeviceContext())


def test_sim_dispenser_jam_is_partial_and_raises_a_fault():
    events = []
    ctx = DeviceContext(emit=lambda k, n, d: events.append((k, n, d)))
    disp = create_device("dispenser", "sim://", ctx)
    disp.open()
    disp.load_cassettes([Cassette("A", 10_000, 100)])
    disp.inject("jam")
    result = disp.dispense({"A": 4})
    assert not result.complete and result.picked == {"A": 2}
    assert disp.cassette("A").count == 98
    assert disp.status is DeviceStatus.HARDWARE_ERROR
    assert events[-1][1] == "fault" and events[-1][2]["state"] == "raised"
    disp.remove("jam")
    disp.reset()
    assert disp.status is DeviceStatus.ONLINE
    assert events[-1][2]["state"] == "cleared"
    with pytest.raises(ValueError, match="no fault 'melt'"):
        disp.inject("melt")


def test_sim_card_reader_jam_raises_device_error():
    reader = create_device("card_reader", "sim://", DeviceContext())
    reader.open()
    reader.enable_entry()
    assert reader.customer_insert(CARDS["domestic"])
    reader.inject("jam")
    with pytest.raises(DeviceError) as err:
        reader.read(KEY)
    assert err.value.fault.code == "jam"
    assert PAN not in str(err.value)


def test_empty_threshold_keeps_a_cassette_out_of_plans():
    cas = [Cassette("A", 10_000, 5, low=10, empty=5), Cassette("B", 1_000, 100)]
    assert cas[0].status == "empty"
    assert plan_notes(cas, 20_000, 60) == {"B": 20}
    cas[0].count = 7
    assert plan_notes(cas, 20_000, 60) == {"A": 2}
    assert plan_notes(cas, 30_000, 60) == {"A": 2, "B": 10}


def test_simulation_history_is_bounded():
    from hw_mocks.history import History

    h = History(cap=10)
    for i in range(1000):
        h.append(i)
    assert 10 <= len(h) <= 20 and h[-1] == 999 and h == list(range(1000 - len(h), 1000))


def test_plan_notes_is_minimal_for_any_amount():  # the old search took 10 s on 499,999
    cas = [Cassette(str(d), d, 2000) for d in (10_000, 5_000, 2_000, 1_000, 500, 100)]
    for amount in (499_999, 499_900, 387_600, 1, 100, 600):
        plan = plan_notes(cas, amount, 60)
        if plan is not None:
            assert sum(int(k) * n for k, n in plan.items()) == amount
    assert plan_notes(cas, 600, 60) == {"500": 1, "100": 1}
    assert plan_notes([Cassette("A", 5_000, 10), Cassette("B", 2_000, 10)], 6_000, 60) == {"B": 3}


def test_a_keypad_that_did_not_open_is_offline_and_tried_again_by_the_self_test():
    keypad = create_device("keypad", "evdev:///dev/input/no-such-keypad", DeviceContext())
    keypad.open()
    assert keypad.status is DeviceStatus.OFFLINE and list(keypad.faults) == ["offline"]
    assert "did not open" in keypad.faults["offline"].message
    assert keypad.self_test() is DeviceStatus.OFFLINE and list(keypad.faults) == ["offline"]
