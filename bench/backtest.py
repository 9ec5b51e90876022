"""The backtest on a labelled public-style file: transactions/s of each phase and of the whole run.

Writes N generated transactions as a CSV whose columns are named as a bank's export would name
them (``id``, ``booked_at``, ``customer``, ``terminal``, ``value``, … and ``is_fraud``), with the
mapping of the issue, then runs what ``riskcockpit backtest FILE --mapping MAP.yaml --labels
is_fraud --feedback-delay 1h`` runs, timing reading + validation and scoring + writing apart.

    python bench/backtest.py [--count 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from indicators.scoring import Scorer, load_scoring_config
from riskcockpit.backtest import format_metrics, load_mapping, load_transactions, run_backtest
from riskcockpit.runtime import tune_gc
from riskcockpit.settings import DEFAULT_CONFIG_DIR
from streams.generator import SyntheticStream

RENAMED = {"tx_id": "id", "ts": "booked_at", "account_id": "customer", "merchant_id": "terminal", "amount": "value"}
OTHER = ("currency", "direction", "channel", "mcc", "country", "counterparty_id", "device_id", "ip", "lat", "lon",
         "status")
TARGET = 5_000


def write_public_file(folder: Path, count: int) -> tuple[Path, Path]:
    data, mapping = folder / "transactions.csv", folder / "map.yaml"
    stream = SyntheticStream(seed=11, accounts=20_000, rate=5, start=datetime(2026, 1, 5, tzinfo=UTC),
                             fraud_share=0.02)
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*RENAMED.values(), *OTHER, "is_fraud"])
        for r in stream.take(count):
            writer.writerow([*(r.get(k, "") for k in RENAMED), *(r.get(k, "") for k in OTHER),
                             int(bool(r["attributes"].get("scenario")))])
    lines = ["columns:"] + [f"  {field}: {column}" for field, column in RENAMED.items()]
    lines += [f"  {field}: {field}" for field in OTHER]
    mapping.write_text("\n".join(lines) + "\n")
    return data, mapping


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write the file, mapping and output here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data, mapping = write_public_file(folder, args.count)
        tune_gc()  # as `riskcockpit backtest` runs
        t0 = time.perf_counter()
        loaded = load_transactions(data, load_mapping(mapping), "is_fraud")
        t1 = time.perf_counter()
        scorer = Scorer(load_scoring_config(DEFAULT_CONFIG_DIR))
        result = run_backtest(loaded, scorer, folder / "out.parquet", "1h")
        t2 = time.perf_counter()
    n = result.scored
    print(f"{n} labelled transactions ({args.count} rows), {len(scorer.indicators)} indicators + models, "
          f"labels fed back 1h late\n")
    for label, seconds in (("read + map + validate", t1 - t0), ("scoring core", result.scoring_seconds),
                           ("score + feed back + write Parquet", t2 - t1), ("whole backtest", t2 - t0)):
        print(f"{label:<36} {seconds:7.2f} s  {n / seconds:9,.0f} tx/s")
    print(f"\nwhole backtest / target ({TARGET:,} tx/s): {n / (t2 - t0) / TARGET:.2f}x\n")
    print(format_metrics(result.metrics))


if __name__ == "__main__":
    main()
