"""Label-free evidence: a degree counts by its rarity, a common signal counts for little."""

import copy
import random
from itertools import pairwise

from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.scoring import Scorer, ScoringConfig

WARM = {"window": 2000, "learn_every": 1, "warmup": 300}


def scorer(indicators: dict, evidence: dict = WARM) -> Scorer:
    config = {"indicators": {n: {"weight": w, "params": p} for n, (w, p) in indicators.items()},
              "models": {"evidence": evidence, "anomaly": {"enabled": False}, "supervised": {"enabled": False}}}
    return Scorer(ScoringConfig.model_validate(config))


def warmed(s: Scorer, n: int = 1500, seed: int = 1, **fields) -> dict:
    rng, states = random.Random(seed), {}
    for m in range(n):
        account = f"A{m % 200}"
        tx = tx_at(m, round(rng.lognormvariate(4, 0.7), 2), account_id=account, tx_id=f"w{m}",
                   **{k: v(m) for k, v in fields.items()})
        s.score(tx, states.setdefault(account, {}))
    return states


def probe(s: Scorer, states: dict, amount: float, **fields) -> dict:
    """The record of one more transaction, scored on copies: each probe sees the same past."""
    s, states = copy.deepcopy(s), copy.deepcopy(states)
    return s.score(tx_at(2000, amount, account_id="A1", tx_id=f"p{amount}", **fields), states["A1"])


def test_the_score_rises_strictly_with_the_rarity_of_a_degree():
    s = scorer({"large_amount": (40, {"threshold": 1_000_000})})  # its threshold never crossed: only the degree
    states = warmed(s)
    scores = [probe(s, states, amount)["score"] for amount in (150, 250, 400, 700, 5000)]
    assert probe(s, states, 40)["score"] == 0  # an ordinary amount adds nothing
    assert all(a < b for a, b in pairwise(scores)), scores
    assert scores[-1] < 22.12  # one unit of evidence at most: 100 · (1 − e^(−1/4)), score_scale 4
    record = probe(s, states, 5000)
    assert record["reasons"][0]["indicator"] == "large_amount" and record["reasons"][0]["evidence"] > 7


def test_an_indicator_hitting_on_most_transactions_moves_the_score_little():
    fields = {"merchant_id": lambda m: f"M{m}"}  # a new merchant every time: new_merchant hits on nearly all
    both = scorer({"new_merchant": (30, {"min_history": 1}), "large_amount": (40, {"threshold": 1_000_000})})
    alone = scorer({"large_amount": (40, {"threshold": 1_000_000})})
    states_both, states_alone = warmed(both, **fields), warmed(alone, **fields)
    for amount in (60, 400, 5000):
        with_it = probe(both, states_both, amount, merchant_id="M-new")
        assert "new_merchant" in {sig for sig in with_it["features"] if with_it["features"][sig]}  # it did hit
        assert with_it["score"] == probe(alone, states_alone, amount, merchant_id="M-new")["score"]


def test_before_warm_up_a_hit_counts_at_its_full_weight_and_a_miss_not_at_all():
    s = scorer({"large_amount": (40, {"threshold": 1000})}, {**WARM, "warmup": 10_000})
    states = warmed(s, 50)
    assert probe(s, states, 1500)["score"] == 40
    assert probe(s, states, 900)["score"] == 0


def test_rarity_moves_with_the_partitions_checkpoint():
    from riskcockpit.indicators.models import ModelSet

    s = scorer({"large_amount": (40, {"threshold": 1_000_000})})
    states = warmed(s)
    restored = copy.deepcopy(s)
    restored.models = {p: ModelSet.loads(m.dumps(), s.config.models) for p, m in s.models.items()}
    assert probe(restored, states, 700)["score"] == probe(s, states, 700)["score"] > 0


def test_a_tail_checkpoints_its_values_in_arrival_order_and_reads_an_older_checkpoint():
    import pickle
    from collections import deque

    from riskcockpit.indicators.evidence import Tail

    tail = Tail(3)
    for value in (5.0, 1.0, 4.0, 2.0):
        tail.add(value)
    back = pickle.loads(pickle.dumps(tail))
    assert (list(back.recent), back.sorted, back.size) == ([1.0, 4.0, 2.0], [1.0, 2.0, 4.0], 3)
    back.add(0.5)  # the oldest still leaves first
    assert (list(back.recent), back.sorted) == ([4.0, 2.0, 0.5], [0.5, 2.0, 4.0])
    older = Tail.__new__(Tail)
    older.__setstate__((None, {"size": 3, "recent": deque([3.0, 1.0]), "sorted": [1.0, 3.0]}))
    assert (list(older.recent), older.sorted, older.size) == ([3.0, 1.0], [1.0, 3.0], 3)


# ------------------------------------------------------------------------------------------ incidents


def burst(s: Scorer, states: dict, minutes: list[int], account: str = "A1", amount: float = 700) -> list[dict]:
    """Moderately rare amounts on one account at ``minutes`` after the warm-up, scored on copies."""
    s, states = copy.deepcopy(s), copy.deepcopy(states)
    return [s.score(tx_at(2000 + m, amount, account_id=account, tx_id=f"b{k}"), states.setdefault(account, {}))
            for k, m in enumerate(minutes)]


def test_a_burst_on_one_account_adds_up_and_the_same_spread_out_does_not():
    s = scorer({"large_amount": (40, {"threshold": 1_000_000})})
    states = warmed(s)
    alone = probe(s, states, 700)["score"]
    close = burst(s, states, [0, 10, 20, 30])
    assert alone > 0 and all(a["score"] < b["score"] for a, b in pairwise(close)), [r["score"] for r in close]
    carried = {r["indicator"]: r for r in close[-1]["reasons"]}["account_incident"]
    assert carried["value"] > 0 and carried["contribution"] > 0
    apart = burst(s, states, [0, 2 * 24 * 60, 4 * 24 * 60, 6 * 24 * 60])  # two days apart: nothing carries
    assert all(r["indicator"] != "account_incident" for record in apart for r in record["reasons"])
    assert max(r["score"] for r in apart) < close[-1]["score"]
    off = scorer({"large_amount": (40, {"threshold": 1_000_000})}, {**WARM, "incident_half_life": "0"})
    unlinked = burst(off, warmed(off), [0, 10, 20, 30])  # each less rare than the last: the reference learns them
    assert unlinked[0]["score"] == alone and all(a["score"] >= b["score"] for a, b in pairwise(unlinked))


def test_an_account_that_pays_often_does_not_pile_up_the_evidence_of_its_own_pace():
    s = scorer({"large_amount": (40, {"threshold": 1_000_000})})
    states = warmed(s)
    # every two minutes for two hours: its usual pace, far shorter than the hour evidence halves in
    steady = burst(s, states, list(range(0, 120, 2)), account="A-busy")
    alone = probe(s, states, 700)["score"]
    assert steady[-1]["score"] < 2 * alone, (alone, [r["score"] for r in steady[-5:]])
    # the same count in the pace of an ordinary card (hours apart), then four in half an hour: they add up
    ordinary = burst(s, states, [*range(0, 60 * 24 * 5, 60 * 24 * 5 // 56), 7200, 7210, 7220, 7230], account="A-card")
    assert ordinary[-1]["score"] > steady[-1]["score"]
