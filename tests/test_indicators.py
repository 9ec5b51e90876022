"""Each indicator on hand-computed cases: first transaction, missing fields, late events, bounds."""

import json
import math

import pytest

from riskcockpit.indicators import REGISTRY
from riskcockpit.indicators.aml import PassThrough
from riskcockpit.indicators.amount import AmountZScore, LargeAmount, Structuring
from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.card_testing import DeclineRatio, SmallAmountBurst
from riskcockpit.indicators.counterparty import NewCounterparty
from riskcockpit.indicators.device_geo import NewCountry, NewDevice
from riskcockpit.indicators.timing import UnusualHour
from riskcockpit.indicators.velocity import AmountVelocity, CountVelocity


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_first_transaction_of_an_entity_never_hits(name):
    ind = REGISTRY[name]()
    full = tx_at(0, 30.0, counterparty_id="c", device_id="d", country="CN", direction="debit",
                 status="approved", merchant_id="m")
    signal = ind.evaluate({}, full)
    assert signal.hit is False and signal.name == name
    assert json.loads(json.dumps({"s": 1})) == {"s": 1}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_state_is_json_and_bounded(name):
    ind, state = REGISTRY[name](), {}
    for i in range(3000):
        ind.evaluate(state, tx_at(i * 0.01, 1.0 + i % 7, counterparty_id=f"c{i}", device_id=f"d{i}",
                                  country=["CN", "HK", "SG", "US"][i % 4], direction=["credit", "debit"][i % 2],
                                  status=["approved", "declined"][i % 3 == 0], merchant_id=f"m{i}"))
    encoded = json.dumps(state)
    assert json.loads(encoded) == state
    assert len(encoded) < 8_000, f"{name} keeps {len(encoded)} bytes per entity"


@pytest.mark.parametrize("cls, field", [(NewCounterparty, "counterparty_id"), (NewDevice, "device_id"),
                                        (NewCountry, "country"), (DeclineRatio, "status"),
                                        (PassThrough, "direction")])
def test_absent_field_is_not_applicable_never_a_hit(cls, field):
    ind, state = cls(), {}
    for minute in range(20):
        signal = ind.evaluate(state, tx_at(minute, 5.0))
        assert signal.value is None and not signal.hit and f"no {field}" in signal.reason
    assert state == {}


def test_count_velocity_window_edges_and_late_event():
    ind, state = CountVelocity(window="10m", limit=2), {}
    assert [ind.evaluate(state, tx_at(m)).value for m in (0, 5, 9.99)] == [1, 2, 3]
    # exactly 10 minutes after the first: the first is out of the window
    assert ind.evaluate(state, tx_at(10)).value == 3
    # a late event (minute 9) counts what lies in its own window (minute 5), not its future (9.99, 10)
    assert ind.evaluate(state, tx_at(9)).value == 2


def test_amount_velocity_sums_in_window():
    ind, state = AmountVelocity(window="1h", limit=1000), {}
    values = [ind.evaluate(state, tx_at(m, a)).value for m, a in [(0, 300), (30, 300), (59, 300), (61, 300)]]
    assert values == [300, 600, 900, 900]


def test_amount_zscore_hand_computed():
    ind, state = AmountZScore(min_history=3, min_std=0.01), {}
    for minute, amount in enumerate([100, 200, 400]):
        assert ind.evaluate(state, tx_at(minute, amount)).value is None
    logs = [math.log(a) for a in (100, 200, 400)]
    mean = sum(logs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    expected = (math.log(3200) - mean) / std
    assert ind.evaluate(state, tx_at(9, 3200)).value == pytest.approx(expected, abs=1e-3)


def test_large_amount_boundary():
    ind = LargeAmount(threshold=50_000)
    assert [ind.evaluate({}, tx_at(0, a)).hit for a in (49_999.99, 50_000, 70_000)] == [False, True, True]


def test_structuring_counts_only_just_under_and_forgets_after_window():
    ind, state = Structuring(threshold=10_000, band=0.1, window="24h", count=3), {}
    hits = [ind.evaluate(state, tx_at(h * 60, a)).hit for h, a in
            [(0, 9_000), (1, 10_000), (2, 8_999), (3, 9_999)]]
    assert hits == [False, False, False, False]  # 10,000 and 8,999 are outside the band
    assert ind.evaluate(state, tx_at(4 * 60, 9_500)).value == 3
    assert ind.evaluate(state, tx_at(30 * 60, 9_500)).value == 1  # a day later the old ones are gone


def test_novelty_remembers_a_bounded_set():
    ind, state = NewDevice(min_history=1, memory=2, fresh=0), {}
    for minute, device in enumerate("abc"):
        ind.evaluate(state, tx_at(minute, device_id=device))
    assert ind.evaluate(state, tx_at(9, device_id="a")).hit  # forgotten: only b, c remembered
    assert not ind.evaluate(state, tx_at(10, device_id="c")).hit


def test_duplicate_value_does_not_grow_novelty_state():
    ind, state = NewCountry(), {}
    for minute in range(50):
        ind.evaluate(state, tx_at(minute, country="CN"))
    assert [item[0] for item in state["seen"]] == ["CN"] and state["n"] == 50


def test_burst_from_a_new_device_hits_throughout_its_fresh_window():
    ind, state = NewDevice(min_history=2, fresh="30m"), {}
    for minute in range(3):
        ind.evaluate(state, tx_at(minute, device_id="home"))
    assert [ind.evaluate(state, tx_at(m, device_id="evil")).hit for m in (10, 12, 39, 41)] == [True, True, True, False]


def test_device_first_seen_without_history_never_becomes_fresh():
    ind, state = NewDevice(min_history=2, fresh="30m"), {}
    assert [ind.evaluate(state, tx_at(m, device_id="first")).hit for m in range(5)] == [False] * 5


def test_unusual_hour_uses_local_time():
    ind, state = UnusualHour(utc_offset_hours=8, min_history=10, share=0.05), {}
    for day in range(12):
        ind.evaluate(state, tx_at(day * 1440 + 120))  # 02:00 UTC = 10:00 in Beijing
    assert state["h"][10] == 12
    assert ind.evaluate(state, tx_at(20 * 1440 + 125)).hit is False
    assert ind.evaluate(state, tx_at(20 * 1440 + 1140)).hit is True  # 19:00 UTC = 03:00 Beijing


def test_small_amount_burst_counts_distinct_merchants():
    ind, state = SmallAmountBurst(count=3, max_amount=5), {}
    for minute in range(3):
        signal = ind.evaluate(state, tx_at(minute, 1.0, merchant_id="same"))
    assert signal.hit and "at 1 merchants" in signal.reason


def test_decline_ratio_needs_enough_transactions():
    ind, state = DeclineRatio(min_tx=3, ratio=0.5), {}
    assert ind.evaluate(state, tx_at(0, status="declined")).value is None
    assert ind.evaluate(state, tx_at(1, status="declined")).value is None
    assert ind.evaluate(state, tx_at(2, status="approved")).value == pytest.approx(2 / 3, abs=1e-3)


def test_pass_through_needs_fan_in():
    ind, state = PassThrough(min_sources=3, ratio=0.8), {}
    for minute in range(3):
        ind.evaluate(state, tx_at(minute, 1000, direction="credit", counterparty_id="same-payer"))
    signal = ind.evaluate(state, tx_at(5, 2900, direction="debit"))
    assert signal.value == pytest.approx(0.967, abs=1e-3) and not signal.hit and "from 1 payers" in signal.reason


def test_every_indicator_is_documented_for_the_catalog():
    for name, cls in REGISTRY.items():
        assert cls.family and cls.typology and cls.__doc__ and ">>>" in cls.__doc__, name
        for field, info in cls.Params.model_fields.items():
            assert info.description, f"{name}.{field} has no description"
