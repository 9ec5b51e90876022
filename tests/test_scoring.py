"""The scoring core: combination of evidence, tiers, redelivery, and the generator's frauds."""

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from riskcockpit.ground.contract import Transaction
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.pipeline import Dicts, Pipeline
from riskcockpit.indicators.scoring import Scorer, ScoringConfig, load_scoring_config, recompute
from riskcockpit.streams.generator import SyntheticStream


def scorer(**indicators):
    config = {"indicators": {n: {"weight": w, "params": p} for n, (w, p) in indicators.items()},
              "models": {"anomaly": {"enabled": False}, "supervised": {"enabled": False}}}
    return Scorer(ScoringConfig.model_validate(config))


def test_hits_combine_as_independent_evidence():
    s = scorer(large_amount=(40, {"threshold": 100}), new_device=(40, {"min_history": 0}))
    record = s.score(tx_at(0, 500, device_id="d1"), {})
    assert record["score"] == 64.0 and record["tier"] == 2
    assert [r["indicator"] for r in record["reasons"]] == ["large_amount", "new_device"]
    assert all(r["contribution"] == 32 for r in record["reasons"])  # each reason's share of the score


def test_no_hit_scores_zero_and_has_no_reasons():
    record = scorer(large_amount=(40, {"threshold": 100})).score(tx_at(0, 50), {})
    assert record["score"] == 0 and record["tier"] == 0 and record["reasons"] == []


@pytest.mark.parametrize("score, tier", [(0, 0), (29.99, 0), (30, 1), (54.9, 1), (55, 2), (75, 3), (100, 3)])
def test_tier_floors(score, tier):
    assert load_scoring_config(DEFAULT_CONFIG_DIR).tiers.tier(score) == tier


def test_redelivered_transaction_gets_the_same_decision_and_leaves_state_alone():
    s = scorer(count_velocity=(50, {"window": "10m", "limit": 1}))
    state = {}
    first = s.score(tx_at(0, tx_id="x1"), state)
    second = s.score(tx_at(1, tx_id="x2"), state)
    snapshot = repr(state["ind"])
    again = s.score(tx_at(1, tx_id="x2"), state)
    assert again == second and repr(state["ind"]) == snapshot
    assert first["tier"] == 0 and second["reasons"][0]["value"] == 2


def test_recent_decisions_are_bounded():
    s = Scorer(ScoringConfig.model_validate({"indicators": {}, "models": {"anomaly": {"enabled": False}, "supervised": {"enabled": False}}, "dedup_memory": 4}))
    state = {}
    for minute in range(10):
        s.score(tx_at(minute, tx_id=f"x{minute}"), state)
    assert list(state["recent"]) == ["x6", "x7", "x8", "x9"]


def test_record_carries_config_hash_scenario_and_source():
    s = scorer(large_amount=(10, {}))
    record = s.score(tx_at(0, attributes={"scenario": "mule"}), {}, source=(3, 42))
    assert record["config_hash"] == s.config.hash and record["scenario"] == "mule"
    assert (record["source_partition"], record["source_offset"]) == (3, 42)


@pytest.mark.integration  # a whole generated stream through the library
def test_default_library_separates_generated_frauds_from_normal_traffic():
    """On the generator's stream, injected frauds are tiered far more often than normal traffic."""
    s = Scorer(load_scoring_config(DEFAULT_CONFIG_DIR))
    stream = SyntheticStream(seed=11, accounts=20_000, rate=5, start=datetime(2026, 11, 1, tzinfo=UTC),
                             fraud_share=0.03)
    states: dict = {}
    tiers = defaultdict(Counter)
    for i, raw in enumerate(stream.take(80_000)):
        tx = Transaction.model_validate(raw)
        record = s.score(tx, states.setdefault(tx.account_id, {}))
        if i >= 40_000:  # judge after accounts have a history, as they would in production
            tiers[record["scenario"] or "normal"][record["tier"]] += 1

    def tiered_share(kind):
        counts = tiers[kind]
        return sum(n for tier, n in counts.items() if tier) / sum(counts.values())

    normal = tiered_share("normal")
    assert normal < 0.10, dict(tiers["normal"])
    for scenario in ("account_takeover", "card_testing", "structuring", "mule"):
        assert tiered_share(scenario) > 3 * normal, (scenario, dict(tiers[scenario]))
    assert {t for counts in tiers.values() for t in counts} >= {1, 2, 3}


def test_hard_rule_raises_the_tier_and_says_why():
    config = ScoringConfig.model_validate({
        "indicators": {"large_amount": {"weight": 10, "params": {"threshold": 100}}},
        "rules": [{"name": "sanctioned_country", "field": "country", "values": ["KP"], "min_tier": 3},
                  {"name": "big_means_review", "indicator": "large_amount", "min_tier": 2}],
        "models": {"anomaly": {"enabled": False}, "supervised": {"enabled": False}},
    })
    s = Scorer(config)
    sanctioned = s.score(tx_at(0, 5, country="KP"), {})
    assert sanctioned["tier"] == 3 and sanctioned["score"] == 0
    assert sanctioned["reasons"][0]["indicator"] == "rule:sanctioned_country"
    big = s.score(tx_at(1, 500, country="CN"), {})
    assert big["tier"] == 2 and big["score"] == 10
    assert s.score(tx_at(2, 5, country="CN"), {})["tier"] == 0


@pytest.mark.parametrize("rule, message", [
    ({"name": "r", "field": "country", "values": ["KP"], "indicator": "large_amount", "min_tier": 3}, "either"),
    ({"name": "r", "field": "planet", "values": ["Mars"], "min_tier": 3}, "not a transaction field"),
    ({"name": "r", "indicator": "new_device", "min_tier": 3}, "not an enabled indicator"),
    ({"name": "r", "field": "country", "values": ["KP"], "min_tier": 4}, "less than or equal to 3"),
])
def test_bad_rules_are_refused(rule, message):
    with pytest.raises(ValueError, match=message):
        ScoringConfig.model_validate({"indicators": {"large_amount": {"weight": 10}}, "rules": [rule]})


def test_every_decision_recomputes_from_its_stored_reasons_and_the_config_it_names():
    live = load_scoring_config(DEFAULT_CONFIG_DIR)
    config = live.model_copy(update={"models": live.models.model_copy(update={
        "anomaly": live.models.anomaly.model_copy(update={"enabled": True})})})  # every kind of reason
    scorer = Scorer(config)
    pipeline, store = Pipeline(scorer), Dicts()
    txs = [Transaction.model_validate(r) for r in SyntheticStream(
        seed=9, accounts=2_000, rate=5, start=datetime(2026, 11, 1, tzinfo=UTC), fraud_share=0.05).take(6_000)]
    txs += [tx_at(60 * 24 * 310 + i, 20.0, tx_id=f"kp-{i}", country="KP") for i in range(3)]  # a hard rule
    kinds, alerted = Counter(), []
    for tx in txs:
        record = pipeline.score(tx, store).record
        if record["tier"]:
            scorer.feedback(record, bool(record["scenario"]))  # dispositions, so the supervised model speaks
        stored = json.loads(json.dumps(record))  # what risk.scores and the store keep
        assert recompute(stored, config) == (stored["score"], stored["tier"]), stored["reasons"]
        kinds.update({r["indicator"].split(":")[0] for r in stored["reasons"]})
        if stored["tier"] and not stored["reasons"][0]["indicator"].startswith("rule:"):
            alerted.append(stored)
    assert kinds["anomaly_model"] and kinds["fraud_model"] and kinds["rule"] and kinds["large_amount"], kinds

    # Another config, an altered record or an unknown reason does not give the stored answer.
    record = alerted[-1]
    heavier = config.model_copy(update={"indicators": {**config.indicators, "large_amount": config.indicators[
        "large_amount"].model_copy(update={"weight": 90})}})
    with pytest.raises(ValueError, match=f"scored with config {config.hash}, not {heavier.hash}"):
        recompute(record, heavier)
    strongest = next(k for k, r in enumerate(record["reasons"]) if r["indicator"] in config.indicators)
    assert recompute({**record, "reasons": record["reasons"][:strongest] + record["reasons"][strongest + 1:]},
                     config)[0] < record["score"]
    with pytest.raises(ValueError, match="'no_such_indicator' is not an indicator"):
        recompute({**record, "reasons": [{"indicator": "no_such_indicator", "value": 1}]}, config)


def test_tiers_by_alert_budget_keep_their_share_of_traffic_and_recompute():
    base = load_scoring_config(DEFAULT_CONFIG_DIR)
    config = base.model_copy(update={"tiers": base.tiers.model_copy(
        update={"budget": {"review": 0.03, "critical": 0.01}, "budget_window": 2000})})
    scorer, states = Scorer(config), defaultdict(dict)
    txs = [Transaction.model_validate(r) for r in SyntheticStream(
        seed=4, accounts=2_000, rate=5, start=datetime(2026, 11, 1, tzinfo=UTC), fraud_share=0.05).take(8_000)]
    later = Counter()
    for i, tx in enumerate(txs):
        record = json.loads(json.dumps(scorer.score(tx, states[tx.account_id], (0, i), [])))
        assert recompute(record, config) == (record["score"], record["tier"]), record["reasons"]
        if i >= 4_000:
            later[record["tier"]] += 1
    critical, review = later[3] / 4_000, (later[2] + later[3]) / 4_000
    assert 0.005 <= critical <= 0.02, later  # the top 1 %, give or take what ties and drift allow
    assert 0.015 <= review <= 0.06, later
    assert Scorer(base).config.tiers.budget == {}  # the default config keeps its floors
