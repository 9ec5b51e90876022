"""Amount: how a transaction's size compares with the entity's history and with thresholds."""

from __future__ import annotations

from math import log, sqrt

from pydantic import Field, model_validator

from riskcockpit.indicators.base import NO_HIT, DurationMs, Indicator, Params, Signal, register
from riskcockpit.indicators.support import IN_ORDER_DOC, Plain, Signals, new_signal, push_event, recent, short_history


class AmountZScoreParams(Params):
    threshold: float = Field(3.0, gt=0, description="hit at or above this many standard deviations")
    min_history: int = Field(5, ge=2, description="transactions needed before judging")
    min_std: float = Field(0.25, gt=0, description="floor on the log-amount deviation, so a steady payer's small change is not an outlier")


@register
class AmountZScore(Indicator):
    """Z-score of log(amount) against the entity's own history (Welford running moments).

    Log scale because amounts are roughly log-normal: 10x a habit is as odd for a small
    spender as for a large one.

    >>> from riskcockpit.indicators.base import tx_at
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

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._short = short_history(self.name, self.p.min_history)

    def score_one(self, state, tx):
        p, n = self.p, state.get("n", 0)
        if n < p.min_history:
            return self._short[n]
        std = max(sqrt(state["m2"] / (n - 1)), p.min_std)
        z = (log(tx.amount) - state["mean"]) / std
        return new_signal((self.name, round(z, 3), z >= p.threshold,
                           f"amount {tx.amount:,.2f} is {z:.1f} sd above the account's usual"))

    def learn_one(self, state, tx):
        x = log(tx.amount)
        n = state.get("n", 0) + 1
        mean = state.get("mean", 0.0)
        delta = x - mean
        mean += delta / n
        state["n"], state["mean"], state["m2"] = n, mean, state.get("m2", 0.0) + delta * (x - mean)


class LargeAmountParams(Params):
    threshold: float = Field(50_000.0, gt=0, description="hit at or above this amount")


@register
class LargeAmount(Indicator):
    """Amount at or above a fixed limit (the bank's large-value reporting line).

    >>> from riskcockpit.indicators.base import tx_at
    >>> LargeAmount(threshold=1000).evaluate({}, tx_at(0, 1500)).hit
    True
    """

    name = "large_amount"
    family = "amount"
    typology = "large-value transactions subject to review"
    Params = LargeAmountParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._threshold = self.params.threshold
        self._at_least = f" >= {self._threshold:,.0f}"

    def score_one(self, state, tx):
        amount = tx.amount
        hit = amount >= self._threshold
        return new_signal((self.name, amount, hit, f"amount {amount:,.2f}{self._at_least}" if hit else NO_HIT))

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

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = Structuring(threshold=10_000, count=3), {}
    >>> [ind.evaluate(state, tx_at(m * 60, a)).hit for m, a in enumerate([9500, 9800, 2000, 9900])]
    [False, False, False, True]
    """

    name = "structuring"
    family = "amount"
    typology = "structuring / smurfing under the reporting threshold"
    Params = StructuringParams
    state_doc = ("`e`: [time] of the window's amounts just under the threshold, in arrival order (at most `cap`); "
                 + IN_ORDER_DOC + ".")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = p = Plain(self.params)
        self._low = p.threshold * (1 - p.band)  # "just under": in [threshold * (1 - band), threshold)
        self._not_near = Signal(self.name, 0.0, False, "amount not just under the threshold")
        under = f" amounts just under {p.threshold:,.0f} within {p.window // 3_600_000}h"
        self._by_count = Signals(lambda count: Signal(self.name, float(count), count >= p.count, f"{count}{under}"))

    def score_one(self, state, tx):
        p = self.p
        if not self._low <= tx.amount < p.threshold:
            return self._not_near
        events = state.get("e")
        return self._by_count[1 + len(recent(state, events, tx.ts_ms, p.window)) if events else 1]  # <= cap + 1

    def learn_one(self, state, tx):
        p = self.p
        if self._low <= tx.amount < p.threshold:
            push_event(state, state.setdefault("e", []), [tx.ts_ms], p.window, p.cap)
