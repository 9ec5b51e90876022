"""Online models: checkpoints restore exactly, and dispositions measurably improve the scores."""

import heapq
import sys
from datetime import UTC, datetime

import pytest

from riskcockpit.ground.contract import Transaction
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.models import AnomalyParams, ModelParams, ModelSet, features
from riskcockpit.indicators.pipeline import Dicts, Pipeline
from riskcockpit.indicators.scoring import Scorer, load_scoring_config
from riskcockpit.streams.generator import SyntheticStream


def roc_auc(scores, labels):
    """Exact ROC AUC (Mann–Whitney with tied ranks averaged)."""
    pairs = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank_sum += (i + 1 + j) / 2 * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * (len(pairs) - positives))


def test_roc_auc_helper_on_a_hand_computed_case():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75


def test_checkpoint_round_trip_continues_identically():
    params = ModelParams(anomaly=AnomalyParams(warmup=20, calibration=100))
    live = ModelSet(params)
    xs = [features(tx_at(m, 50 + (m * 37) % 400), [], 8) for m in range(600)]
    for m, x in enumerate(xs[:300]):
        live.score_one(x, f"t{m}")
    for m, x in enumerate(xs[:60]):
        live.feedback(x, m % 3 == 0)
    restored = ModelSet.loads(live.dumps(), params)
    assert restored.seen == live.seen and restored.labels == live.labels
    assert [restored.score_one(x, f"t{m}") for m, x in enumerate(xs[300:])] == \
        [live.score_one(x, f"t{m}") for m, x in enumerate(xs[300:])]


def test_checkpoint_is_compact_and_versioned():
    models = ModelSet(ModelParams())
    for m in range(3000):
        models.score_one(features(tx_at(m, 10 + m % 90), [], 8), f"t{m}")
    blob = models.dumps()
    assert len(blob) < 400_000, len(blob)  # it travels as one Kafka record through the models table
    assert models.since_checkpoint == 0
    with pytest.raises(ValueError, match="checkpoint format"):
        import pickle
        import zlib
        ModelSet.loads(zlib.compress(pickle.dumps((99, None, None, None, None, None))), ModelParams())



def test_a_checkpoint_written_under_the_former_module_names_restores():
    """Deployments hold checkpoints pickled when the indicators were the top-level package
    ``indicators``; they must restore after the move into ``riskcockpit``."""
    import pickle
    import pickletools
    import zlib

    params = ModelParams(anomaly=AnomalyParams(warmup=20, calibration=100))
    live = ModelSet(params)
    xs = [features(tx_at(m, 50 + (m * 37) % 400), [], 8) for m in range(400)]
    for m, x in enumerate(xs[:300]):
        live.score_one(x, f"t{m}")
    raw = zlib.decompress(live.dumps())
    # The same pickle as the former code wrote it: protocol 0 spells module names as text lines,
    # so they can be renamed without recomputing the binary lengths.
    old = pickle.dumps(pickle.loads(raw), protocol=0).replace(b"criskcockpit.indicators.", b"cindicators.")
    assert b"cindicators.evidence" in old and b"riskcockpit" not in pickletools.optimize(old)
    restored = ModelSet.loads(zlib.compress(old), params)
    assert not any(name.partition(".")[0] == "indicators" for name in sys.modules)  # not a second copy
    assert [restored.score_one(x, f"t{m}") for m, x in enumerate(xs[300:])] == \
        [live.score_one(x, f"t{m}") for m, x in enumerate(xs[300:])]

def test_supervised_model_waits_for_enough_labels_of_each_class():
    models = ModelSet(ModelParams(supervised={"min_labels": 3}))
    x = features(tx_at(0), [], 8)
    for _ in range(5):
        models.feedback(x, False)
    assert models.supervise(x, 0.0, models.score_one(x, "t"))["fraud_probability"] is None
    for _ in range(3):
        models.feedback(x, True)
    assert 0 <= models.supervise(x, 0.0, models.score_one(x, "t"))["fraud_probability"] <= 1


@pytest.mark.integration  # a whole generated stream through the library
def test_supervised_model_learns_a_threshold_at_one_merchant_category_from_labels_a_day_late(tmp_path):
    # Fraud iff the amount is above 300 at one category: no indicator says so, the model must
    # learn the cut from labels, each delivered a day after its transaction (the backtest's path).
    import random

    from riskcockpit.backtest.history import load_mapping, load_transactions
    from riskcockpit.backtest.run import run_backtest

    rng, start = random.Random(3), datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    data = tmp_path / "rule.csv"
    with data.open("w") as f:
        f.write("id,ts,customer,mcc,value,is_fraud\n")
        for i in range(30_000):
            mcc = rng.choice(["5411", "5812", "5999", "4829"])
            amount = round(rng.lognormvariate(5, 0.8), 2)
            f.write(f"t{i},{int((start + i * 60) * 1000)},c{rng.randrange(3000)},{mcc},{amount},"
                    f"{int(mcc == '5999' and amount > 300)}\n")
    (tmp_path / "map.yaml").write_text("columns: {tx_id: id, ts: ts, account_id: customer, mcc: mcc, amount: value}\n")
    loaded = load_transactions(data, load_mapping(tmp_path / "map.yaml"), "is_fraud")
    result = run_backtest(loaded, Scorer(load_scoring_config(DEFAULT_CONFIG_DIR)), tmp_path / "out.parquet", "1d",
                          partitions=1)
    late = result.table.slice(20_000)  # after a fortnight of labels
    labels, scores = late["label"].to_pylist(), late["risk_score"].to_pylist()
    assert sum(labels) > 100
    assert roc_auc(scores, labels) >= 0.95


def test_supervised_model_learns_every_fraud_and_the_same_share_of_the_rest_on_every_run():
    params = ModelParams(supervised={"min_labels": 1, "negative_share": 0.25})
    x = features(tx_at(0, 120.0, mcc="5411"), [], 8)
    first, second = ModelSet(params), ModelSet(params)
    for models in (first, second):
        for i in range(2000):
            models.feedback(x, i % 50 == 0, f"t{i}")
    assert first.labels == {True: 40, False: 1960}
    learned = sum(params.supervised.learns(f"t{i}", False) for i in range(2000))
    assert 400 <= learned <= 600  # a quarter of the legitimate ones, by tx_id
    assert first.classifier.weights == second.classifier.weights and first.classifier.weights


def test_every_record_carries_its_features_and_model_outputs():
    record = Scorer(load_scoring_config(DEFAULT_CONFIG_DIR)).score(tx_at(0, 80.0, device_id="d"), {})
    assert record["features"]["log_amount"] == pytest.approx(4.394449, abs=1e-6)
    assert record["features"]["new_device"] == 1.0 and record["features"]["amount_zscore"] is None
    assert record["fraud_probability"] == -1.0


@pytest.mark.integration  # a whole generated stream through the library
def test_dispositions_measurably_improve_the_scores_on_the_generators_stream():
    txs = [Transaction.model_validate(r) for r in SyntheticStream(
        seed=5, accounts=20_000, rate=5, start=datetime(2026, 11, 1, tzinfo=UTC), fraud_share=0.03).take(50_000)]

    def judged_auc(with_feedback: bool) -> float:
        pipeline, store, pending, judged = Pipeline(Scorer(load_scoring_config(DEFAULT_CONFIG_DIR))), Dicts(), [], []
        for i, tx in enumerate(txs):
            while pending and pending[0][0] <= tx.ts_ms:
                _, j, record, label = heapq.heappop(pending)
                pipeline.learn(txs[j], label, store, record)
            record = pipeline.score(tx, store).record
            label = bool(record["scenario"])
            if with_feedback and record["tier"] >= 1:
                # Analysts disposition what was alerted, an hour of event time later.
                heapq.heappush(pending, (tx.ts_ms + 3_600_000, i, record, label))
            if i >= 25_000:
                judged.append((record["score"], label))
        return roc_auc([s for s, _ in judged], [label for _, label in judged])

    without, with_labels = judged_auc(False), judged_auc(True)
    # Ranking errors (1 - AUC) must fall by two fifths at least.
    assert 1 - with_labels <= 0.6 * (1 - without), (without, with_labels)
