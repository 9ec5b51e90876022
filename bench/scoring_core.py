"""The scoring core on one core: µs per transaction, with and without the online models, next to
what validating the record alone costs, all in one run; and the rate of the generator that feeds it.

    python bench/scoring_core.py [--count 50000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from itertools import islice

import orjson

from riskcockpit.ground.contract import Transaction, parse_transaction
from riskcockpit.ground.runtime import tune_gc
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.pipeline import Dicts, Pipeline
from riskcockpit.indicators.scoring import Scorer, load_scoring_config
from riskcockpit.streams.generator import SyntheticStream


def timed(label: str, fn, n: int) -> float:
    tune_gc()  # as the worker and the backtest run
    t0 = time.perf_counter()
    fn()
    us = (time.perf_counter() - t0) / n * 1e6
    print(f"{label:<44} {us:8.1f} µs/tx  {1e6 / us:9.0f} tx/s")
    return us


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    print(f"{args.count} transactions of the generator, one core (target: generator >= 50,000 tx/s)\n")
    # Its set-up (20,000 account profiles) is not part of the rate.
    stream = iter(SyntheticStream(seed=3, accounts=20_000, rate=5, start=start, fraud_share=0.02))
    generated = [next(stream)]
    timed("generate (streams.generator)", lambda: generated.extend(islice(stream, args.count - 1)), args.count - 1)
    raw = [json.dumps(r).encode() for r in generated]
    txs = [Transaction.model_validate_json(r) for r in raw]
    config = load_scoring_config(DEFAULT_CONFIG_DIR)
    no_models = config.model_copy(update={"models": config.models.model_copy(update={
        "anomaly": config.models.anomaly.model_copy(update={"enabled": False}),
        "supervised": config.models.supervised.model_copy(update={"enabled": False})})})
    print(f"\nthe scoring core, {len(config.indicators)} indicators:")
    validate = timed("parse + validate (streams.contract)", lambda: [parse_transaction(r) for r in raw], len(raw))

    store = Dicts()

    def run(cfg):  # every stage in one process, entity stages included
        pipeline = Pipeline(Scorer(cfg))
        store.states.clear()
        return lambda: [pipeline.score(tx, store) for tx in txs]

    indicators_only = timed("indicators only (models off)", run(no_models), len(txs))
    full = timed("indicators + anomaly ensemble + supervised", run(config), len(txs))
    print(f"\nmodels cost {full - indicators_only:.1f} µs/tx; validation is {validate / (full + validate):.0%} "
          f"of validate+score; target: core >= 20,000 tx/s (<= 50 µs/tx)\n")
    print("state per entity (JSON bytes, as the changelog stores it)   mean    p99     max   entities")
    for entity, by_key in store.states.items():
        sizes = sorted(len(orjson.dumps(state)) for state in by_key.values())
        decisions = sorted(len(orjson.dumps(state.get("recent", {}))) for state in by_key.values())
        print(f"  {entity:<57}{statistics.fmean(sizes):6.0f} {sizes[len(sizes) * 99 // 100]:6d} {sizes[-1]:7d} "
              f"{len(sizes):8d}")
        if entity == "account":
            print(f"  {'  of which remembered decisions (dedup_memory)':<57}{statistics.fmean(decisions):6.0f} "
                  f"{decisions[len(decisions) * 99 // 100]:6d} {decisions[-1]:7d}")


if __name__ == "__main__":
    main()
