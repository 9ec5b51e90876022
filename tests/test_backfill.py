"""Warm start: a backfill of history, then live scoring by a real worker, decides exactly as one
continuous backtest over history and live traffic."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import wait_for
from kafka import KafkaConsumer, KafkaProducer

from riskcockpit.backtest.history import load_mapping, load_transactions
from riskcockpit.backtest.run import run_backtest
from riskcockpit.cli import cli
from riskcockpit.ground import topics
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.scoring import Scorer, load_scoring_config
from riskcockpit.labels import attach, load_label_mapping, load_labels
from riskcockpit.streams.generator import SyntheticStream

pytestmark = pytest.mark.integration  # a real broker, store or processes

FIELDS = ["tx_id", "ts", "account_id", "amount", "currency", "direction", "channel", "counterparty_id",
          "merchant_id", "mcc", "country", "device_id", "ip", "lat", "lon", "status", "attributes"]


def scores_on(bootstrap: str, ids: set[str]) -> dict[str, dict]:
    consumer = KafkaConsumer(topics.SCORES, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    found = {}
    for message in consumer:
        record = json.loads(message.value)
        if record["tx_id"] in ids:
            found[record["tx_id"]] = record
    consumer.close()
    return found


def test_backfill_then_live_scoring_decides_as_one_continuous_backtest(fresh_kafka, env, processes, tmp_path,
                                                                     monkeypatch):
    """One partition, so the live entity stages see the transactions in the backtest's order.
    History has labels (a chargeback file, each known as its transaction happens); live has none."""
    stream = SyntheticStream(seed=23, accounts=200, rate=5, fraud_share=0.05,
                             start=datetime.now(UTC) - timedelta(hours=3))
    records = list(itertools.islice(stream, 2400))
    history, live = records[:1800], records[1800:]
    for name, part in (("history", history), ("both", records)):
        with (tmp_path / f"{name}.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    (tmp_path / "map.yaml").write_text(json.dumps({"columns": {f: f for f in FIELDS}}))
    (tmp_path / "labels.csv").write_text("ref,card,outcome,known\n" + "".join(
        f"{r['tx_id']},{r['account_id']},{bool(r['attributes'].get('scenario'))},{r['ts']}\n" for r in history))
    (tmp_path / "labels.yaml").write_text("columns: {tx_id: ref, account_id: card, label: outcome, known_at: known}\n")

    mapping = load_mapping(tmp_path / "map.yaml")
    labels = load_labels(tmp_path / "labels.csv", load_label_mapping(tmp_path / "labels.yaml"))
    loaded, _ = attach(load_transactions(tmp_path / "both.jsonl", mapping), labels)
    run_backtest(loaded, Scorer(load_scoring_config(DEFAULT_CONFIG_DIR)), tmp_path / "both.parquet",
                                 partitions=1)
    expected = {row["tx_id"]: row for row in pq.read_table(tmp_path / "both.parquet").to_pylist()}

    worker_env = {"RISKCOCKPIT_KAFKA": fresh_kafka.bootstrap, "RISKCOCKPIT_KAFKA__PARTITIONS": "1",
                  "RISKCOCKPIT_DATA_DIR": str(tmp_path / "w")}
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["backfill", str(tmp_path / "history.jsonl"), "--mapping", str(tmp_path / "map.yaml"),
                                      "--label-file", str(tmp_path / "labels.csv"),
                                      "--label-mapping", str(tmp_path / "labels.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "backfilled 1800 transactions (1800 labels learned)" in result.output, result.output
    again = CliRunner().invoke(cli, ["backfill", str(tmp_path / "history.jsonl"), "--mapping", str(tmp_path / "map.yaml"),
                                     "--quiet"])
    assert again.exit_code != 0 and "already hold state" in again.output, again.output
    assert scores_on(fresh_kafka.bootstrap, {r["tx_id"] for r in history}) == {}  # nothing decided was published

    processes.start("worker", ["worker"], worker_env)
    producer = KafkaProducer(bootstrap_servers=fresh_kafka.bootstrap, acks="all")
    for r in live:
        producer.send(topics.TRANSACTIONS, key=r["account_id"].encode(), value=json.dumps(r).encode())
    producer.flush()
    producer.close()
    ids = {r["tx_id"] for r in live}
    got: dict[str, dict] = {}

    def all_scored() -> bool:
        got.update(scores_on(fresh_kafka.bootstrap, ids - set(got)))
        return len(got) == len(ids)

    wait_for(all_scored, timeout=300, what=f"{len(ids)} live scores", processes=processes)
    assert "models restored (1800 transactions seen)" in processes.log("worker")
    differ = [(tx_id, got[tx_id]["score"], expected[tx_id]["risk_score"]) for tx_id in ids
              if (got[tx_id]["score"], got[tx_id]["tier"], got[tx_id]["reasons"])
              != (expected[tx_id]["risk_score"], expected[tx_id]["tier"], json.loads(expected[tx_id]["reasons"]))]
    assert not differ, f"{len(differ)} of {len(ids)} live decisions differ from the continuous backtest: {differ[:5]}"
    assert any(got[tx_id]["fraud_probability"] >= 0 for tx_id in ids), "the history's labels taught no model"
    assert any(got[tx_id]["tier"] for tx_id in ids)
