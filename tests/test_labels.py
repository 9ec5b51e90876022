"""Bulk label files: read once, checked whole, shared by `riskcockpit labels` and the backtest."""

from __future__ import annotations

from datetime import datetime

import pytest

from riskcockpit.backtest.history import BacktestError
from riskcockpit.labels import disposition, load_label_mapping, load_labels


@pytest.fixture
def mapping(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("columns:\n  tx_id: ref\n  account_id: card\n  label: outcome\n  known_at: reported\n")
    return load_label_mapping(path)


def test_a_label_file_gives_verdicts_with_the_time_they_became_known(tmp_path, mapping):
    path = tmp_path / "chargebacks.csv"
    path.write_text("ref,card,outcome,reported\nt1,A1,fraud,2026-01-05T08:00:00+08:00\nt2,A2,Legit,\n")
    first, second = load_labels(path, mapping)
    assert (first.tx_id, first.account_id, first.is_fraud, first.known_at_ms) == ("t1", "A1", True, 1767571200000)
    assert (second.is_fraud, second.known_at_ms) == (False, None)
    sent = disposition(first, "labels:ops:chargebacks.csv", "2026-02-01T00:00:00.000+00:00")
    assert sent["label"] == "confirmed_fraud" and sent["known_at"] == "2026-01-05T00:00:00.000+00:00"
    assert set(sent) == {"tx_id", "account_id", "label", "actor", "at", "source", "known_at"}  # no features


def test_a_file_with_bad_rows_is_refused_whole_naming_each_row(tmp_path, mapping):
    path = tmp_path / "bad.csv"
    path.write_text("ref,card,outcome,reported\nt1,A1,fraud,\nt2,,fraud,\nt3,A3,maybe,\nt4,A4,1,yesterday\n"
                    "t\x015,A5,0,\n")
    with pytest.raises(BacktestError) as caught:
        load_labels(path, mapping)
    message = str(caught.value)
    assert "4 of 5 rows are not usable labels; nothing was published" in message
    for expected in ("row 2: account_id is empty", "row 3: 'maybe' is not a label",
                     "row 4: known_at 'yesterday' is not a time", "row 5: tx_id holds a control character"):
        assert expected in message


def test_a_time_without_a_zone_needs_the_mappings_timezone(tmp_path):
    path = tmp_path / "naive.csv"
    path.write_text("ref,card,outcome,when\nt1,A1,fraud,2026-01-05T08:00:00\n")
    plain, zoned = tmp_path / "plain.yaml", tmp_path / "zoned.yaml"
    plain.write_text("columns: {tx_id: ref, account_id: card, label: outcome, known_at: when}\n")
    zoned.write_text("columns: {tx_id: ref, account_id: card, label: outcome, known_at: when}\n"
                     "timezone: Asia/Shanghai\n")
    with pytest.raises(BacktestError, match="has no zone; add `timezone:`"):
        load_labels(path, load_label_mapping(plain))
    [label] = load_labels(path, load_label_mapping(zoned))
    assert label.known_at_ms == 1767571200000


@pytest.mark.parametrize("text, expected", [
    ("columns: {tx_id: ref, label: outcome}\n", "no column for required field account_id"),
    ("columns: {tx_id: ref, account_id: card, label: outcome, amount: amt}\n", "amount: not a label field"),
    ("columns: {tx_id: ref, account_id: card, label: outcome}\ntimezone: Mars/Base\n", "not an IANA time zone"),
])
def test_mapping_errors_name_the_file_and_field(tmp_path, text, expected):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(BacktestError) as caught:
        load_label_mapping(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_a_column_the_file_lacks_is_named(tmp_path, mapping):
    path = tmp_path / "other.csv"
    path.write_text("id,card,outcome,reported\nt1,A1,fraud,\n")
    with pytest.raises(BacktestError, match="columns.tx_id: column 'ref' is not in"):
        load_labels(path, mapping)


# ------------------------------------------------------------------------------ the backtest's label file


def _with_models():
    """The default scoring config: the supervised model learns what is fed back."""
    from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
    from riskcockpit.indicators.scoring import load_scoring_config

    return load_scoring_config(DEFAULT_CONFIG_DIR)


def test_a_label_file_known_an_hour_late_is_the_labels_column_an_hour_late(tmp_path):
    """One code path: the file's verdicts at their known time are the column's after the delay."""
    import pyarrow.parquet as pq
    from test_backtest import MAPPING, labelled_rows, write_csv

    from riskcockpit.backtest.history import Mapping, load_transactions
    from riskcockpit.backtest.run import run_backtest
    from riskcockpit.indicators.scoring import Scorer
    from riskcockpit.labels import attach

    rows = labelled_rows(400, every=8)
    transactions = write_csv(tmp_path / "tx.csv", rows)
    mapping = Mapping.model_validate(MAPPING)
    column = run_backtest(load_transactions(transactions, mapping, "is_fraud"), Scorer(_with_models()),
                             tmp_path / "column.parquet", "1h", partitions=2)
    labels = tmp_path / "labels.csv"
    labels.write_text("ref,card,outcome,reported\n" + "".join(
        f"{r['id']},{r['customer']},{r['is_fraud']},"
        f"{int(datetime.fromisoformat(r['booked_at']).timestamp() * 1000) + 3_600_000}\n" for r in rows))
    label_map = tmp_path / "labels.yaml"
    label_map.write_text("columns: {tx_id: ref, account_id: card, label: outcome, known_at: reported}\n")
    loaded, unmatched = attach(load_transactions(transactions, mapping),
                               load_labels(labels, load_label_mapping(label_map)))
    from_file = run_backtest(loaded, Scorer(_with_models()), tmp_path / "file.parquet", "7d", partitions=2)
    assert unmatched == 0 and from_file.fed_back == column.fed_back == 340
    a, b = (pq.read_table(p).to_pydict() for p in (tmp_path / "column.parquet", tmp_path / "file.parquet"))
    assert a["risk_score"] == b["risk_score"] and a["label"] == b["label"]
    assert max(b["fraud_probability"]) > 0  # the model did learn from them


def test_a_chargeback_file_teaches_its_frauds_when_known_and_the_rest_count_as_legitimate(tmp_path):
    from test_backtest import MAPPING, T0, Spy, labelled_rows, tiny_config, write_csv

    from riskcockpit.backtest.history import Mapping, load_transactions
    from riskcockpit.backtest.run import run_backtest
    from riskcockpit.indicators.scoring import ScoringConfig
    from riskcockpit.labels import attach

    rows = labelled_rows(200)
    frauds = [r for r in rows if r["fraud"]]
    known = {r["id"]: int(T0.timestamp() * 1000) + (150 - 10 * i) * 60_000 for i, r in enumerate(frauds)}
    labels = tmp_path / "chargebacks.csv"
    labels.write_text("ref,card,outcome,reported\n" + "".join(
        f"{r['id']},{r['customer']},fraud,{known[r['id']]}\n" for r in frauds) + "gone,C1,fraud,\n")
    label_map = tmp_path / "labels.yaml"
    label_map.write_text("columns: {tx_id: ref, account_id: card, label: outcome, known_at: reported}\n")
    loaded, unmatched = attach(load_transactions(write_csv(tmp_path / "tx.csv", rows), Mapping.model_validate(MAPPING)),
                               load_labels(labels, load_label_mapping(label_map)))
    spy = Spy(ScoringConfig.model_validate(tiny_config()))
    result = run_backtest(loaded, spy, tmp_path / "o.parquet", "7d")
    assert unmatched == 1 and result.fed_back == len(frauds) == 20
    assert result.metrics["frauds"] == 20 and result.metrics["transactions"] == 200
    for tx_id, ts, label, arrived in spy.arrivals:
        booked = int(datetime.fromisoformat(ts).timestamp() * 1000)
        # when it became known, or, if that is before the transaction, right after it
        assert label is True and arrived >= max(known[tx_id], booked)
    early = [r["id"] for r in frauds if known[r["id"]] < int(datetime.fromisoformat(r["booked_at"]).timestamp() * 1000)]
    assert early, "the file should hold labels known before their transaction, to test the clamp"
