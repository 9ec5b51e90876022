"""Behaviour of the synthetic transaction stream and the wall-clock pacer."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import count, islice

import pytest

from riskcockpit.streams.generator import SyntheticStream, pace
from riskcockpit.streams.scenarios import REPORTING_THRESHOLD, SCENARIOS

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def _incidents(txs: list[dict]) -> dict[str, list[tuple[int, dict]]]:
    out: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for i, tx in enumerate(txs):
        if tx.get("attributes"):
            out[tx["attributes"]["incident"]].append((i, tx))
    return out


@pytest.fixture(scope="module")
def stream() -> SyntheticStream:
    return SyntheticStream(seed=7, start=START, fraud_share=0.02)


@pytest.fixture(scope="module")
def txs(stream: SyntheticStream) -> list[dict]:
    return stream.take(50_000)


@pytest.fixture(scope="module")
def slow_txs() -> tuple[SyntheticStream, list[dict]]:
    # 1 tx/s over 90k tx is ~25 hours of event time: long enough to see whole
    # structuring and mule incidents and a full day of the day profiles.
    s = SyntheticStream(seed=7, rate=1.0, start=START, fraud_share=0.02)
    return s, s.take(90_000)


# ---------------------------------------------------------------- determinism
def test_same_seed_and_start_replay_identically():
    a = SyntheticStream(seed=11, start=START).take(5000)
    b = SyntheticStream(seed=11, start=START).take(5000)
    assert a == b
    # Re-iterating one object replays from the beginning as well.
    s = SyntheticStream(seed=11, start=START)
    assert list(islice(iter(s), 5000)) == a


def test_different_seed_gives_a_different_stream():
    a = SyntheticStream(seed=11, start=START).take(5000)
    b = SyntheticStream(seed=12, start=START).take(5000)
    strip = lambda txs: [{k: v for k, v in t.items() if k != "tx_id"} for t in txs]  # noqa: E731
    assert strip(a) != strip(b)
    assert sum(x["account_id"] == y["account_id"] for x, y in zip(a, b, strict=True)) < 500


def test_default_start_is_now_rounded_to_the_second():
    before = datetime.now(UTC)
    s = SyntheticStream(accounts=50)
    assert s.start.microsecond == 0
    assert abs((s.start - before).total_seconds()) <= 2
    first = datetime.fromisoformat(s.take(1)[0]["ts"])
    assert first >= s.start


# --------------------------------------------------------------------- shape
def test_event_time_order_ids_and_amounts(txs):
    prev = None
    for tx in txs:
        ts = datetime.fromisoformat(tx["ts"])
        assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", tx["ts"])
        if prev is not None:
            assert ts >= prev
        prev = ts
        assert isinstance(tx["amount"], float)
        assert tx["amount"] > 0 and math.isfinite(tx["amount"])
        assert round(tx["amount"], 2) == tx["amount"]
    assert len({tx["tx_id"] for tx in txs}) == len(txs)
    assert txs[0]["tx_id"] == f"T7-{int(START.timestamp())}-0000000000"
    assert datetime.fromisoformat(txs[0]["ts"]) >= START


def test_normal_arrivals_follow_the_configured_rate(txs, stream):
    normal = [datetime.fromisoformat(t["ts"]) for t in txs if not t["attributes"]]
    span = (normal[-1] - START).total_seconds()
    assert len(normal) / span == pytest.approx(stream.rate, rel=0.05)


def test_records_are_json_and_pass_the_transaction_contract():
    contract = pytest.importorskip("riskcockpit.ground.contract")
    # The contract rejects timestamps more than a day ahead of the wall clock.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for tx in SyntheticStream(seed=3, start=start, fraud_share=0.05).take(20_000):
        raw = json.dumps(tx).encode()
        parsed = contract.parse_transaction(raw)
        assert parsed.tx_id == tx["tx_id"]


def test_field_vocabulary(txs):
    for tx in txs:
        assert re.fullmatch(r"A\d{6}", tx["account_id"])
        assert tx["direction"] in ("debit", "credit")
        assert tx["channel"] in ("card", "transfer", "atm", "mobile", "branch")
        assert tx["status"] in ("approved", "declined")
        assert tx["currency"] in ("CNY", "USD", "EUR", "HKD")
        assert re.fullmatch(r"[A-Z]{2}", tx["country"])
        if tx["channel"] == "card":
            assert re.fullmatch(r"M\d{5}", tx["merchant_id"]) and re.fullmatch(r"\d{4}", tx["mcc"])
        if tx["channel"] == "transfer":
            assert re.fullmatch(r"[CA]\d{6,}", tx["counterparty_id"])
        assert -90 <= tx["lat"] <= 90 and -180 <= tx["lon"] <= 180
    currencies = Counter(tx["currency"] for tx in txs)
    assert currencies.most_common(1)[0][0] == "CNY"
    assert currencies["CNY"] / len(txs) > 0.7


def test_normal_card_declines_are_rare_but_present(txs):
    cards = [t for t in txs if t["channel"] == "card" and not t["attributes"]]
    declined = sum(t["status"] == "declined" for t in cards) / len(cards)
    assert 0.005 <= declined <= 0.03


# ----------------------------------------------------------------- scenarios
def test_every_scenario_appears_with_labels(txs):
    seen = Counter()
    for tx in txs:
        attrs = tx["attributes"]
        if attrs:
            assert set(attrs) == {"scenario", "incident"}
            assert attrs["scenario"] in SCENARIOS
            assert re.fullmatch(re.escape(attrs["scenario"]) + r"-\d+", attrs["incident"])
            seen[attrs["scenario"]] += 1
        else:
            assert attrs == {}
    assert set(seen) == set(SCENARIOS)


MULTI_VICTIM = ("fraud_ring", "merchant_cash_out")


def test_incidents_stay_on_one_account_unless_they_work_through_victims(txs):
    for name, rows in _incidents(txs).items():
        accounts = {tx["account_id"] for _, tx in rows}
        assert len(accounts) == 1 or name.startswith(MULTI_VICTIM), name


def test_rings_and_colluding_merchants_recur_across_incidents(slow_txs):
    """What the device's, the beneficiary's and the merchant's own state can learn from."""
    _, txs = slow_txs
    by_kind = {kind: [rows for name, rows in _incidents(txs).items() if name.startswith(kind + "-")]
               for kind in MULTI_VICTIM}
    assert len(by_kind["fraud_ring"]) >= 8 and len(by_kind["merchant_cash_out"]) >= 8
    devices = Counter(tx["device_id"] for rows in by_kind["fraud_ring"] for tx in {t["device_id"]: t for _, t in rows}.values())
    payees = {tx["counterparty_id"] for rows in by_kind["fraud_ring"] for _, tx in rows}
    assert len(devices) <= 12 and max(devices.values()) >= 2 and len(payees) <= 12  # 6 rings of 2 and 2
    assert max(len({tx["account_id"] for _, tx in rows}) for rows in by_kind["fraud_ring"]) >= 3
    merchants = Counter(rows[0][1]["merchant_id"] for rows in by_kind["merchant_cash_out"])
    assert len(merchants) <= 6 and max(merchants.values()) >= 2
    assert all(len({tx["merchant_id"] for _, tx in rows}) == 1 for rows in by_kind["merchant_cash_out"])


def test_structuring_stays_just_under_the_threshold(slow_txs):
    _, txs = slow_txs
    rows = [t for t in txs if t["attributes"].get("scenario") == "structuring"]
    assert len(rows) >= 20
    for t in rows:
        assert 0.9 * REPORTING_THRESHOLD <= t["amount"] < REPORTING_THRESHOLD
        assert t["currency"] == "CNY"
    # Several deposits per incident, spread over hours rather than seconds.
    spans = []
    for rows_ in _incidents(txs).values():
        if rows_[0][1]["attributes"]["scenario"] == "structuring" and len(rows_) >= 4:
            first, last = (datetime.fromisoformat(rows_[k][1]["ts"]) for k in (0, -1))
            spans.append((last - first).total_seconds())
    assert spans and max(spans) > 3600 and max(spans) < 7 * 3600


def test_card_testing_is_small_distinct_and_often_declined(txs):
    rows = [t for t in txs if t["attributes"].get("scenario") == "card_testing"]
    assert rows
    assert all(t["amount"] <= 5.0 and t["channel"] == "card" for t in rows)
    declined = sum(t["status"] == "declined" for t in rows) / len(rows)
    assert 0.35 <= declined <= 0.75
    for name, inc in _incidents(txs).items():
        if not name.startswith("card_testing"):
            continue
        merchants = [tx["merchant_id"] for _, tx in inc]
        assert len(set(merchants)) == len(merchants)
        first, last = (datetime.fromisoformat(inc[k][1]["ts"]) for k in (0, -1))
        assert (last - first).total_seconds() < 15 * 60
        if len(inc) >= 10:
            assert any(tx["status"] == "declined" for _, tx in inc)


def test_account_takeover_uses_never_seen_device_and_country(txs, stream):
    devices: dict[str, set] = defaultdict(set)
    countries: dict[str, set] = defaultdict(set)
    incident_start: dict[str, int] = {}
    for i, tx in enumerate(txs):
        if tx["attributes"].get("scenario") == "account_takeover":
            incident_start.setdefault(tx["attributes"]["incident"], i)
    checked = 0
    for i, tx in enumerate(txs):
        acct = tx["account_id"]
        inc = tx["attributes"].get("incident")
        if inc in incident_start:
            # The device/country must be absent from everything the account
            # did before this incident began (the burst itself reuses them).
            if incident_start[inc] == i:
                prior_dev, prior_cty = set(devices[acct]), set(countries[acct])
                checked += 1
            assert tx["device_id"] not in prior_dev
            assert tx["country"] not in prior_cty
            assert tx["country"] != stream.profile(acct).home_country
            assert tx["direction"] == "debit" and tx["channel"] in ("mobile", "transfer")
        if "device_id" in tx:
            devices[acct].add(tx["device_id"])
        countries[acct].add(tx["country"])
    assert checked >= 10


def test_account_takeover_is_a_fast_far_high_value_burst(txs, stream):
    n = 0
    for name, inc in _incidents(txs).items():
        if not name.startswith("account_takeover"):
            continue
        p = stream.profile(inc[0][1]["account_id"])
        assert len({tx["device_id"] for _, tx in inc}) == 1
        for _, tx in inc:
            assert 5 * p.typical_amount * 0.99 <= tx["amount"] <= 20 * p.typical_amount * 1.01
            assert _km(p.lat, p.lon, tx["lat"], tx["lon"]) > 1000
            assert tx["counterparty_id"] not in p.counterparties
        first, last = (datetime.fromisoformat(inc[k][1]["ts"]) for k in (0, -1))
        assert (last - first).total_seconds() < 10 * 60
        n += len(inc) >= 4
    assert n >= 5


def test_mule_fans_in_then_passes_most_money_out(slow_txs):
    s, txs = slow_txs
    t_first = datetime.fromisoformat(txs[0]["ts"])
    t_last = datetime.fromisoformat(txs[-1]["ts"])
    complete = 0
    for name, inc in _incidents(txs).items():
        if not name.startswith("mule"):
            continue
        first = datetime.fromisoformat(inc[0][1]["ts"])
        # Only incidents fully inside the window (a mule spans < 2 h).
        if first - t_first < timedelta(hours=2) or t_last - first < timedelta(hours=2):
            continue
        credits = [tx for _, tx in inc if tx["direction"] == "credit"]
        debits = [tx for _, tx in inc if tx["direction"] == "debit"]
        assert 4 <= len(credits) <= 8 and 1 <= len(debits) <= 3
        assert len({tx["counterparty_id"] for tx in credits}) == len(credits)
        p = s.profile(inc[0][1]["account_id"])
        assert not {tx["counterparty_id"] for tx in credits + debits} & set(p.counterparties)
        # Fan-in strictly before fan-out, fan-out within an hour of the last credit.
        last_in = max(datetime.fromisoformat(tx["ts"]) for tx in credits)
        assert all(datetime.fromisoformat(tx["ts"]) > last_in for tx in debits)
        assert all(datetime.fromisoformat(tx["ts"]) - last_in <= timedelta(hours=1) for tx in debits)
        ratio = sum(tx["amount"] for tx in debits) / sum(tx["amount"] for tx in credits)
        assert 0.899 <= ratio <= 0.981
        complete += 1
    assert complete >= 5


def test_dormant_accounts_only_move_in_reactivation(slow_txs):
    s, txs = slow_txs
    dormant = {p.account_id for p in s.profiles if p.dormant}
    assert 0.01 * len(s.profiles) <= len(dormant) <= 0.03 * len(s.profiles)
    seen_devices = {d for p in s.profiles for d, _ in p.devices}
    woke = 0
    for tx in txs:
        if tx["account_id"] in dormant:
            assert tx["attributes"].get("scenario") == "dormant_reactivation"
            assert tx["device_id"] not in seen_devices
            assert tx["direction"] == "debit"
            assert tx["amount"] >= 10 * s.profile(tx["account_id"]).typical_amount * 0.99
            woke += 1
        elif tx["attributes"].get("scenario") == "dormant_reactivation":
            pytest.fail(f"reactivation on a non-dormant account: {tx}")
    assert woke > 0


# -------------------------------------------------------------------- habits
def test_busy_account_stays_home(txs, stream):
    normal = Counter(t["account_id"] for t in txs if not t["attributes"])
    busiest, n = normal.most_common(1)[0]
    assert n >= 50
    home = stream.profile(busiest).home_country
    rows = [t for t in txs if t["account_id"] == busiest and not t["attributes"]]
    assert sum(t["country"] == home for t in rows) / len(rows) >= 0.9
    # Their usual merchants / counterparties dominate as well.
    p = stream.profile(busiest)
    usual = {m for m, _ in p.merchants} | set(p.counterparties)
    keyed = [t.get("merchant_id") or t.get("counterparty_id") for t in rows]
    keyed = [k for k in keyed if k]
    assert sum(k in usual for k in keyed) / len(keyed) >= 0.7
    # And activity is skewed: the busiest account is far above the median.
    counts = sorted(normal.values())
    assert n >= 10 * counts[len(counts) // 2]


def test_normal_amounts_and_locations_follow_habits(txs, stream):
    per_acct: dict[str, list[dict]] = defaultdict(list)
    for t in txs:
        if not t["attributes"]:
            per_acct[t["account_id"]].append(t)
    busy = [a for a, rows in per_acct.items() if len(rows) >= 40][:20]
    assert len(busy) >= 5
    for a in busy:
        p = stream.profile(a)
        cards = [t["amount"] for t in per_acct[a] if t["channel"] == "card"]
        if len(cards) >= 10:
            med = sorted(cards)[len(cards) // 2]
            assert p.typical_amount / 4 <= med <= p.typical_amount * 4
        for t in per_acct[a]:
            assert _km(p.lat, p.lon, t["lat"], t["lon"]) < 20


def test_day_profile_is_visible(slow_txs):
    s, txs = slow_txs
    assert datetime.fromisoformat(txs[-1]["ts"]) - START > timedelta(hours=24)
    by_hour: dict[str, Counter] = defaultdict(Counter)
    for t in txs:
        if t["attributes"]:
            continue
        p = s.profile(t["account_id"])
        local_hour = (datetime.fromisoformat(t["ts"]).hour + p.utc_offset) % 24
        by_hour[p.archetype][local_hour] += 1

    def per_hour(arch: str, hours: range) -> float:
        return sum(by_hour[arch][h % 24] for h in hours) / len(hours)

    # Total arrivals are constant, so quiet hours of one group are filled by
    # others; the peak/trough contrast within a group must still be stark.
    assert per_hour("office", range(9, 17)) > 5 * per_hour("office", range(5))
    assert per_hour("evening", range(19, 23)) > 5 * per_hour("evening", range(8, 13))
    assert per_hour("night_owl", range(23, 27)) > 10 * per_hour("night_owl", range(9, 18))
    assert per_hour("early_bird", range(5, 9)) > 5 * per_hour("early_bird", range(18, 24))


# ------------------------------------------------------------------- volumes
@pytest.mark.parametrize("rate,n", [(200.0, 50_000), (5000.0, 50_000), (2.0, 60_000)])
def test_fraud_share_is_near_requested(rate, n):
    txs = SyntheticStream(seed=7, rate=rate, start=START, fraud_share=0.02).take(n)
    share = sum(bool(t["attributes"]) for t in txs) / len(txs)
    assert 0.5 * 0.02 <= share <= 2 * 0.02


def test_zero_fraud_share_is_clean():
    txs = SyntheticStream(seed=7, start=START, fraud_share=0.0).take(20_000)
    assert not any(t["attributes"] for t in txs)


# ---------------------------------------------------------------------- pace
class FakeClock:
    """``pace``'s clock and sleep: items cost no time, sleeping advances the clock exactly, so
    the schedule is checked without depending on how busy the machine is."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    import types

    import riskcockpit.streams.generator

    fake = FakeClock()
    monkeypatch.setattr(riskcockpit.streams.generator, "time", types.SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep))
    return fake


def test_pace_holds_the_wall_clock_rate(clock):
    start = clock.now
    out = list(pace(range(500), rate=1000.0, duration=None))
    assert out == list(range(500))
    assert clock.now - start == pytest.approx(0.499, abs=0.0011)  # item k is due k ms after the first


def test_pace_stops_after_duration(clock):
    start = clock.now
    out = list(pace(count(), rate=5000.0, duration=0.3))
    assert clock.now - start == pytest.approx(0.3)
    assert len(out) == 1500  # the items due before the end, no more


def test_pace_re_anchors_after_a_stall_instead_of_bursting(clock):
    paced = pace(count(), rate=100.0, duration=None)
    for _ in range(10):
        next(paced)
    clock.now += 5.0  # the consumer stalls for 5 s
    next(paced)  # late: released at once, and the schedule starts again from here
    after_stall = clock.now
    for _ in range(10):
        next(paced)
    assert clock.now - after_stall == pytest.approx(0.1, abs=0.011)  # 10 ms apart again, no catch-up burst


def test_pace_rejects_non_positive_rate():
    with pytest.raises(ValueError):
        next(pace(range(3), rate=0, duration=None))
