"""The extended indicator library: hand-computed cases, first transactions, absent fields, late
events and bounded state for every indicator added beyond the original twelve."""

import json
import math
from collections import Counter

import pytest
from pydantic import ValidationError

from riskcockpit.catalog import stress_state
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators import REGISTRY
from riskcockpit.indicators.aml import BalanceDrain, CashIntensity, CrossBorderRatio
from riskcockpit.indicators.amount import AmountEwmaRatio, MaxMultiple, RoundAmount
from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.card_testing import DeclinedThenApproved, DistinctMerchantsSmall
from riskcockpit.indicators.counterparty import (
    CounterpartyFanIn,
    FanIn,
    FanOut,
    HighRiskMcc,
    MerchantCompromise,
    NewMerchant,
)
from riskcockpit.indicators.device_geo import (
    DeviceShared,
    GeoDistanceFromHome,
    HighRiskCountry,
    ImpossibleTravel,
    NewIpPrefix,
    UnusualChannel,
)
from riskcockpit.indicators.scoring import load_scoring_config
from riskcockpit.indicators.timing import DormantReactivation, FirstActivityLarge
from riskcockpit.indicators.velocity import AmountVelocityBaseline, RapidSuccession

NEW = [AmountVelocityBaseline, RapidSuccession, AmountEwmaRatio, MaxMultiple, RoundAmount, FanIn, FanOut,
       HighRiskMcc, NewMerchant, ImpossibleTravel, GeoDistanceFromHome, HighRiskCountry, UnusualChannel, NewIpPrefix,
       DormantReactivation, FirstActivityLarge, BalanceDrain, CrossBorderRatio, CashIntensity,
       DistinctMerchantsSmall, DeclinedThenApproved, MerchantCompromise, DeviceShared, CounterpartyFanIn]

FULL = dict(currency="CNY", direction="debit", channel="mobile", counterparty_id="C1", merchant_id="M1", mcc="5411",
            country="CN", device_id="D1", ip="36.1.2.3", lat=31.23, lon=121.47, status="approved")

SHANGHAI, BEIJING, MOSCOW = (31.23, 121.47), (39.90, 116.41), (55.76, 37.62)


def great_circle_km(a, b):
    """Spherical law of cosines: an independent formula from the indicators' haversine."""
    (p1, l1), (p2, l2) = [(math.radians(lat), math.radians(lon)) for lat, lon in (a, b)]
    cos = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(l2 - l1)
    return 6371.0 * math.acos(max(-1.0, min(1.0, cos)))


def run(ind, state, *txs):
    return [ind.evaluate(state, tx) for tx in txs]


# ------------------------------------------------------------------ the library as a whole

def test_registry_has_at_least_30_indicators_in_7_families():
    families = Counter(cls.family for cls in REGISTRY.values())
    assert len(REGISTRY) >= 32 and len(families) >= 7, families
    assert {cls.name for cls in NEW} <= set(REGISTRY) and len(NEW) >= 20


def test_every_new_indicator_is_configured_with_a_weight():
    config = load_scoring_config(DEFAULT_CONFIG_DIR)
    for cls in NEW:
        assert cls.name in config.indicators and config.indicators[cls.name].enabled, cls.name


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.name)
def test_first_transaction_with_every_field_never_hits(cls):
    for amount in (1.0, 30.0, 900.0):
        signal = cls().evaluate({}, tx_at(0, amount, **FULL))
        assert signal.hit is False and signal.name == cls.name


@pytest.mark.parametrize("cls", [c for c in NEW if c.requires], ids=lambda c: c.name)
def test_absent_required_field_is_not_applicable_never_a_hit(cls):
    for field in cls.requires:
        ind, state = cls(), {}
        fields = {k: v for k, v in FULL.items() if k != field}
        for minute in range(30):
            # Everything that could make it hit: big, tiny, abroad, night, declines...
            signal = ind.evaluate(state, tx_at(minute, [1.0, 60_000.0][minute % 2], **fields))
            assert signal.value is None and not signal.hit and f"no {field}" in signal.reason
        assert state == {}


@pytest.mark.parametrize("cls", [c for c in NEW if not c.requires], ids=lambda c: c.name)
def test_indicators_needing_only_the_contract_fields_work_on_bare_transactions(cls):
    ind, state = cls(), {}
    for minute in range(50):
        signal = ind.evaluate(state, tx_at(minute * 7.0, 100.0 + minute))
        assert signal.hit is False
    json.dumps(state)


@pytest.mark.parametrize("cls", sorted(REGISTRY.values(), key=lambda c: c.name), ids=lambda c: c.name)
def test_state_is_json_and_stops_growing_however_long_the_stream(cls):
    state, largest = stress_state(cls)  # the size docs/indicators.md states per indicator
    assert json.loads(json.dumps(state)) == state
    assert largest < 8_192, f"{cls.name} keeps up to {largest} bytes per {cls.entity}"
    # Three times the events, three times the bursts: a state its caps and windows do not hold
    # grows with them. (Longer numbers later in the stream add a few bytes.)
    longer = stress_state(cls, 9_000)[1]
    assert longer <= largest * 1.05, f"{cls.name}: {largest} bytes after 3,000 events, {longer} after 9,000"


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.name)
def test_late_and_equal_time_events_never_crash_and_values_stay_sane(cls):
    ind, state = cls(), {}
    for minute in [10, 5, 5, 20, 1, 20, 15, 0, 30, 29.99]:
        signal = ind.evaluate(state, tx_at(minute, 50.0 + minute, **dict(FULL, counterparty_id=f"C{minute}")))
        assert signal.value is None or (signal.value >= 0 and math.isfinite(signal.value))


# ------------------------------------------------------------------ velocity

def test_amount_velocity_baseline_hand_computed():
    ind, state = AmountVelocityBaseline(window="1h", factor=5, min_total=1000, min_history=3, alpha=0.5), {}
    assert [s.value for s in run(ind, state, tx_at(0, 100), tx_at(120, 100), tx_at(240, 100))] == [None] * 3
    # usual gap 2h > the 1h window, so the usual total is one typical payment: 100
    assert ind.evaluate(state, tx_at(360, 100)).value == 1.0
    signal = ind.evaluate(state, tx_at(370, 1000))
    assert signal.value == pytest.approx((100 + 1000) / 100) and signal.hit
    # late event at 365: its window (305, 365] holds the 100 at 360 but not the 1000 at 370;
    # the mean amount learned the 1000 (0.5 * 100 + 0.5 * 1000 = 550); the mean gap (0.5 * 2h +
    # 0.5 * 10 min = 65 min) still exceeds the window, so the usual total is one payment: 550
    late = ind.evaluate(state, tx_at(365, 50))
    assert late.value == pytest.approx((50 + 100) / 550, abs=1e-3) and not late.hit


def test_amount_velocity_baseline_needs_the_minimum_total():
    ind, state = AmountVelocityBaseline(window="1h", factor=5, min_total=5000, min_history=2), {}
    run(ind, state, tx_at(0, 10), tx_at(600, 10))
    signal = ind.evaluate(state, tx_at(601, 400))  # 41x the usual 10, but only 410 moved
    assert signal.value == pytest.approx(41.0) and not signal.hit


def test_rapid_succession_counts_gaps_in_a_row():
    ind, state = RapidSuccession(gap="30s", count=3, usual_gap_factor=0), {}
    values = [s.value for s in run(ind, state, *(tx_at(sec / 60) for sec in (0, 10, 20, 30)))]
    assert values == [0, 1, 2, 3] and ind.evaluate(state, tx_at(31 / 60)).hit
    assert ind.evaluate(state, tx_at(61 / 60)).value == 0  # exactly 30 s later: not back-to-back
    assert not ind.evaluate(state, tx_at(5)).hit


def test_rapid_succession_spares_an_entity_whose_rhythm_is_back_to_back():
    ind, state = RapidSuccession(gap="30s", count=3, min_history=5), {}
    signals = run(ind, state, *(tx_at(sec / 60) for sec in range(0, 600, 5)))  # every 5 s, always
    assert max(s.value for s in signals) >= 3 and not any(s.hit for s in signals)


def test_rapid_succession_late_event_uses_its_own_past():
    ind, state = RapidSuccession(gap="30s", count=3), {}
    run(ind, state, *(tx_at(sec / 60) for sec in (0, 10, 20, 30)))
    late = ind.evaluate(state, tx_at(15 / 60))  # 15 s: after 10 (5 s) after 0 (10 s); 20 and 30 are its future
    assert late.value == 2 and not late.hit
    # memory keeps count + 1 = 4 times: 10, 15, 20, 30; a run at 31 s covers all of them
    assert state["t"] == [t * 1000 + 1_767_225_600_000 for t in (10, 15, 20, 30)]
    assert ind.evaluate(state, tx_at(31 / 60)).value == 4


# ------------------------------------------------------------------ amount

def test_amount_ewma_ratio_hand_computed():
    ind, state = AmountEwmaRatio(alpha=0.5, min_history=2, ratio=10), {}
    assert [s.value for s in run(ind, state, tx_at(0, 100), tx_at(1, 300))] == [None, None]
    assert ind.evaluate(state, tx_at(2, 400)).value == 2.0       # average (100 + 300) / 2 = 200
    signal = ind.evaluate(state, tx_at(3, 3000))                  # average 200 + 0.5 * 200 = 300
    assert signal.value == 10.0 and signal.hit                    # at the ratio: a hit
    late = ind.evaluate(state, tx_at(1.5, 825))                   # average 300 + 0.5 * 2700 = 1650
    assert late.value == 0.5 and not late.hit


def test_max_multiple_hand_computed():
    ind, state = MaxMultiple(multiple=3, min_history=3), {}
    assert [s.value for s in run(ind, state, tx_at(0, 50), tx_at(1, 500), tx_at(2, 80))] == [None] * 3
    assert ind.evaluate(state, tx_at(3, 400)).value == 0.8
    assert ind.evaluate(state, tx_at(4, 1500)).hit                 # 3.0x the record 500
    signal = ind.evaluate(state, tx_at(0.5, 4000))                 # late, but the record is now 1,500
    assert signal.value == pytest.approx(4000 / 1500, abs=1e-3) and not signal.hit


def test_round_amount_granularity_and_minimum():
    ind = RoundAmount(granularity=1000, min_amount=5000)
    cases = {5_000: True, 25_000: True, 10_000.5: False, 9_999.99: False, 4_000: False, 9_999.999: True}
    assert {a: ind.evaluate({}, tx_at(0, a)).hit for a in cases} == cases
    assert ind.evaluate({}, tx_at(0, 25_000)).value == 25.0
    assert RoundAmount(granularity=500, min_amount=1000).evaluate({}, tx_at(0, 1500)).hit


# ------------------------------------------------------------------ counterparties and merchants

def credit(minute, amount, payer, **kw):
    return tx_at(minute, amount, direction="credit", counterparty_id=payer, **kw)


def test_fan_in_counts_distinct_sizeable_payers_in_window():
    ind, state = FanIn(window="1h", count=3, min_amount=1000), {}
    signals = run(ind, state, credit(0, 2000, "a"), credit(1, 2000, "a"), credit(2, 500, "b"),
                  credit(3, 1500, "b"), tx_at(4, 9000, direction="debit", counterparty_id="z"), credit(5, 3000, "c"))
    assert [s.value for s in signals] == [1, 1, 0, 2, 0, 3]
    assert [s.hit for s in signals] == [False] * 5 + [True]
    # late credit at minute 0.5: its window holds only a at minute 0
    assert ind.evaluate(state, credit(0.5, 1000, "e")).value == 2
    assert ind.evaluate(state, credit(62, 1000, "d")).value == 3  # a (0, 1), e (0.5) fell out; b, c, d remain
    # events older than the newest one's window are forgotten: a later late event cannot see them
    assert ind.evaluate(state, credit(0.7, 1000, "f")).value == 1


def test_fan_out_counts_distinct_payees():
    ind, state = FanOut(window="1h", count=4, min_amount=1000), {}
    debits = [tx_at(m, 1000, direction="debit", counterparty_id=p) for m, p in enumerate("abacd")]
    assert [s.value for s in run(ind, state, *debits)] == [1, 2, 2, 3, 4]
    assert ind.evaluate(state, credit(6, 5000, "x")).reason == "not a debit of at least 1000"


def test_fan_in_state_keeps_only_qualifying_credits():
    ind, state = FanIn(), {}
    run(ind, state, credit(0, 10, "a"), tx_at(1, 5000, direction="debit", counterparty_id="b"), credit(2, 2000, "c"))
    assert [e[1] for e in state["w"]] == ["c"]


def test_high_risk_mcc_default_and_configured_lists():
    ind = HighRiskMcc()
    assert [ind.evaluate({}, tx_at(0, mcc=m)).hit for m in ("7995", "6051", "4829", "6211", "5411")] == \
           [True, True, True, True, False]
    assert HighRiskMcc(mccs=["5411"]).evaluate({}, tx_at(0, mcc="5411")).hit
    with pytest.raises(ValidationError):
        HighRiskMcc(mccs=["79"])


def test_new_merchant_is_the_novelty_mechanism_on_merchants():
    ind, state = NewMerchant(min_history=2, fresh="10m"), {}
    hits = [s.hit for s in run(ind, state, *(tx_at(m, merchant_id=x) for m, x in enumerate("aab")))]
    assert hits == [False, False, True]
    assert ind.evaluate(state, tx_at(5, merchant_id="b")).hit        # still fresh
    assert not ind.evaluate(state, tx_at(30, merchant_id="b")).hit   # known by now
    assert state["n"] == 5 and [v[0] for v in state["seen"]] == ["a", "b"]


# ------------------------------------------------------------------ device, geography, channel

def test_impossible_travel_speed_is_distance_over_time():
    ind, state = ImpossibleTravel(max_kmh=900, min_km=200, min_gap="60s"), {}
    assert ind.evaluate(state, tx_at(0, lat=SHANGHAI[0], lon=SHANGHAI[1])).value is None
    km = great_circle_km(SHANGHAI, BEIJING)
    signal = ind.evaluate(state, tx_at(60, lat=BEIJING[0], lon=BEIJING[1]))
    assert signal.value == pytest.approx(km / 1.0, rel=1e-3) and signal.hit      # ~1,067 km in 1 h
    slow = ind.evaluate(state, tx_at(240, lat=SHANGHAI[0], lon=SHANGHAI[1]))
    assert slow.value == pytest.approx(km / 3.0, rel=1e-3) and not slow.hit      # 3 h later


def test_impossible_travel_ignores_jitter_and_floors_tiny_gaps():
    ind, state = ImpossibleTravel(min_km=200, min_gap="60s"), {}
    ind.evaluate(state, tx_at(0, lat=31.20, lon=121.47))
    # 1 s later, 0.045 degrees of latitude (5 km) away: the gap counts as 60 s, 5 km is jitter
    jitter = ind.evaluate(state, tx_at(1 / 60, lat=31.245, lon=121.47))
    km = great_circle_km((31.20, 121.47), (31.245, 121.47))
    assert jitter.value == pytest.approx(km * 60, rel=1e-3) and not jitter.hit
    # Moscow 10 s later: still a 60 s gap, and truly impossible
    far = ind.evaluate(state, tx_at(11 / 60, lat=MOSCOW[0], lon=MOSCOW[1]))
    assert far.value == pytest.approx(great_circle_km((31.245, 121.47), MOSCOW) * 60, rel=1e-3) and far.hit


def test_impossible_travel_late_event_is_compared_with_its_neighbour_in_time():
    ind, state = ImpossibleTravel(), {}
    run(ind, state, tx_at(0, lat=SHANGHAI[0], lon=SHANGHAI[1]), tx_at(600, lat=MOSCOW[0], lon=MOSCOW[1]))
    late = ind.evaluate(state, tx_at(60, lat=BEIJING[0], lon=BEIJING[1]))   # compared with Shanghai at 0
    assert late.value == pytest.approx(great_circle_km(SHANGHAI, BEIJING), rel=1e-3)
    assert [p[0] for p in state["p"]] == sorted(p[0] for p in state["p"])


def test_geo_distance_from_home_hand_computed_and_robust_to_a_trip():
    ind, state = GeoDistanceFromHome(km=500, min_history=3), {}
    run(ind, state, *(tx_at(m, lat=SHANGHAI[0], lon=SHANGHAI[1]) for m in range(3)))
    assert ind.evaluate(state, tx_at(3, lat=SHANGHAI[0], lon=SHANGHAI[1])).value == pytest.approx(0, abs=0.1)
    far = ind.evaluate(state, tx_at(10, lat=MOSCOW[0], lon=MOSCOW[1]))
    assert far.hit and far.value == pytest.approx(great_circle_km(SHANGHAI, MOSCOW), rel=1e-3)
    # a fraudster's burst from Moscow is not learned: home stays in Shanghai
    run(ind, state, *(tx_at(11 + m, lat=MOSCOW[0], lon=MOSCOW[1]) for m in range(20)))
    assert ind.evaluate(state, tx_at(40, lat=SHANGHAI[0], lon=SHANGHAI[1])).value == pytest.approx(0, abs=0.1)
    beijing = ind.evaluate(state, tx_at(50, lat=BEIJING[0], lon=BEIJING[1]))
    assert beijing.value == pytest.approx(great_circle_km(SHANGHAI, BEIJING), rel=1e-3) and beijing.hit


def test_geo_distance_from_home_follows_a_real_move():
    ind, state = GeoDistanceFromHome(km=500, min_history=3, relocate_after="7d"), {}
    run(ind, state, *(tx_at(m, lat=SHANGHAI[0], lon=SHANGHAI[1]) for m in range(5)))
    day = 1440
    run(ind, state, *(tx_at(d * day, lat=MOSCOW[0], lon=MOSCOW[1]) for d in range(1, 9)))  # 8 days in Moscow
    assert state["n"] == 1  # home restarted in Moscow on day 8
    run(ind, state, *(tx_at(9 * day + m, lat=MOSCOW[0], lon=MOSCOW[1]) for m in range(3)))
    assert ind.evaluate(state, tx_at(10 * day, lat=MOSCOW[0], lon=MOSCOW[1])).value == pytest.approx(0, abs=0.1)


def test_geo_distance_from_home_averages_across_the_antimeridian():
    ind, state = GeoDistanceFromHome(min_history=2), {}
    run(ind, state, tx_at(0, lat=0, lon=179.5), tx_at(1, lat=0, lon=-179.5))
    # the centroid is at longitude 180 (averaging degrees would give 0, half the globe away)
    assert ind.evaluate(state, tx_at(2, lat=0, lon=180)).value == pytest.approx(0, abs=0.1)
    assert ind.evaluate(state, tx_at(3, lat=0, lon=179.5)).value == \
        pytest.approx(great_circle_km((0, 179.5), (0, 180)), abs=0.5)  # ~56 km


def test_high_risk_country_list_is_a_parameter():
    assert [HighRiskCountry().evaluate({}, tx_at(0, country=c)).hit for c in ("KP", "IR", "MM", "CN")] == \
           [True, True, True, False]
    assert HighRiskCountry(countries=["CN"]).evaluate({}, tx_at(0, country="CN")).hit
    with pytest.raises(ValidationError):
        HighRiskCountry(countries=["iran"])


def test_unusual_channel_share_of_profile():
    ind, state = UnusualChannel(min_history=10, share=0.1), {}
    run(ind, state, *(tx_at(m, channel="branch") for m in range(9)), tx_at(9, channel="mobile"))
    mobile = ind.evaluate(state, tx_at(10, channel="mobile"))
    assert mobile.value == pytest.approx(1 / 10) and not mobile.hit      # 10 % is not below 10 %
    atm = ind.evaluate(state, tx_at(11, channel="atm"))
    assert atm.value == 0.0 and atm.hit
    assert state["n"] == 12 and state["c"] == {"branch": 9, "mobile": 2, "atm": 1}


def test_unusual_channel_profile_is_bounded():
    ind, state = UnusualChannel(max_channels=2, max_count=10), {}
    run(ind, state, *(tx_at(m, channel=c) for m, c in enumerate("aaaaaabbbc")))
    assert state == {"c": {"a": 6, "c": 1}, "n": 7}  # c took the place of b, the rarest
    run(ind, state, *(tx_at(20 + m, channel="a") for m in range(4)))
    assert state == {"c": {"a": 5}, "n": 5}  # 11 > 10: halved (10 // 2, 1 // 2), c faded out


def test_new_ip_prefix_groups_networks():
    ind, state = NewIpPrefix(min_history=2, fresh=0, ipv4_prefix=24, ipv6_prefix=48), {}
    ips = ["36.1.2.3", "36.1.2.99", "36.1.2.200", "36.1.3.1", "2001:db8:1:2::5", "2001:db8:1:ffff::1"]
    assert [s.hit for s in run(ind, state, *(tx_at(m, ip=ip) for m, ip in enumerate(ips)))] == \
           [False, False, False, True, True, False]
    assert [v[0] for v in state["seen"]] == ["36.1.2.0/24", "36.1.3.0/24", "2001:db8:1::/48"]


# ------------------------------------------------------------------ time

def test_dormant_reactivation_days_idle_and_the_burst_after():
    day = 1440
    ind, state = DormantReactivation(idle="90d", fresh="1h"), {}
    assert ind.evaluate(state, tx_at(0)).value is None
    assert ind.evaluate(state, tx_at(89 * day)).hit is False
    woke = ind.evaluate(state, tx_at(89 * day + 95 * day))
    assert woke.value == 95.0 and woke.hit
    assert ind.evaluate(state, tx_at(184 * day + 59)).hit               # within the hour after waking
    after = ind.evaluate(state, tx_at(184 * day + 180))
    assert not after.hit and after.value == pytest.approx(121 / 1440, abs=0.01)
    late = ind.evaluate(state, tx_at(10 * day))                          # a late event was not idle
    assert late.value == 0.0 and not late.hit


def test_first_activity_large_can_hit_the_very_first_transaction():
    ind = FirstActivityLarge(first=3, amount=3000)
    assert ind.evaluate({}, tx_at(0, 5000, direction="debit", channel="mobile")).hit      # by design
    assert ind.evaluate({}, tx_at(0, 5000)).hit                       # direction unknown: counts
    assert not ind.evaluate({}, tx_at(0, 5000, direction="credit")).hit
    assert not ind.evaluate({}, tx_at(0, 5000, direction="debit", channel="branch")).hit
    assert not ind.evaluate({}, tx_at(0, 2999, direction="debit")).hit


def test_first_activity_large_only_watches_the_first_transactions():
    ind, state = FirstActivityLarge(first=2, amount=1000), {}
    signals = run(ind, state, *(tx_at(m, 5000, direction="debit") for m in range(3)))
    assert [s.hit for s in signals] == [True, True, False] and signals[2].value is None
    assert state == {"n": 2}


# ------------------------------------------------------------------ AML flows

def test_balance_drain_estimated_balance():
    ind, state = BalanceDrain(ratio=0.8, min_balance=1000), {}
    assert ind.evaluate(state, tx_at(0, 500, direction="debit")).value is None   # nothing seen to drain
    assert state["b"] == 0  # floored at 0
    run(ind, state, tx_at(1, 6000, direction="credit"), tx_at(2, 9000, direction="credit", status="declined"))
    first = ind.evaluate(state, tx_at(3, 1000, direction="debit"))
    assert first.value == pytest.approx(1000 / 6000, abs=1e-3) and not first.hit
    drain = ind.evaluate(state, tx_at(4, 4500, direction="debit"))
    assert drain.value == pytest.approx(4500 / 5000) and drain.hit
    assert state["b"] == 500
    assert ind.evaluate(state, tx_at(5, 100, direction="credit")).reason == "not a debit"


def test_cross_border_ratio_hand_computed():
    ind, state = CrossBorderRatio(window="1h", ratio=0.6, min_tx=3, min_history=5), {}
    assert [s.value for s in run(ind, state, *(tx_at(m, country="CN") for m in range(6)))] == [None] * 5 + [0.0]
    mixed = ind.evaluate(state, tx_at(10, country="RU"))       # CN x6 and this RU in the window
    assert mixed.value == pytest.approx(1 / 7, abs=1e-3) and not mixed.hit
    alone = run(ind, state, *(tx_at(m, country="RU") for m in (70, 71, 72)))   # the CN ones left
    assert [s.value for s in alone] == [None, None, 1.0] and alone[2].hit        # min_tx 3
    home = ind.evaluate(state, tx_at(73, country="CN"))        # 3 of 4 abroad, but this one is at home
    assert home.value == 0.75 and not home.hit
    late = ind.evaluate(state, tx_at(71.5, country="RU"))      # its window: RU at 70 and 71, not 72, 73
    assert late.value == 1.0 and late.hit


def test_cash_intensity_hand_computed():
    ind, state = CashIntensity(window="24h", share=0.8, min_cash=10_000), {}
    assert ind.evaluate(state, tx_at(0, 500, channel="card")).reason == "not cash"
    first = ind.evaluate(state, tx_at(60, 6000, channel="branch"))
    assert first.value == pytest.approx(6000 / 6500, abs=1e-3) and not first.hit   # only 6,000 in cash
    second = ind.evaluate(state, tx_at(120, 6000, channel="atm"))
    assert second.value == pytest.approx(12000 / 12500, abs=1e-3) and second.hit
    next_day = ind.evaluate(state, tx_at(120 + 1440, 6000, channel="atm"))          # all earlier ones left
    assert next_day.value == 1.0 and not next_day.hit


# ------------------------------------------------------------------ card testing

def test_distinct_merchants_small_counts_shops_not_payments():
    ind, state = DistinctMerchantsSmall(window="10m", max_amount=10, merchants=4), {}
    small = [tx_at(m, 1.0, merchant_id=x) for m, x in enumerate("aaabbc")]
    assert [s.value for s in run(ind, state, *small)] == [1, 1, 1, 2, 2, 3]
    assert ind.evaluate(state, tx_at(6, 500.0, merchant_id="d")).value == 0.0   # not small: ignored
    assert ind.evaluate(state, tx_at(7, 2.0, merchant_id="d")).hit
    assert ind.evaluate(state, tx_at(2.5, 2.0, merchant_id="z")).value == 2     # late: sees a (0-2) only
    assert ind.evaluate(state, tx_at(13, 2.0, merchant_id="e")).value == 4      # a, z, b at 3 left: b c d e


def test_declined_then_approved_hand_computed():
    ind, state = DeclinedThenApproved(window="1h", declines=2), {}
    statuses = ["approved", "declined", "declined", "approved", "approved", "declined", "approved"]
    signals = run(ind, state, *(tx_at(m, status=s) for m, s in enumerate(statuses)))
    assert [s.value for s in signals] == [0, 0, 0, 2, 0, 0, 1]
    assert [s.hit for s in signals] == [False, False, False, True, False, False, False]
    # declines more than an hour old do not count
    run(ind, state, tx_at(100, status="declined"), tx_at(101, status="declined"))
    assert ind.evaluate(state, tx_at(200, status="approved")).value == 0


def test_declined_then_approved_late_approval_sees_its_own_past():
    ind, state = DeclinedThenApproved(declines=2), {}
    run(ind, state, *(tx_at(m, status="declined") for m in (0, 1, 2)), tx_at(3, status="approved"))
    assert ind.evaluate(state, tx_at(1.5, status="approved")).value == 2   # after the declines at 0 and 1


def test_the_evaluator_loop_says_and_learns_what_each_indicator_evaluated_alone_does():
    from datetime import UTC, datetime

    from riskcockpit.ground.contract import Transaction
    from riskcockpit.indicators.base import Evaluator
    from riskcockpit.indicators.scoring import Scorer
    from riskcockpit.streams.generator import SyntheticStream

    scorer = Scorer(load_scoring_config(DEFAULT_CONFIG_DIR))
    indicators = [ind for ind, _ in scorer.indicators]
    evaluator, looped, alone = Evaluator(indicators), {}, {}
    stream = SyntheticStream(seed=4, accounts=300, rate=5, start=datetime(2026, 11, 1, tzinfo=UTC), fraud_share=0.05)
    not_applicable = 0
    for r in stream.take(3000):
        tx = Transaction.model_validate(r)
        # One state dict per indicator whatever its entity: this compares the loop, not the stages.
        key = tx.account_id
        got = evaluator.evaluate(looped.setdefault(key, {}), tx)
        expected = [ind.evaluate(alone.setdefault(key, {}).setdefault(ind.name, {}), tx) for ind in indicators]
        assert got == expected
        not_applicable += sum(s.reason.startswith("not applicable") for s in got)
    assert not_applicable > 1000  # transactions without a merchant, a device, a counterparty...
    # The loop makes no state for an indicator that was never applicable; otherwise the same.
    def learned(states):
        return {k: {n: state for n, state in v.items() if state} for k, v in states.items()}

    assert learned(looped) == learned(alone) and len(learned(alone)) > 200


def test_a_window_kept_in_arrival_order_by_an_earlier_release_is_sorted_and_keeps_its_history():
    """States in changelogs written before windows were kept sorted hold ``e`` in arrival order
    (``s`` marked those also in time order); an upgraded worker must count them, late one included."""
    from riskcockpit.indicators.velocity import AmountVelocity

    ind = AmountVelocity(window="1h", limit=1_000)
    old = {"e": [[tx_at(0).ts_ms, 400.0], [tx_at(20).ts_ms, 300.0], [tx_at(10).ts_ms, 200.0]]}  # 10 came late
    fresh: dict = {}
    for minute, amount in ((0, 400.0), (20, 300.0), (10, 200.0)):
        ind.evaluate(fresh, tx_at(minute, amount))
    for state in (old, fresh):
        signal = ind.evaluate(state, tx_at(30, 150.0))
        assert (signal.value, signal.hit) == (1050.0, True)
        assert [e[0] for e in state["w"]] == sorted(e[0] for e in state["w"]) and "e" not in state and "s" not in state
    assert old == fresh
