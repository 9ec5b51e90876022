"""Backtest and replay: files → the worker's scoring core (in memory) or → topic ``transactions``.

The labelled fixtures have known answers: with one indicator (``large_amount``) and the models
off, the frauds are exactly the large payments, so AUC, average precision and precision /
recall per tier are computed by hand here, not by the code under test.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from riskcockpit.backtest.history import BacktestError, Mapping, load_transactions
from riskcockpit.backtest.metrics import evaluate
from riskcockpit.backtest.run import run_backtest
from riskcockpit.cli import Context
from riskcockpit.cmd_offline import backtest, replay
from riskcockpit.ground.contract import parse_transaction
from riskcockpit.ground.topics import owning_partition
from riskcockpit.indicators.scoring import Scorer, ScoringConfig
from riskcockpit.replay import paced, parse_speed
from riskcockpit.streams.generator import SyntheticStream

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
MAPPING = {"columns": {"tx_id": "id", "ts": "booked_at", "account_id": "customer", "merchant_id": "terminal",
                       "amount": "value"},
           "defaults": {"currency": "EUR"}}
# One transaction at a time (no evidence carried between an account's transactions): answers by hand.
NO_MODELS = {"models": {"anomaly": {"enabled": False}, "supervised": {"enabled": False},
                        "evidence": {"incident_half_life": "0"}}}
# Accepted spellings, cycled through the fixture so every one of them is exercised.
FRAUD_SPELLINGS = ["fraud", 1, "TRUE", "yes", " Fraudulent ", "1", "y", "t", "positive", "confirmed"]
LEGIT_SPELLINGS = ["legit", 0, "false", "No", "0", "n", "f", "genuine", "legitimate", "negative"]


def tiny_config(weight: float = 60, threshold: float = 1000) -> dict:
    return {"indicators": {"large_amount": {"weight": weight, "params": {"threshold": threshold}}}, **NO_MODELS}


class FeedbackTolerant(Scorer):
    """Test scaffolding only: records dispositions, and forwards them when the core can learn them."""

    def __init__(self, config):
        super().__init__(config)
        self.dispositions: list[tuple[str, bool]] = []

    def feedback(self, record, label):
        self.dispositions.append((record["tx_id"], label))
        if hasattr(Scorer, "feedback"):
            super().feedback(record, label)


@pytest.fixture(autouse=True)
def _clean_env(env):
    """No RISKCOCKPIT_* from the machine; settings read the repository's config/."""


def labelled_rows(n: int = 200, every: int = 10, legit_large: int = 0) -> list[dict]:
    """``n`` rows a minute apart over 7 customers; every ``every``-th is a 5,000 fraud, the rest small.

    ``legit_large`` legitimate rows also pay 5,000 (false positives of the amount rule).
    """
    rows = []
    for i in range(n):
        fraud = i % every == 0
        large = fraud or (i % every == 5 and legit_large and sum(r["large"] for r in rows if not r["fraud"]) < legit_large)
        rows.append({"id": f"b{i:04d}", "booked_at": (T0 + timedelta(minutes=i)).astimezone(SHANGHAI).isoformat(),
                     "customer": f"C{i % 7}", "terminal": f"M{i % 13}",
                     "value": 5000.0 if large else float(10 + (i * 37) % 890),
                     "is_fraud": (FRAUD_SPELLINGS if fraud else LEGIT_SPELLINGS)[i % 10],
                     "fraud": fraud, "large": large})
    return rows


def write_csv(path: Path, rows: list[dict], columns=("id", "booked_at", "customer", "terminal", "value", "is_fraud")):
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_cli(command, args, obj=None):
    result = CliRunner().invoke(command, [str(a) for a in args], obj=obj or Context(None, {}))
    return result


# ------------------------------------------------------------------------------------------ known answers


def test_csv_backtest_has_the_hand_computed_answer(tmp_path):
    rows = labelled_rows()
    data = write_csv(tmp_path / "tx.csv", rows)
    mapping = write_yaml(tmp_path / "map.yaml", MAPPING)
    config = write_yaml(tmp_path / "indicators.yaml", tiny_config())
    out = tmp_path / "out.parquet"
    result = run_cli(backtest, [data, "--mapping", mapping, "--config", config, "--out", out,
                                "--labels", "is_fraud", "--quiet"])
    assert result.exit_code == 0, result.output
    # 20 frauds of 200; each scores 60 (tier 2, review), everything else 0.
    assert "labelled: 200 transactions, 20 fraud" in result.output
    assert "ROC AUC            1.0000" in result.output
    assert "average precision  1.0000" in result.output
    assert "tier >= 1 watch         20  10.00%     20.0     1.0000  1.0000" in result.output
    assert "tier >= 2 review        20  10.00%     20.0     1.0000  1.0000" in result.output
    assert "tier >= 3 critical       0   0.00%      0.0        n/a  0.0000" in result.output

    table = pq.read_table(out).to_pylist()
    assert len(table) == 200
    by_id = {r["tx_id"]: r for r in table}
    for row in rows:
        got = by_id[row["id"]]
        assert got["label"] is row["fraud"]
        assert (got["risk_score"], got["tier"]) == ((60.0, 2) if row["fraud"] else (0.0, 0))
        reasons = json.loads(got["reasons"])
        assert [r["indicator"] for r in reasons] == (["large_amount"] if row["fraud"] else [])
        assert got["account_id"] == row["customer"]
        assert got["ts"] == datetime.fromisoformat(row["booked_at"])
        assert got["ind_large_amount"] is not None
    assert [r["ts"] for r in table] == sorted(r["ts"] for r in table)
    assert {r["config_hash"] for r in table} == {ScoringConfig.model_validate(tiny_config()).hash}
    assert not (tmp_path / "out.rejected.jsonl").exists()


def test_false_positives_give_the_hand_computed_auc_ap_and_precision(tmp_path):
    rows = labelled_rows(legit_large=5)
    assert sum(r["large"] and not r["fraud"] for r in rows) == 5
    data = write_csv(tmp_path / "tx.csv", rows)
    result = run_cli(backtest, [data, "--mapping", write_yaml(tmp_path / "map.yaml", MAPPING),
                                "--config", write_yaml(tmp_path / "c.yaml", tiny_config()),
                                "--out", tmp_path / "o.parquet", "--labels", "is_fraud", "--quiet"])
    assert result.exit_code == 0, result.output
    # 20 frauds and 5 legit at 60, 175 legit at 0: AUC = (175 + 0.5 * 5) / 180, AP = 20/25 at recall 1.
    assert f"ROC AUC            {177.5 / 180:.4f}" in result.output
    assert "average precision  0.8000" in result.output
    assert "tier >= 2 review        25  12.50%     25.0     0.8000  1.0000" in result.output


def test_baseline_shows_the_change_in_alerts_per_tier_with_its_rows_beside(tmp_path):
    rows = labelled_rows(legit_large=5)
    data, mapping = write_csv(tmp_path / "tx.csv", rows), write_yaml(tmp_path / "map.yaml", MAPPING)
    live = write_yaml(tmp_path / "live.yaml", tiny_config())  # the 25 large amounts score 60: tier 2
    candidate = write_yaml(tmp_path / "candidate.yaml", tiny_config(weight=80))  # 80: tier 3
    out = tmp_path / "o.parquet"
    result = run_cli(backtest, [data, "--mapping", mapping, "--config", candidate, "--baseline", live, "--out", out,
                                "--labels", "is_fraud", "--quiet"])
    assert result.exit_code == 0, result.output
    live_hash, candidate_hash = (ScoringConfig.model_validate(tiny_config(w)).hash for w in (60, 80))
    assert f"baseline config {live_hash} → candidate config {candidate_hash}, the same 200 transactions:" \
        in result.output
    # 20 frauds and 5 legitimate rows alert in both; the candidate makes them critical.
    assert "tier >= 1 watch          25         25        +0 (+0%)   0.8000 → 0.8000  1.0000 → 1.0000" in result.output
    assert "tier >= 3 critical        0         25       +25            n/a → 0.8000  0.0000 → 1.0000" in result.output
    assert "tier changed for 25 of 200 transactions: 25 up, 0 down" in result.output
    base = pq.read_table(tmp_path / "o.baseline.parquet")
    assert set(base["config_hash"].to_pylist()) == {live_hash} and base["tier"].to_pylist().count(2) == 25
    assert set(pq.read_table(out)["config_hash"].to_pylist()) == {candidate_hash}

    # without labels: the volumes only
    unlabelled = run_cli(backtest, [data, "--mapping", mapping, "--config", live, "--baseline", candidate,
                                    "--out", out, "--quiet"])
    assert unlabelled.exit_code == 0, unlabelled.output
    assert "precision" not in unlabelled.output
    assert "tier >= 3 critical       25          0       -25 (-100%)" in unlabelled.output
    assert "tier changed for 25 of 200 transactions: 0 up, 25 down" in unlabelled.output

    bad = write_yaml(tmp_path / "bad-baseline.yaml", {"indicators": {"large_amount": {"weight": 500}}})
    refused = run_cli(backtest, [data, "--mapping", mapping, "--baseline", bad, "--out", out, "--quiet"])
    assert refused.exit_code == 1 and "bad-baseline.yaml:3: indicators.large_amount.weight" in refused.output


def test_evaluate_matches_a_hand_computed_case():
    labels = [True, False, True, False, False, True]
    scores = [90, 80, 70, 70, 10, 0]
    tiers = [3, 3, 2, 2, 0, 0]
    m = evaluate(labels, scores, tiers)
    # pairs (pos, neg): 90 beats all 3; 70 beats 10, ties 70, loses to 80; 0 beats none → (3 + 1.5) / 9
    assert m["roc_auc"] == pytest.approx(4.5 / 9)
    # ranked: 90 P, 80 N, 70 P+N (tie: one threshold), 10 N, 0 P: AP = 1/3·1 + 1/3·(2/4) + 1/3·(3/6)
    assert m["average_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["tiers"][3] == {"alerts": 2, "alert_share": 2 / 6, "true_alerts": 1, "precision": 0.5, "recall": 1 / 3}
    assert m["tiers"][2]["precision"] == pytest.approx(0.5) and m["tiers"][2]["recall"] == pytest.approx(2 / 3)
    assert evaluate([False, False], [1, 2], [0, 1])["roc_auc"] is None


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "ndjson"])
def test_parquet_and_jsonl_inputs_give_the_same_results_as_csv(tmp_path, fmt):
    rows = labelled_rows(legit_large=5)
    config = ScoringConfig.model_validate(tiny_config())
    mapping = Mapping.model_validate(MAPPING)
    reference = run_backtest(load_transactions(write_csv(tmp_path / "tx.csv", rows), mapping, "is_fraud"),
                                FeedbackTolerant(config), tmp_path / "ref.parquet")
    path = tmp_path / f"tx.{fmt}"
    if fmt == "parquet":  # typed: zoned timestamps, float amounts, boolean labels
        pq.write_table(pa.table({
            "id": [r["id"] for r in rows],
            "booked_at": pa.array([datetime.fromisoformat(r["booked_at"]) for r in rows], pa.timestamp("us", "UTC")),
            "customer": [r["customer"] for r in rows], "terminal": [r["terminal"] for r in rows],
            "value": [r["value"] for r in rows], "is_fraud": [r["fraud"] for r in rows]}), path)
    else:  # epoch milliseconds, 1/0 labels
        path.write_text("".join(json.dumps({
            "id": r["id"], "booked_at": int(datetime.fromisoformat(r["booked_at"]).timestamp() * 1000),
            "customer": r["customer"], "terminal": r["terminal"], "value": r["value"],
            "is_fraud": int(r["fraud"])}) + "\n" for r in rows))
    result = run_backtest(load_transactions(path, mapping, "is_fraud"), FeedbackTolerant(config),
                             tmp_path / "out.parquet")
    assert result.metrics == reference.metrics
    assert result.metrics["roc_auc"] == pytest.approx(177.5 / 180)
    ours, theirs = pq.read_table(tmp_path / "out.parquet"), pq.read_table(tmp_path / "ref.parquet")
    for column in ("tx_id", "ts", "account_id", "risk_score", "tier", "label", "reasons"):
        assert ours.column(column).to_pylist() == theirs.column(column).to_pylist(), column


# ------------------------------------------------------------------------------------------ mapping


def line_of(path, key: str) -> int:
    """The line of a top-level key in a YAML file, as an error should name it."""
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key}:"))


def mapping_error(tmp_path, data: dict, rows=None, labels=None) -> str:
    path = write_yaml(tmp_path / "bad-map.yaml", data)
    csv = write_csv(tmp_path / "tx.csv", rows or labelled_rows(20))
    result = run_cli(backtest, [csv, "--mapping", path, "--config", write_yaml(tmp_path / "c.yaml", tiny_config()),
                                "--out", tmp_path / "o.parquet", "--quiet", *(["--labels", labels] if labels else [])])
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "o.parquet").exists()
    return result.output


def test_unknown_schema_field_names_the_mapping_file_and_field(tmp_path):
    out = mapping_error(tmp_path, {"columns": {**MAPPING["columns"], "terminal_id": "terminal"}})
    assert "bad-map.yaml:1: columns: terminal_id: 'terminal_id' is not a transaction field" in out
    out = mapping_error(tmp_path, {**MAPPING, "defaults": {"currency": "EUR", "colour": "red"}})
    line = line_of(tmp_path / "bad-map.yaml", "defaults")
    assert f"bad-map.yaml:{line}: defaults: colour: 'colour' is not a transaction field" in out


def test_column_missing_from_the_file_names_mapping_field_and_column(tmp_path):
    out = mapping_error(tmp_path, {"columns": {**MAPPING["columns"], "device_id": "handset"}})
    assert "bad-map.yaml: columns.device_id: column 'handset' is not in" in out and "tx.csv" in out


def test_mapping_needs_the_required_fields_and_a_real_zone(tmp_path):
    columns = dict(MAPPING["columns"])
    del columns["amount"]
    assert "bad-map.yaml:1: columns: no column for required field(s) amount" in \
        mapping_error(tmp_path, {"columns": columns})
    out = mapping_error(tmp_path, {**MAPPING, "timezone": "Mars/Olympus"})
    assert f"bad-map.yaml:{line_of(tmp_path / 'bad-map.yaml', 'timezone')}: timezone: 'Mars/Olympus' is not an IANA " \
           "time zone" in out
    out = mapping_error(tmp_path, {**MAPPING, "extra": 1})
    assert f"bad-map.yaml:{line_of(tmp_path / 'bad-map.yaml', 'extra')}: extra: Extra inputs are not permitted" in out
    out = mapping_error(tmp_path, {**MAPPING, "defaults": {"tx_id": "x"}})
    assert f"bad-map.yaml:{line_of(tmp_path / 'bad-map.yaml', 'defaults')}: defaults: tx_id: must come from a column" \
        in out


def test_unknown_labels_stop_the_run_naming_the_rows(tmp_path):
    rows = labelled_rows(20)
    rows[3]["is_fraud"], rows[7]["is_fraud"] = "maybe", ""
    out = mapping_error(tmp_path, MAPPING, rows=rows, labels="is_fraud")
    assert "--labels is_fraud: 2 row(s) hold no recognised label: row 4: 'maybe'; row 8: ''" in out
    assert "fraud: true, 1, t, yes, y, fraud" in out
    assert "--labels: column 'verdict' is not in" in mapping_error(tmp_path, MAPPING, labels="verdict")


def test_naive_timestamps_are_refused_unless_the_mapping_names_a_zone(tmp_path):
    rows = labelled_rows(20)
    for r in rows:
        r["booked_at"] = datetime.fromisoformat(r["booked_at"]).replace(tzinfo=None).isoformat(sep=" ")
    out = mapping_error(tmp_path, MAPPING, rows=rows)
    assert "bad-map.yaml: ts: row 1 holds '2026-03-01 17:00:00' without a zone" in out
    assert "timezone: Asia/Shanghai" in out

    parquet = tmp_path / "naive.parquet"
    pq.write_table(pa.table({"id": ["n1"], "booked_at": pa.array([datetime(2026, 3, 1, 17)], pa.timestamp("ns")),
                             "customer": ["C1"], "terminal": ["M1"], "value": [12.5]}), parquet)
    with pytest.raises(BacktestError, match="column 'booked_at' holds timestamps without a zone"):
        load_transactions(parquet, Mapping.model_validate(MAPPING))

    zoned = Mapping.model_validate({**MAPPING, "timezone": "Asia/Shanghai"})
    [(_, tx, _)] = load_transactions(parquet, zoned).items
    assert tx.ts == datetime(2026, 3, 1, 9, tzinfo=UTC)  # 17:00 in Shanghai
    loaded = load_transactions(write_csv(tmp_path / "naive.csv", rows), zoned)
    assert [tx.ts for _, tx, _ in loaded.items] == [T0 + timedelta(minutes=i) for i in range(20)]


# ------------------------------------------------------------------------------------------ malformed rows


def test_malformed_rows_are_counted_reported_and_written_never_dropped(tmp_path):
    rows = labelled_rows(30)
    rows[2]["value"] = -5
    rows[4]["value"] = "12.50 EUR"
    rows[6]["id"] = ""
    rows[8]["booked_at"] = "1767225600"  # epoch seconds
    rows[10]["value"] = -1
    data = write_csv(tmp_path / "tx.csv", rows)
    with data.open("a") as f:
        f.write("b9999,2026-03-01T09:00:00Z,C1\n")  # too few fields
    out = tmp_path / "out.parquet"
    result = run_cli(backtest, [data, "--mapping", write_yaml(tmp_path / "m.yaml", MAPPING),
                                "--config", write_yaml(tmp_path / "c.yaml", tiny_config()),
                                "--out", out, "--labels", "is_fraud", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "6 of 31 rows rejected (not scored):" in result.output
    assert "2  amount: Input should be greater than 0" in result.output
    assert "first: row 3: amount: Input should be greater than 0 (got -5.0)" in result.output
    assert "6 rejected rows → " in result.output
    assert pq.read_metadata(out).num_rows == 25
    rejected = [json.loads(line) for line in (tmp_path / "out.rejected.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejected] == [3, 5, 7, 9, 11, 31]
    assert rejected[0]["values"]["value"] == "-5" and rejected[0]["values"]["id"] == "b0002"
    assert rejected[1]["reason"] == "amount: Input should be a valid number (got '12.50 EUR')"
    assert rejected[2]["reason"] == "tx_id: required field missing"
    assert "epoch milliseconds expected, seconds given?" in rejected[3]["reason"]
    assert rejected[5]["reason"] == "CSV row has 3 fields, the header has 6"
    assert {r["tx_id"] for r in pq.read_table(out).to_pylist()}.isdisjoint({"b0002", "b0004", "b0008", "b0010"})

    # a clean rerun removes the stale rejected file instead of leaving a misleading one
    clean = write_csv(tmp_path / "clean.csv", labelled_rows(30))
    assert run_cli(backtest, [clean, "--mapping", tmp_path / "m.yaml", "--config", tmp_path / "c.yaml",
                              "--out", out, "--quiet"]).exit_code == 0
    assert not (tmp_path / "out.rejected.jsonl").exists()


def test_jsonl_lines_that_are_not_records_are_rejected(tmp_path):
    path = tmp_path / "tx.jsonl"
    good = {"id": "j1", "booked_at": "2026-03-01T09:00:00Z", "customer": "C1", "terminal": "M1", "value": 10}
    path.write_text(json.dumps(good) + "\n{not json\n\n[1, 2]\n" + json.dumps({**good, "id": "j2", "value": "x"}) + "\n")
    loaded = load_transactions(path, Mapping.model_validate(MAPPING))
    assert [tx.tx_id for _, tx, _ in loaded.items] == ["j1"]
    assert [(r.row, r.reason.split(":")[0]) for r in loaded.rejected] == [(2, "not JSON"), (4, "not a JSON object"),
                                                                         (5, "amount")]


def test_typed_ids_become_text_and_attributes_can_be_mapped(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"id": [101, 102], "ms": [1772355600000, 1772355660000], "acct": [7, 7],
                             "amt": [12, 13.5], "mcc": [742, 5411], "scen": ["mule", None]}), path)
    mapping = Mapping.model_validate({"columns": {"tx_id": "id", "ts": "ms", "account_id": "acct", "amount": "amt",
                                                     "mcc": "mcc", "attributes.scenario": "scen"},
                                         "defaults": {"attributes.source": "core", "channel": "card"}})
    first, second = [tx for _, tx, _ in load_transactions(path, mapping).items]
    assert (first.tx_id, first.account_id, first.mcc, first.amount) == ("101", "7", "0742", 12.0)
    assert first.attributes == {"source": "core", "scenario": "mule"} and second.attributes == {"source": "core"}
    assert first.channel == "card"


# ------------------------------------------------------------------------------------------ feedback


class Spy(Scorer):
    """Records when each disposition arrived: the event time of the next transaction scored on its partition."""

    def __init__(self, config):
        super().__init__(config)
        self.waiting: list[tuple[str, str, bool]] = []
        self.arrivals: list[tuple[str, str, bool, int]] = []
        self.delivered: dict[int, int] = {}  # per partition, so far
        # (partition, ts of a scored tx, dispositions that partition had received before it)
        self.delivered_before: list[tuple[int, int, int]] = []

    def feedback(self, record, label):
        self.waiting.append((record["tx_id"], record["ts"], label, record["source_partition"]))
        super().feedback(record, label)

    def score(self, tx, state, source=(-1, -1), carried=None):
        partition = source[0]
        assert all(item[3] == partition for item in self.waiting), "a partition's model learned another's label"
        self.arrivals += [(*item[:3], tx.ts_ms) for item in self.waiting]
        self.delivered[partition] = self.delivered.get(partition, 0) + len(self.waiting)
        self.waiting.clear()
        self.delivered_before.append((partition, tx.ts_ms, self.delivered[partition]))
        return super().score(tx, state, source, carried)


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("delay, delay_ms", [("30m", 1_800_000), ("0", 0), ("7d", 604_800_000)])
def test_feedback_never_arrives_before_the_delay_and_never_later_than_needed(tmp_path, delay, delay_ms, partitions):
    rows = labelled_rows(300)
    # irregular event times over 2 hours (one every ~24 s), written out of order: the backtest must sort
    # them; some share a millisecond, one falls exactly on a 30m due time and one a millisecond before one
    ms = [((i * 7919) % 7200) * 1000 + (i % 7) * 125 for i in range(300)]
    ms[10] = ms[11] = ms[12]
    ms[20] = ms[21] + 1_800_000
    ms[30] = ms[31] + 1_800_000 - 1
    for r, offset in zip(rows, ms, strict=True):
        r["booked_at"] = (T0 + timedelta(milliseconds=offset)).isoformat()
    loaded = load_transactions(write_csv(tmp_path / "tx.csv", rows), Mapping.model_validate(MAPPING), "is_fraud")
    spy = Spy(ScoringConfig.model_validate(tiny_config()))
    result = run_backtest(loaded, spy, tmp_path / "o.parquet", delay, partitions=partitions)

    # each account's partition is the one Kafka's default partitioner gives it, as in the worker
    partition_of = {r["customer"]: owning_partition(r["customer"].encode(), partitions) for r in rows}
    assert len(set(partition_of.values())) == partitions
    ordered = sorted((int(T0.timestamp() * 1000) + offset, partition_of[r["customer"]]) for r, offset in zip(rows, ms, strict=True))
    assert sorted((t, p) for p, t, _ in spy.delivered_before) == ordered
    truth = {r["id"]: r["fraud"] for r in rows}
    for tx_id, ts, label, arrived in spy.arrivals:
        assert arrived >= int(datetime.fromisoformat(ts).timestamp() * 1000) + delay_ms, (tx_id, ts, arrived)
        assert label is truth[tx_id]
    # and as soon as due: before the tx at t, exactly the labels of its partition's earlier txs due by t
    for p in range(partitions):
        times = [t for t, q in ordered if q == p]
        delivered = [(t, n) for q, t, n in spy.delivered_before if q == p]
        for i, (t, n) in enumerate(delivered):
            assert n == sum(1 for earlier in times[:i] if earlier + delay_ms <= t)
    assert result.fed_back == len(spy.arrivals) == sum(spy.delivered.values())
    assert len({a[0] for a in spy.arrivals}) == len(spy.arrivals)  # once each
    out = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [r["partition"] for r in out] == [partition_of[r["account_id"]] for r in out]


def test_a_repeated_tx_id_is_answered_from_dedup_and_fed_back_once(tmp_path):
    rows = labelled_rows(20)
    rows.append({**rows[0], "booked_at": (T0 + timedelta(minutes=30)).isoformat()})
    loaded = load_transactions(write_csv(tmp_path / "tx.csv", rows), Mapping.model_validate(MAPPING), "is_fraud")
    spy = Spy(ScoringConfig.model_validate(tiny_config()))
    result = run_backtest(loaded, spy, tmp_path / "o.parquet", "0")
    assert result.duplicates == 1 and result.scored == 21
    assert [a[0] for a in spy.arrivals].count("b0000") == 1
    assert result.metrics["transactions"] == 20


# ------------------------------------------------------------------------------------------ generator stream


def test_backtest_of_the_generator_stream_writes_every_column(tmp_path):
    stream = SyntheticStream(seed=11, accounts=300, rate=5, fraud_share=0.05,
                             start=datetime.now(UTC) - timedelta(hours=6))
    path = tmp_path / "generated.jsonl"
    with path.open("w") as f:
        for record in itertools.islice(stream, 2500):
            f.write(json.dumps({**record, "fraud": bool(record["attributes"].get("scenario"))}) + "\n")
    fields = ["tx_id", "ts", "account_id", "amount", "currency", "direction", "channel", "counterparty_id",
              "merchant_id", "mcc", "country", "device_id", "ip", "lat", "lon", "status", "attributes"]
    mapping = write_yaml(tmp_path / "map.yaml", {"columns": {f: f for f in fields}})
    out = tmp_path / "out.parquet"
    result = run_cli(backtest, [path, "--mapping", mapping, "--out", out, "--labels", "fraud",
                                "--feedback-delay", "1m", "--quiet"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    enabled = [name for name, item in _active_config().indicators.items() if item.enabled]
    expected = ["tx_id", "ts", "account_id", "risk_score", "tier", "config_hash", "reasons", "label",
                *(f"ind_{name}" for name in enabled)]
    assert set(expected) <= set(table.column_names)
    assert table.num_rows == 2500
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    rows = table.to_pylist()
    assert all(0 <= r["risk_score"] <= 100 and r["tier"] in (0, 1, 2, 3) for r in rows)
    assert {r["config_hash"] for r in rows} == {_active_config().hash}
    assert sum(r["label"] for r in rows) > 50
    assert any(r["tier"] >= 1 for r in rows) and any(json.loads(r["reasons"]) for r in rows)
    # indicators that were applicable have values; the scores separate fraud from normal traffic
    assert all(r["ind_amount_velocity"] is not None for r in rows)
    fed = int(result.output.split(" dispositions fed back")[0].split()[-1])
    assert 2000 < fed < 2500, result.output  # all but the last minute's (2,500 tx at 5/s span ~8 min)
    auc = float(result.output.split("ROC AUC")[1].split()[0])
    assert auc > 0.65, result.output  # a cold start on 2,500 tx; chance is 0.5


def test_partitions_spread_over_processes_give_the_same_answer_as_one_process(tmp_path):
    """Partitions share nothing, so forked processes change the speed, never a score or a label's effect."""
    stream = SyntheticStream(seed=5, accounts=200, rate=5, fraud_share=0.08, start=datetime(2026, 2, 1, tzinfo=UTC))
    path = tmp_path / "generated.jsonl"
    with path.open("w") as f:
        for record in itertools.islice(stream, 3000):
            f.write(json.dumps({**record, "fraud": bool(record["attributes"].get("scenario"))}) + "\n")
    fields = ["tx_id", "ts", "account_id", "amount", "direction", "channel", "counterparty_id", "merchant_id", "mcc",
              "country", "device_id", "ip", "lat", "lon", "status"]
    loaded = load_transactions(path, Mapping.model_validate({"columns": {f: f for f in fields}}), "fraud")
    config = _active_config().model_copy(update={"models": _active_config().models.model_copy(update={
        "anomaly": _active_config().models.anomaly.model_copy(update={"enabled": True, "warmup": 100}),
        "supervised": _active_config().models.supervised.model_copy(update={"min_labels": 5})})})
    tables, results = {}, {}
    for processes in (1, 2):
        results[processes] = run_backtest(loaded, Scorer(config), tmp_path / f"{processes}.parquet", "2m",
                                             partitions=4, processes=processes)
        tables[processes] = pq.read_table(tmp_path / f"{processes}.parquet").to_pylist()
    assert tables[1] == tables[2]
    assert results[1].metrics == results[2].metrics and results[1].fed_back == results[2].fed_back > 2000
    # the models did contribute (else the comparison proves little): anomaly scores and fraud probabilities
    assert any(r["model_score"] for r in tables[1])
    assert any("fraud_model" in r["reasons"] for r in tables[1])
    assert {r["partition"] for r in tables[1]} == {0, 1, 2, 3}
    # and one partition is a different deployment: its one model set sees every label
    single = run_backtest(loaded, Scorer(config), tmp_path / "single.parquet", "2m", partitions=1)
    assert single.metrics != results[1].metrics


class FailsOn(Scorer):
    """Raises (or, with ``kill``, dies without a word) when it scores one tx_id."""

    def __init__(self, config, tx_id, kill=False):
        super().__init__(config)
        self.tx_id, self.kill = tx_id, kill

    def score(self, tx, state, source=(-1, -1), carried=None):
        if tx.tx_id == self.tx_id:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"cannot score {tx.tx_id}")
        return super().score(tx, state, source, carried)


@pytest.mark.parametrize("kill", [False, True])
def test_a_failing_process_stops_the_backtest_naming_it_and_writes_nothing(tmp_path, kill):
    loaded = load_transactions(write_csv(tmp_path / "tx.csv", labelled_rows(200)), Mapping.model_validate(MAPPING),
                                  "is_fraud")
    out = tmp_path / "o.parquet"
    with pytest.raises(BacktestError) as caught:
        run_backtest(loaded, FailsOn(ScoringConfig.model_validate(tiny_config()), "b0150", kill), out, "1m",
                        partitions=4, processes=2)
    message = str(caught.value)
    assert "riskcockpit-backtest-" in message and "nothing was written" in message
    assert ("exit code -9" in message) if kill else ("ValueError: cannot score b0150" in message)
    assert not out.exists()
    assert not multiprocessing.active_children()  # none left behind


def test_cli_backtest_names_partitions_and_processes(tmp_path):
    data = write_csv(tmp_path / "tx.csv", labelled_rows(50))
    mapping = write_yaml(tmp_path / "map.yaml", MAPPING)
    result = run_cli(backtest, [data, "--mapping", mapping, "--out", tmp_path / "o.parquet", "--partitions", "3",
                                "--processes", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 partitions on 2 processes" in result.output
    assert set(pq.read_table(tmp_path / "o.parquet").column("partition").to_pylist()) == {0, 1, 2}
    result = run_cli(backtest, [data, "--mapping", mapping, "--out", tmp_path / "o.parquet", "--partitions", "0"])
    assert result.exit_code != 0 and "--partitions" in result.output


def _active_config():
    from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
    from riskcockpit.indicators.scoring import load_scoring_config

    return load_scoring_config(DEFAULT_CONFIG_DIR)


def test_indicator_columns_hold_each_indicators_value_and_null_when_not_applicable(tmp_path):
    """``ind_<name>`` is ``record["features"][name]``: the indicator's value, None if not applicable."""
    config = ScoringConfig.model_validate({"indicators": {"large_amount": {"weight": 60, "params": {"threshold": 1000}},
                                                          "new_device": {"weight": 30, "params": {"min_history": 0}}},
                                           **NO_MODELS})
    mapping = Mapping.model_validate({"columns": {**MAPPING["columns"], "device_id": "device"}})
    data = write_csv(tmp_path / "tx.csv", [{**r, "device": "d1" if i % 2 else ""} for i, r in enumerate(labelled_rows(10))],
                     columns=("id", "booked_at", "customer", "terminal", "value", "device"))
    run_backtest(load_transactions(data, mapping), Scorer(config), tmp_path / "o.parquet")
    rows = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [r["ind_large_amount"] for r in rows] == [r["amount"] for r in rows]
    assert [r["ind_new_device"] is None for r in rows] == [i % 2 == 0 for i in range(10)]


def test_scoring_config_file_errors_name_the_file(tmp_path):
    bad = write_yaml(tmp_path / "bad-indicators.yaml", {"indicators": {"large_amount": {"weight": 500}}})
    result = run_cli(backtest, [write_csv(tmp_path / "tx.csv", labelled_rows(5)), "--mapping",
                                write_yaml(tmp_path / "m.yaml", MAPPING), "--config", bad, "--out", tmp_path / "o.parquet"])
    assert result.exit_code == 1
    assert "bad-indicators.yaml:3: indicators.large_amount.weight: Input should be less than or equal to 100" \
        in result.output
    result = run_cli(backtest, [tmp_path / "tx.csv", "--mapping", tmp_path / "m.yaml", "--out", tmp_path / "o.parquet",
                                "--feedback-delay", "soon"])
    assert result.exit_code == 2 and "--feedback-delay" in result.output


def test_unknown_file_types_and_unreadable_files_are_refused(tmp_path):
    path = tmp_path / "tx.xlsx"
    path.write_text("x")
    with pytest.raises(BacktestError, match=r"tx.xlsx: unknown file type '.xlsx'; expected .csv, .parquet"):
        load_transactions(path, Mapping.model_validate(MAPPING))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,booked_at,customer,terminal,value\nb1,2026-03-01T09:00:00Z,Müller,M1,5\n".encode("latin-1"))
    with pytest.raises(BacktestError, match=r"latin.csv: not UTF-8 text"):
        load_transactions(latin, Mapping.model_validate(MAPPING))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(BacktestError, match=r"broken.parquet: not a readable Parquet file"):
        load_transactions(broken, Mapping.model_validate(MAPPING))


# ------------------------------------------------------------------------------------------ replay


def test_speed_parsing_and_pacing_follow_event_time():
    assert parse_speed("max") is None and parse_speed("realtime") == 1.0 and parse_speed("10X") == 10.0
    for bad in ("fast", "0x", "-2x", "x"):
        with pytest.raises(ValueError):
            parse_speed(bad)
    now, slept = [100.0], []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    items = [(0, "a"), (2000, "b"), (2000, "c"), (5000, "d")]
    assert list(paced(items, 2.0, clock=lambda: now[0], sleep=sleep)) == ["a", "b", "c", "d"]
    assert slept == [1.0, 1.5] and now[0] == 102.5
    slept.clear()
    assert list(paced(items, None, clock=lambda: now[0], sleep=sleep)) == ["a", "b", "c", "d"] and not slept


def consume(bootstrap: str, ids: set[str], timeout: float = 60.0, expected: int | None = None) -> list:
    """Messages of ``transactions`` whose tx_id is in ``ids``, once ``expected`` arrived (or timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer("transactions", bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000)
    found = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < (expected if expected is not None else len(ids)):
            for message in consumer:
                try:
                    tx_id = json.loads(message.value).get("tx_id")
                except (ValueError, AttributeError):
                    continue
                if tx_id in ids:
                    found.append(message)
    finally:
        consumer.close()
    return found


def test_replay_produces_valid_rows_in_event_time_order_keyed_by_account(tmp_path, kafka):
    run = uuid.uuid4().hex[:8]
    rows = []
    for i in range(12):  # written newest first: replay must put them in event-time order
        rows.append({"id": f"r-{run}-{i:02d}", "booked_at": (T0 + timedelta(seconds=60 - 5 * i)).isoformat(),
                     "customer": f"R{run}-{i % 3}", "terminal": f"M{i}", "value": 10.0 + i})
    rows[4]["value"] = 0
    rows[9]["booked_at"] = "yesterday"
    data = write_csv(tmp_path / "replay.csv", rows, columns=("id", "booked_at", "customer", "terminal", "value"))
    obj = Context(None, {"kafka.bootstrap": kafka.bootstrap})
    result = run_cli(replay, [data, "--mapping", write_yaml(tmp_path / "m.yaml", MAPPING), "--quiet",
                              "--rejected", tmp_path / "rejected.jsonl"], obj=obj)
    assert result.exit_code == 0, result.output
    assert "2 of 12 rows rejected" in result.output and f"produced 10 transactions to {kafka.bootstrap}" in result.output
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 2

    ids = {r["id"] for r in rows}
    valid = ids - {rows[4]["id"], rows[9]["id"]}
    messages = consume(kafka.bootstrap, ids, expected=len(valid))
    arrived = {json.loads(m.value)["tx_id"] for m in messages}
    assert arrived == valid
    for message in messages:
        tx = parse_transaction(message.value)  # what the worker will accept
        assert message.key == tx.account_id.encode()
        assert tx.currency == "EUR" and tx.merchant_id.startswith("M")
    by_account: dict[bytes, list] = {}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        by_account.setdefault(message.key, []).append(parse_transaction(message.value).ts)
    assert all(times == sorted(times) for times in by_account.values())


def test_replay_at_a_multiple_of_real_time_takes_the_scaled_event_span(tmp_path, kafka):
    run = uuid.uuid4().hex[:8]
    rows = [{"id": f"p-{run}-{i}", "booked_at": (T0 + timedelta(seconds=i)).isoformat(), "customer": "P1",
             "terminal": "M1", "value": 5.0} for i in (0, 1, 2)]
    data = write_csv(tmp_path / "p.csv", rows, columns=("id", "booked_at", "customer", "terminal", "value"))
    obj = Context(None, {"kafka.bootstrap": kafka.bootstrap})
    started = time.monotonic()
    result = run_cli(replay, [data, "--mapping", write_yaml(tmp_path / "m.yaml", MAPPING), "--speed", "2x",
                              "--quiet"], obj=obj)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 1.0  # 2 s of event time at 2x
    assert len(consume(kafka.bootstrap, {r["id"] for r in rows})) == 3
    assert run_cli(replay, [data, "--mapping", tmp_path / "m.yaml", "--speed", "warp"], obj=obj).exit_code == 2
