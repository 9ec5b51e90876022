"""Backtest: score a file of historical transactions with the worker's own pipeline.

The valid transactions of a file (:mod:`riskcockpit.backtest.history`) are scored in
event-time order by :class:`riskcockpit.indicators.pipeline.Pipeline`, staged and partitioned as
the worker stages them (:mod:`riskcockpit.backtest.stages`), with every state kept in memory.
There is no second implementation of anything: what the backtest says is what the worker
would have said. The metrics and reports are :mod:`riskcockpit.backtest.metrics`.

With labels (``--labels COLUMN``, or a label file), each label is fed to the pipeline
(``Pipeline.learn``) as an analyst's disposition ``feedback_delay`` after its transaction's
event time, never earlier: before a transaction at time *t* is scored, every disposition due
at or before *t* is delivered.

Output (``--out``, Parquet), one row per valid input transaction in event-time order: ``tx_id``,
``ts`` (UTC, ms), ``account_id``, ``partition`` (whose models scored it), ``amount``, ``risk_score`` (0–100), ``tier`` (0–3),
``model_score``, ``label_free_score`` (the score without the supervised model), ``fraud_probability``
(−1 before the model contributes), ``regime`` (``label-free``, ``blended`` or ``supervised``: how much
of the score the supervised model made), ``config_hash``, ``reasons`` (JSON text, as in ``risk.scores``), ``label`` (with
``--labels``) and ``ind_<name>`` per enabled indicator: ``record["features"][name]``, the
indicator's value (null: not applicable). Malformed rows go, with
their row number, reason and original values, to ``OUT.rejected.jsonl``. Metrics count a
repeated ``tx_id`` once, and its disposition is fed back once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from riskcockpit.backtest.history import BacktestError, Loaded, write_rejected
from riskcockpit.backtest.metrics import evaluate
from riskcockpit.backtest.stages import ProcessFailed, partition_of, score_staged
from riskcockpit.ground.durations import parse_duration_ms
from riskcockpit.ground.yamlfile import ConfigError, read_yaml, validate
from riskcockpit.indicators.scoring import Scorer, ScoringConfig


def load_config_file(path: str | Path) -> ScoringConfig:
    """A scoring config file in the format of ``config/indicators.yaml``."""
    path = Path(path)
    try:
        return validate(ScoringConfig, read_yaml(path), error=BacktestError)
    except ConfigError as exc:
        raise BacktestError(str(exc)) from None


@dataclass
class Result:
    loaded: Loaded
    out: Path
    rejected_file: Path | None
    scored: int
    duplicates: int
    fed_back: int
    seconds: float
    scoring_seconds: float
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    table: Any = None  # pyarrow.Table: what was written to ``out``

    @property
    def rate(self) -> float:
        return self.scored / self.seconds if self.seconds else float("inf")


def feed_plan(loaded: Loaded, delay: int) -> tuple[list, list[int | None], int]:
    """What the staged scoring takes: (items: (transaction, label to feed back or None), due: when
    each label is delivered, distinct tx_ids). A repeated tx_id is fed back once, its first label;
    from a label file only the file's labels, when each became known."""
    fed = loaded.fed
    seen: set[str] = set()
    items, due = [], []
    for _, tx, label in loaded.items:
        feed = label if tx.tx_id not in seen and (fed is None or tx.tx_id in fed) else None
        known = fed.get(tx.tx_id) if fed else None
        items.append((tx, feed))
        # Never before the transaction: a label cannot teach the decision it has not seen yet.
        due.append(None if feed is None else tx.ts_ms + delay if known is None else max(tx.ts_ms, known))
        seen.add(tx.tx_id)
    return items, due, len(seen)


def run_backtest(loaded: Loaded, scorer: Scorer, out: str | Path, feedback_delay: str | int = "7d",
                 progress: Callable[[int, str], None] | None = None, partitions: int = 1,
                 processes: int = 1, write_rejects: bool = True, test_from: datetime | None = None,
                 k: int = 100) -> Result:
    """Score ``loaded`` in event-time order and write one Parquet row per valid transaction.

    The worker's stages over a topic of ``partitions`` partitions, spread over ``processes``
    (:mod:`riskcockpit.backtest_stages`). With labels, each disposition reaches the scorer once
    per ``tx_id`` and never before its transaction's time plus ``feedback_delay`` (from a label
    file, when it became known, if the file says so; never before its transaction). Rejected rows
    go to ``OUT.rejected.jsonl`` unless ``write_rejects`` is false (a second run of the same file).
    With ``test_from``, metrics count only the transactions from then on: the rest warms the
    state and the models, as the months before a go-live would.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    delay = parse_duration_ms(feedback_delay)
    if delay < 0:
        raise BacktestError(f"--feedback-delay: must not be negative (got {feedback_delay!r})")
    if partitions < 1 or processes < 1:
        raise BacktestError(f"--partitions and --processes must be at least 1 (got {partitions}, {processes})")
    labelled = any(label is not None for _, _, label in loaded.items)
    items, due, distinct = feed_plan(loaded, delay)
    started = time.perf_counter()
    owner = partition_of(items, partitions)
    try:
        shards = score_staged(scorer, items, due, owner, processes, progress)
    except ProcessFailed as exc:
        raise BacktestError(str(exc)) from None
    written = time.perf_counter()
    phases = {"stages": written - started}
    if progress is not None:
        progress(len(items), "writing")
    n = len(items)
    # Each process's table, back in event-time order.
    scored = pa.concat_tables([shard.table for shard in shards])
    order = np.argsort(np.concatenate([np.asarray(shard.positions, dtype=np.int64) for shard in shards]), kind="stable")
    scored = scored.take(pa.array(order))
    txs = [tx for tx, _ in items]
    arrays = {"tx_id": pa.array([tx.tx_id for tx in txs], pa.string()),
              "ts": pa.array([tx.ts for tx in txs], pa.timestamp("ms", tz="UTC")),
              "account_id": pa.array([tx.account_id for tx in txs], pa.string()),
              "partition": pa.array(owner, pa.int16()),
              "amount": pa.array([tx.amount for tx in txs], pa.float64()),
              "risk_score": scored["risk_score"], "tier": scored["tier"], "model_score": scored["model_score"],
              "label_free_score": scored["label_free_score"], "fraud_probability": scored["fraud_probability"],
              "regime": scored["regime"],
              "config_hash": pa.array([scorer.config_hash] * n, pa.string()), "reasons": scored["reasons"]}
    labels = [label for _, _, label in loaded.items]
    if labelled:
        arrays["label"] = pa.array(labels, pa.bool_())
    arrays |= {name: scored[name] for name in scored.column_names if name.startswith("ind_")}
    table = pa.table(arrays)
    table = table.replace_schema_metadata({"riskcockpit.config_hash": scorer.config_hash,
                                           "riskcockpit.source": str(loaded.path),
                                           "riskcockpit.partitions": str(partitions),
                                           "riskcockpit.feedback_delay_ms": str(delay) if labelled else ""})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    seconds = time.perf_counter() - started
    phases["merge + write"] = time.perf_counter() - written
    rejected_file = write_rejected(loaded, out.with_suffix(".rejected.jsonl")) if write_rejects else None
    duplicates = n - distinct
    result = Result(loaded, out, rejected_file, n, duplicates, sum(s.fed_back for s in shards), seconds,
                    sum(s.core_seconds for s in shards), extra={"phases": phases}, table=table)
    if labelled:
        tested = range(n) if test_from is None else [i for i, tx in enumerate(txs) if tx.ts >= test_from]
        column = {name: table[name].to_pylist() for name in ("risk_score", "tier", "tx_id", "account_id")}
        pick = lambda name: [column[name][i] for i in tested]  # noqa: E731
        result.metrics = evaluate([labels[i] for i in tested], pick("risk_score"), pick("tier"), pick("tx_id"),
                                  [txs[i].ts_ms // 86_400_000 for i in tested], pick("account_id"), k)
        result.metrics["test_from"] = test_from
    return result
