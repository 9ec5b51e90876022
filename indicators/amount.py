"""Amount: how a transaction's size compares with the entity's history and with thresholds."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from indicators.base import DurationMs, Indicator, Params, prune_window, register


class AmountZScoreParams(Params):
    threshold: float = Field(3.0, gt=0, description="hit at or above this many standard deviations")
    min_history: int = Field(5, ge=2, description="transactions needed before judging")
    min_std: float = Field(0.25, gt=0, description="floor on the log-amount deviation, so a steady payer's small change is not an outlier")


@register
class AmountZScore(Indicator):
    """Z-score of log(amount) against the entity's own history (Welford running moments).

    Log scale because amounts are roughly log-normal: 10x a habit is as odd for a small
    spender as for a large one.

    >>> from indicators.base import tx_at
    >>> ind, state = AmountZScore(min_history=3), {}
    >>> [ind.evaluate(state, tx_at(m, a)).hit for m, a in enumerate([100, 110, 90, 105])]
    [False, False, False, False]
    >>> sig = ind.evaluate(state, tx_at(9, 5000))
    >>> sig.hit, sig.value > 10
    (True, True)
    """

    name = "amount_zscore"
    family = "amount"
    typology = "account takeover, unusual spend"
    Params = AmountZScoreParams

    def score_one(self, state, tx):
        n = state.get("n", 0)
        if n < self.params.min_history:
            return self.signal(None, False, f"history of {n} < {self.params.min_history}")
        std = max(math.sqrt(state["m2"] / (n - 1)), self.params.min_std)
        z = (math.log(tx.amount) - state["mean"]) / std
        return self.signal(round(z, 3), z >= self.params.threshold,
                           f"amount {tx.amount:,.2f} is {z:.1f} sd above the account's usual")

    def learn_one(self, state, tx):
        x = math.log(tx.amount)
        n = state.get("n", 0) + 1
        mean = state.get("mean", 0.0)
        delta = x - mean
        mean += delta / n
        state.update(n=n, mean=mean, m2=state.get("m2", 0.0) + delta * (x - mean))


class LargeAmountParams(Params):
    threshold: float = Field(50_000.0, gt=0, description="hit at or above this amount")


@register
class LargeAmount(Indicator):
    """Amount at or above a fixed limit (the bank's large-value reporting line).

    >>> from indicators.base import tx_at
    >>> LargeAmount(threshold=1000).evaluate({}, tx_at(0, 1500)).hit
    True
    """

    name = "large_amount"
    family = "amount"
    typology = "large-value transactions subject to review"
    Params = LargeAmountParams

    def score_one(self, state, tx):
        return self.signal(tx.amount, tx.amount >= self.params.threshold,
                           f"amount {tx.amount:,.2f} >= {self.params.threshold:,.0f}")

    def learn_one(self, state, tx):
        pass  # stateless


class StructuringParams(Params):
    threshold: float = Field(50_000.0, gt=0, description="the reporting threshold being avoided")
    band: float = Field(0.1, gt=0, lt=1, description="'just under' means within this share below the threshold")
    window: DurationMs = Field(86_400_000, description="sliding window")
    count: int = Field(3, ge=2, description="hit at this many just-under amounts in the window")
    cap: int = Field(50, ge=1, description="events kept per entity")

    @model_validator(mode="after")
    def _cap_covers_count(self):
        if self.cap < self.count:
            raise ValueError(f"cap ({self.cap}) must be at least count ({self.count})")
        return self


@register
class Structuring(Indicator):
    """Several amounts just under a reporting threshold within a window (smurfing).

    >>> from indicators.base import tx_at
    >>> ind, state = Structuring(threshold=10_000, count=3), {}
    >>> [ind.evaluate(state, tx_at(m * 60, a)).hit for m, a in enumerate([9500, 9800, 2000, 9900])]
    [False, False, False, True]
    """

    name = "structuring"
    family = "amount"
    typology = "structuring / smurfing under the reporting threshold"
    Params = StructuringParams

    def _near(self, amount: float) -> bool:
        return self.params.threshold * (1 - self.params.band) <= amount < self.params.threshold

    def score_one(self, state, tx):
        if not self._near(tx.amount):
            return self.signal(0.0, False, "amount not just under the threshold")
        horizon = tx.ts_ms - self.params.window
        count = 1 + sum(1 for e in state.get("e", ()) if horizon < e[0] <= tx.ts_ms)
        return self.signal(float(count), count >= self.params.count,
                           f"{count} amounts just under {self.params.threshold:,.0f} within "
                           f"{self.params.window // 3_600_000}h")

    def learn_one(self, state, tx):
        if self._near(tx.amount):
            events = state.setdefault("e", [])
            events.append([tx.ts_ms])
            prune_window(events, tx.ts_ms, self.params.window, self.params.cap)
