"""Indicators kept per merchant, device and counterparty: hand-computed cases, and the scoring
core routing each entity's state (the worker's stages are tested in test_pipeline.py)."""


from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.counterparty import CounterpartyFanIn, MerchantCompromise
from riskcockpit.indicators.device_geo import DeviceShared
from riskcockpit.indicators.pipeline import Dicts, Pipeline
from riskcockpit.indicators.scoring import Scorer, ScoringConfig

DAY_MINUTES = 24 * 60


def test_device_shared_counts_distinct_accounts_in_window_late_and_duplicate_events():
    ind, state = DeviceShared(window="1h", accounts=3), {}
    seen = [ind.evaluate(state, tx_at(m, device_id="D", account_id=a)).value for m, a in ((0, "A"), (10, "B"), (20, "A"))]
    assert seen == [1.0, 2.0, 2.0]  # the first transaction of a device; A counted once
    assert ind.evaluate(state, tx_at(20, device_id="D", account_id="A")).value == 2.0  # a duplicate
    late = ind.evaluate(state, tx_at(5, device_id="D", account_id="C"))  # late: C joins A and B
    assert (late.value, late.hit) == (3.0, True)
    assert ind.evaluate(state, tx_at(75, device_id="D", account_id="B")).value == 2.0  # C (5) is out, A (20) in
    assert sorted(e[1] for e in state["w"]) == ["A", "B"]  # one entry per account, C pruned
    assert ind.evaluate({}, tx_at(0)).reason == "not applicable: no device_id"


def test_device_shared_state_is_capped_by_accounts_not_transactions():
    ind, state = DeviceShared(window="24h", accounts=3, cap=5), {}
    for m in range(40):
        ind.evaluate(state, tx_at(m, device_id="D", account_id=f"A{m % 8}"))
    assert len(state["w"]) == 5 and len({e[1] for e in state["w"]}) == 5


def test_counterparty_fan_in_counts_sizeable_debits_of_distinct_accounts():
    ind, state = CounterpartyFanIn(window="2h", accounts=3, min_amount=500), {}

    def pay(m, account, amount=600, direction="debit"):
        return ind.evaluate(state, tx_at(m, amount, account_id=account, counterparty_id="C9", direction=direction))

    assert pay(0, "A").value == 1.0
    assert pay(1, "B", amount=100).value == 0.0      # under the minimum: neither counted nor remembered
    assert pay(2, "C", direction="credit").value is None  # a credit from C9 is not a payment to it
    assert pay(3, "B").value == 2.0
    hit = pay(4, "D")
    assert hit.hit and hit.reason == "beneficiary C9: paid by 3 accounts within 2h"
    assert pay(200, "E").value == 1.0                # two hours later the others are out of the window
    assert ind.evaluate({}, tx_at(0, direction="debit")).reason == "not applicable: no counterparty_id"


def test_merchant_compromise_learns_late_verdicts_once_on_the_day_of_the_fraud():
    ind, state = MerchantCompromise(window="7d", min_frauds=2, min_share=0.05), {}
    first = ind.evaluate(state, tx_at(0, merchant_id="M", tx_id="t0"))
    assert (first.value, first.hit) == (0.0, False)  # the first transaction at a merchant
    sales = [tx_at(DAY_MINUTES * d + m, merchant_id="M", tx_id=f"d{d}-{m}") for d in range(3) for m in range(10)]
    for tx in sales:
        ind.evaluate(state, tx)
    ind.learn_label(state, sales[0], True)   # day 0, learned on day 2: counted on day 0
    ind.learn_label(state, sales[0], True)   # the same verdict again: once
    ind.learn_label(state, sales[5], False)  # a false positive adds nothing
    assert [b[2] for b in state["d"]] == [1, 0, 0]
    ind.learn_label(state, sales[12], True)
    after = ind.evaluate(state, tx_at(DAY_MINUTES * 2 + 30, merchant_id="M", tx_id="x"))
    assert after.value == 2.0 and after.hit  # 2 of 32 transactions = 6 %
    # on day 7 the window is days 1-7: the day-0 fraud has left it
    later = ind.evaluate(state, tx_at(DAY_MINUTES * 7, merchant_id="M", tx_id="y"))
    assert (later.value, later.hit) == (1.0, False)
    assert len(state["d"]) <= 8


def test_merchant_compromise_spares_a_big_store_with_a_few_frauds():
    ind, state = MerchantCompromise(min_frauds=2, min_share=0.02), {}
    sales = [tx_at(m / 10, merchant_id="BIG", tx_id=f"s{m}") for m in range(500)]
    for tx in sales:
        ind.evaluate(state, tx)
    for tx in sales[:3]:
        ind.learn_label(state, tx, True)
    signal = ind.evaluate(state, tx_at(60, merchant_id="BIG", tx_id="n"))
    assert signal.value == 3.0 and not signal.hit  # 3 of 501: under 2 %


def test_merchant_compromise_verdict_older_than_the_window_is_dropped():
    ind, state = MerchantCompromise(window="2d"), {}
    ind.evaluate(state, tx_at(DAY_MINUTES * 10, merchant_id="M", tx_id="now"))
    ind.learn_label(state, tx_at(0, merchant_id="M", tx_id="old"), True)
    assert sum(b[2] for b in state["d"]) == 0


def scorer() -> Scorer:
    return Scorer(ScoringConfig.model_validate({
        "indicators": {"large_amount": {"weight": 10, "params": {"threshold": 10_000}},
                       "device_shared": {"weight": 60, "params": {"accounts": 2}},
                       "merchant_compromise": {"weight": 80, "params": {"min_frauds": 1, "min_share": 0.01}}},
        "models": {"anomaly": {"enabled": False}, "supervised": {"enabled": False}}}))


def test_scorer_keeps_state_per_entity_and_carries_entity_signals_into_the_score():
    s, store = Pipeline(scorer()), Dicts()
    states = store.states
    assert s.stages == ("merchant", "device")  # ENTITY_FIELDS order; counterparty: none enabled
    s.score(tx_at(0, account_id="A", device_id="D1", tx_id="a"), store)
    record = s.score(tx_at(1, account_id="B", device_id="D1", tx_id="b"), store).record
    assert record["score"] == 60.0 and record["reasons"][0]["indicator"] == "device_shared"
    assert set(states["device"]) == {"D1"} and set(states["account"]) == {"A", "B"}
    assert "merchant" not in states  # no merchant field: not applicable, no state made
    assert record["features"]["merchant_compromise"] is None


def test_a_label_teaches_the_merchant_and_a_redelivery_leaves_entities_alone():
    s, store = Pipeline(scorer()), Dicts()
    fraud = tx_at(0, account_id="A", merchant_id="M1", tx_id="f")
    record = s.score(fraud, store).record
    assert s.learn(fraud, True, store, record) == []
    again = s.score(fraud, store)  # a redelivery: the first decision, the merchant untouched
    assert again.record == record and not again.new
    assert store.states["merchant"]["M1"]["ind"]["merchant_compromise"]["d"][0][1] == 1
    later = s.score(tx_at(5, account_id="B", merchant_id="M1", tx_id="g"), store).record
    assert later["tier"] == 3 and later["reasons"][0]["indicator"] == "merchant_compromise"


def test_score_without_entity_stages_says_they_were_not_evaluated():
    record = scorer().score(tx_at(0, device_id="D1"), {})
    reasons = {r["indicator"] for r in record["reasons"]}
    assert record["features"]["device_shared"] is None and "device_shared" not in reasons
