"""The backtest on labelled public-style files: transactions/s of each phase and of the whole run.

Writes N generated transactions as CSV files whose columns are named as a bank's export would
name them, with their mappings, then runs what ``riskcockpit backtest FILE --mapping MAP.yaml
--labels is_fraud --feedback-delay 1h`` runs, timing reading + validation and scoring + writing
apart, on one process and on every CPU, side by side (the two must give the same scores).
Two layouts of the same transactions:

- ``example``: the columns of the issue's mapping example and nothing else (``id``,
  ``booked_at``, ``customer``, ``terminal``, ``value``, ``is_fraud``; currency a default), the
  layout of public card-fraud sets such as the Fraud Detection Handbook's simulated one
  (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD). Indicators
  whose field is absent say "not applicable".
- ``full``: those and every other field of the contract (direction, channel, MCC, country,
  counterparty, device, IP, position, status), so every indicator runs.

    python bench/backtest.py [--count 100000] [--partitions 4] [--layout example full] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from riskcockpit.backtest.history import load_mapping, load_transactions
from riskcockpit.backtest.metrics import format_metrics
from riskcockpit.backtest.run import run_backtest
from riskcockpit.backtest.stages import available_cpus
from riskcockpit.ground.runtime import tune_gc
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.scoring import Scorer, load_scoring_config
from riskcockpit.streams.generator import SyntheticStream

RENAMED = {"tx_id": "id", "ts": "booked_at", "account_id": "customer", "merchant_id": "terminal", "amount": "value"}
OTHER = ("currency", "direction", "channel", "mcc", "country", "counterparty_id", "device_id", "ip", "lat", "lon",
         "status")
TARGET = 5_000


LAYOUTS = {"example": (), "full": OTHER}


def header(layout: str) -> list[str]:
    return [*RENAMED.values(), *LAYOUTS[layout], "is_fraud"]


START = datetime(2026, 1, 5, tzinfo=UTC)


def write_public_file(folder: Path, count: int, layout: str = "full", rate: float = 5,
                      seed: int = 11) -> tuple[Path, Path]:
    """``count`` generated transactions, ``rate`` a second from :data:`START`, as a labelled CSV
    in ``layout`` and its mapping."""
    other = LAYOUTS[layout]
    data, mapping = folder / f"transactions-{layout}.csv", folder / f"map-{layout}.yaml"
    stream = SyntheticStream(seed=seed, accounts=20_000, rate=rate, start=START, fraud_share=0.02)
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header(layout))
        for r in stream.take(count):
            writer.writerow([*(r.get(k, "") for k in RENAMED), *(r.get(k, "") for k in other),
                             int(bool(r["attributes"].get("scenario")))])
    lines = ["columns:"] + [f"  {field}: {column}" for field, column in RENAMED.items()]
    lines += [f"  {field}: {field}" for field in other]
    if not other:
        lines += ["defaults:", "  currency: CNY"]
    mapping.write_text("\n".join(lines) + "\n")
    return data, mapping


def run_layout(folder: Path, count: int, partitions: int, layout: str) -> float:
    """Backtest one layout on one process and on every CPU; print the phases; return the best tx/s."""
    data, mapping = write_public_file(folder, count, layout)
    tune_gc()  # as `riskcockpit backtest` runs
    t0 = time.perf_counter()
    loaded = load_transactions(data, load_mapping(mapping), "is_fraud")
    read = time.perf_counter() - t0
    runs = {}
    for processes in sorted({1, min(available_cpus(), partitions)}):
        scorer = Scorer(load_scoring_config(DEFAULT_CONFIG_DIR))
        t1 = time.perf_counter()
        result = run_backtest(loaded, scorer, folder / f"out-{layout}-{processes}.parquet", "1h",
                              partitions=partitions, processes=processes)
        runs[processes] = (result, time.perf_counter() - t1)
    n = result.scored
    print(f"layout {layout!r}: {n} labelled transactions ({count} rows, columns {', '.join(header(layout))}), "
          f"{len(scorer.indicators)} indicators + models, labels fed back 1h late, {partitions} partitions\n")
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
    print()
    return n / (read + best_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4, help="as the worker's topics (kafka.partitions)")
    parser.add_argument("--layout", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--keep", type=Path, help="write the files, mappings and output here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rates = {layout: run_layout(folder, args.count, args.partitions, layout) for layout in args.layout}
    print("  ".join(f"{layout}: {rate:,.0f} tx/s ({rate / TARGET:.2f}x target)" for layout, rate in rates.items()))


if __name__ == "__main__":
    main()
