"""The backtest on a labelled public-style file: transactions/s of each phase and of the whole run.

Writes N generated transactions as a CSV whose columns are named as a bank's export would name
them (``id``, ``booked_at``, ``customer``, ``terminal``, ``value``, … and ``is_fraud``), with the
mapping of the issue, then runs what ``riskcockpit backtest FILE --mapping MAP.yaml --labels
is_fraud --feedback-delay 1h`` runs, timing reading + validation and scoring + writing apart,
on one process and on every CPU, side by side (the two must give the same scores).

    python bench/backtest.py [--count 100000] [--partitions 4] [--keep DIR]
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
from riskcockpit.backtest_stages import available_cpus
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
    parser.add_argument("--partitions", type=int, default=4, help="as the worker's topics (kafka.partitions)")
    parser.add_argument("--keep", type=Path, help="write the file, mapping and output here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data, mapping = write_public_file(folder, args.count)
        tune_gc()  # as `riskcockpit backtest` runs
        t0 = time.perf_counter()
        loaded = load_transactions(data, load_mapping(mapping), "is_fraud")
        read = time.perf_counter() - t0
        runs = {}
        for processes in sorted({1, min(available_cpus(), args.partitions)}):
            scorer = Scorer(load_scoring_config(DEFAULT_CONFIG_DIR))
            t1 = time.perf_counter()
            result = run_backtest(loaded, scorer, folder / f"out{processes}.parquet", "1h",
                                  partitions=args.partitions, processes=processes)
            runs[processes] = (result, time.perf_counter() - t1)
    n = result.scored
    print(f"{n} labelled transactions ({args.count} rows), {len(scorer.indicators)} indicators + models, "
          f"labels fed back 1h late, {args.partitions} partitions\n")
    print(f"{'read + map + validate':<44} {read:7.2f} s  {n / read:9,.0f} tx/s")
    for processes, (result, seconds) in runs.items():
        print(f"{f'scoring core, CPU time summed ({processes} proc)':<44} {result.scoring_seconds:7.2f} s  "
              f"{n / result.scoring_seconds:9,.0f} tx/s")
        print(f"{f'score + feed back + write ({processes} proc)':<44} {seconds:7.2f} s  {n / seconds:9,.0f} tx/s")
        for phase, phase_seconds in result.extra["phases"].items():
            print(f"{f'  of which {phase}':<44} {phase_seconds:7.2f} s")
        print(f"{f'whole backtest ({processes} proc)':<44} {read + seconds:7.2f} s  {n / (read + seconds):9,.0f} tx/s")
    (one, one_s), (best, best_s) = runs[1], runs[max(runs)]
    same = one.metrics == best.metrics
    print(f"\n{max(runs)} processes / 1 process: {(read + one_s) / (read + best_s):.2f}x "
          f"({'same' if same else 'DIFFERENT'} results)")
    print(f"whole backtest / target ({TARGET:,} tx/s): {n / (read + best_s) / TARGET:.2f}x\n")
    print(format_metrics(best.metrics))


if __name__ == "__main__":
    main()
