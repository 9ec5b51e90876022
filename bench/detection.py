"""How well the score ranks, on data nobody here wrote and on our own generator (printed, not asserted).

For each source, the backtest (``riskcockpit backtest``'s code) runs twice over the whole file in
event-time order: label-free (no disposition ever arrives) and with every label fed back
``--delay`` after its transaction. Metrics count only transactions from ``test_from`` on. Beside
them, two references computed in the same run on the same split:

- sorting by amount alone;
- scikit-learn's ``HistGradientBoostingClassifier``, trained in batch on every transaction before
  ``test_from`` with every label, on what the file's columns give (amount, local hour, merchant
  category, and the account's running mean amount overall and at that category).

Sources:

- ``sparkov``: ``../shared/datasets/sparkov-2019.parquet`` (its README's protocol: labels 7 days
  late, metrics on 2019-11-01..12-31), when present;
- ``generator``: our generator, over a month, in the mapping example's five columns and with every field.

Results go to ``bench/results/detection-<date>.txt``.

    python bench/detection.py [--sources sparkov generator] [--processes 2] [--count 200000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from backtest import START, write_public_file  # bench/backtest.py, beside this file
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from riskcockpit.backtest.history import load_mapping, load_transactions
from riskcockpit.backtest.run import run_backtest
from riskcockpit.ground.runtime import tune_gc
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.scoring import Scorer, load_scoring_config

SPARKOV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sparkov-2019.parquet"
SPARKOV_MAPPING = """columns:
  tx_id: trans_num
  ts: ts_ms
  account_id: cc_num
  merchant_id: merchant
  mcc: mcc
  amount: amt
  lat: merch_lat
  lon: merch_long
defaults:
  currency: USD
  direction: debit
"""
NEVER = "100000d"  # a delay no file spans: label-free


def generator_files(folder: Path, count: int) -> list[tuple[str, Path, Path, datetime]]:
    """A month of generated traffic in two layouts (bench/backtest.py's); the second half is the test period."""
    return [(f"generator, {name}", *write_public_file(folder, count, layout, rate=count / (30 * 86_400), seed=23),
             START + timedelta(days=15))
            for name, layout in (("five columns", "example"), ("every field", "full"))]


def reference_features(items, utc_offset_hours: float) -> np.ndarray:
    """What a batch model gets from the file: amount, local hour, MCC, the account's running
    mean amount overall and at this MCC (before this transaction)."""
    overall: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    per_category: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0])
    rows, category = [], {}  # MCC → a small code: the model's categories must be below its bin count
    for _, tx, _ in items:
        a, c = overall[tx.account_id], per_category[(tx.account_id, tx.mcc)]
        hour = (tx.ts_ms / 3_600_000 + utc_offset_hours) % 24
        code = np.nan if tx.mcc is None else category.setdefault(tx.mcc, min(len(category), 250))
        rows.append([tx.amount, hour, code,
                     a[1] if a[0] else np.nan, c[1] if c[0] else np.nan])
        for stat in (a, c):
            stat[0] += 1
            stat[1] += (tx.amount - stat[1]) / stat[0]
    return np.asarray(rows)


def metrics(labels, scores) -> tuple[float, float]:
    return roc_auc_score(labels, scores), average_precision_score(labels, scores)


def run_source(name: str, data: Path, mapping: Path, test_from: datetime, delay: str, processes: int,
               folder: Path) -> list[tuple]:
    loaded = load_transactions(data, load_mapping(mapping), "is_fraud")
    config = load_scoring_config(DEFAULT_CONFIG_DIR)
    tested = np.array([tx.ts >= test_from for _, tx, _ in loaded.items])
    labels = np.array([bool(y) for _, _, y in loaded.items])[tested]
    rows = []
    for regime, feedback in (("label-free", NEVER), (f"labels {delay} late", delay)):
        tune_gc()
        with redirect_stdout(io.StringIO()):
            result = run_backtest(loaded, Scorer(config), folder / "out.parquet", feedback, partitions=4,
                                  processes=processes, write_rejects=False, test_from=test_from)
        m = result.metrics
        rows.append((name, f"riskcockpit, {regime}", m["roc_auc"], m["average_precision"],
                     m.get("card_precision_at_k"), f"{result.rate:,.0f} tx/s"))
        print(*rows[-1], sep=" | ", file=sys.stderr)
    amounts = np.array([tx.amount for _, tx, _ in loaded.items])[tested]
    rows.append((name, "sorting by amount", *metrics(labels, amounts), None, ""))
    x = reference_features(loaded.items, config.models.utc_offset_hours)
    y_all = np.array([bool(y) for _, _, y in loaded.items])
    t0 = time.perf_counter()
    model = HistGradientBoostingClassifier(categorical_features=[2], random_state=0).fit(x[~tested], y_all[~tested])
    p = model.predict_proba(x[tested])[:, 1]
    rows.append((name, "batch gradient boosting, every label before the test period", *metrics(labels, p), None,
                 f"trained in {time.perf_counter() - t0:.0f} s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", default=["sparkov", "generator"], choices=["sparkov", "generator"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--count", type=int, default=200_000, help="generated transactions")
    parser.add_argument("--delay", default="7d", help="labels fed back this long after each transaction")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = []
        if "sparkov" in args.sources:
            if SPARKOV.is_file():
                (folder / "sparkov.yaml").write_text(SPARKOV_MAPPING)
                sources.append(("Sparkov 2019", SPARKOV, folder / "sparkov.yaml", datetime(2019, 11, 1, tzinfo=UTC)))
            else:
                print(f"{SPARKOV} not found: Sparkov left out", file=sys.stderr)
        if "generator" in args.sources:
            sources += generator_files(folder, args.count)
        for name, data, mapping, test_from in sources:
            rows += run_source(name, data, mapping, test_from, args.delay, args.processes, folder)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"detection benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, labels {args.delay} late, "
             f"{args.processes} processes",
             "| source | score | ROC AUC | average precision | card precision@100 | |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    target = results / f"detection-{datetime.now(UTC):%Y-%m-%d-%H%M}.txt"
    target.write_text(text + "\n")
    print(f"→ {target}")


if __name__ == "__main__":
    main()
