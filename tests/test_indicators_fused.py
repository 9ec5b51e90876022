"""Indicators that fuse scoring and learning in their own ``evaluate`` (one window walk instead
of two) must say and remember exactly what ``score_one`` then ``learn_one`` would: same signal,
same state, on streams with late events, few accounts (full windows, caps) and missing fields."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from indicators.base import ENTITY_FIELDS, REGISTRY, Indicator
from indicators.scoring import Scorer, load_scoring_config
from riskcockpit.settings import DEFAULT_CONFIG_DIR
from streams.contract import Transaction
from streams.generator import SyntheticStream

OPTIONAL = ("direction", "status", "country", "channel", "lat", "lon", "merchant_id", "counterparty_id", "device_id")


@pytest.fixture(scope="module")
def streams() -> dict[str, list[Transaction]]:
    txs = [Transaction.model_validate(r) for r in SyntheticStream(
        seed=8, accounts=2_000, rate=5, start=datetime(2026, 11, 1, tzinfo=UTC), fraud_share=0.1).take(6_000)]
    rng = random.Random(1)
    few = [tx.model_copy(update={"account_id": f"A{rng.randrange(30)}"}) for tx in txs]
    messy = []
    for tx in few:
        update = {}
        if rng.random() < 0.15:  # up to two hours late
            update["ts"] = tx.ts - timedelta(milliseconds=rng.randrange(7_200_000))
        if rng.random() < 0.05:
            update |= {name: None for name in OPTIONAL if rng.random() < 0.3}
        messy.append(tx.model_copy(update=update) if update else tx)
    return {"generator": txs, "30 accounts": few, "late and incomplete": messy}


FUSED = sorted(name for name, cls in REGISTRY.items() if cls.evaluate is not Indicator.evaluate)


def test_some_indicators_fuse_so_this_test_checks_something():
    assert len(FUSED) >= 5, FUSED


@pytest.mark.parametrize("name", FUSED)
def test_fused_evaluate_equals_score_then_learn(name, streams):
    configured = {ind.name: ind for ind, _ in Scorer(load_scoring_config(DEFAULT_CONFIG_DIR)).indicators}
    for ind in (configured.get(name), REGISTRY[name]()):  # the shipped params and the defaults
        if ind is None:
            continue
        field = ENTITY_FIELDS[ind.entity]
        for label, stream in streams.items():
            fused, plain = defaultdict(dict), defaultdict(dict)
            for tx in stream:
                key = getattr(tx, field)
                a = ind.evaluate(fused[key] if key is not None else {}, tx)
                b = Indicator.evaluate(ind, plain[key] if key is not None else {}, tx)
                assert repr(a) == repr(b), (label, tx.tx_id)
            assert json.dumps(fused) == json.dumps(plain), label
