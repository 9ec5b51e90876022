"""Amount: how a transaction's size compares with the entity's history, its recent level and
record, and with thresholds; amounts that look made up."""

from __future__ import annotations

from math import exp, log, sqrt

from pydantic import Field, model_validator

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, register
from riskcockpit.indicators.support import Signals, add_event, in_window, short_history


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
        self._short = short_history(self, self.p.min_history)

    def score_one(self, state, tx):
        p, n = self.p, state.get("n", 0)
        if n < p.min_history:
            return self._short[n]
        std = max(sqrt(state["m2"] / (n - 1)), p.min_std)
        z = (log(tx.amount) - state["mean"]) / std
        return self.signal(round(z, 3), z >= p.threshold,
                           f"amount {tx.amount:,.2f} is {z:.1f} sd above the account's usual")

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
        return self.signal(amount, hit, f"amount {amount:,.2f}{self._at_least}" if hit else NO_HIT)

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
    state_doc = "`w`: [time] of the window's amounts just under the threshold, in time order (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        p = self.p
        self._low = p.threshold * (1 - p.band)  # "just under": in [threshold * (1 - band), threshold)
        self._not_near = self.signal(0.0, False, "amount not just under the threshold")
        under = f" amounts just under {p.threshold:,.0f} within {p.window // 3_600_000}h"
        self._by_count = Signals(lambda count: self.signal(float(count), count >= p.count, f"{count}{under}"))

    def score_one(self, state, tx):
        p = self.p
        if not self._low <= tx.amount < p.threshold:
            return self._not_near
        return self._by_count[1 + len(in_window(state, tx.ts_ms, p.window))]  # <= cap + 1

    def learn_one(self, state, tx):
        p = self.p
        if self._low <= tx.amount < p.threshold:
            add_event(state, [tx.ts_ms], p.window, p.cap)


class AmountEwmaRatioParams(Params):
    ratio: float = Field(10.0, gt=1, description="hit at or above this multiple of the entity's recent average amount")
    alpha: float = Field(0.1, gt=0, le=1, description="weight of the newest amount in the average (0.1: about the last 10)")
    min_history: int = Field(5, ge=1, description="transactions needed before judging")


@register
class AmountEwmaRatio(Indicator):
    """Amount as a multiple of an exponentially weighted average of the entity's amounts.

    Complements amount_zscore: the average follows the entity's recent level, so a customer
    who moved up to larger payments is judged on today's habit, and a plain ratio reads well
    in a case file ("12x the usual").

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = AmountEwmaRatio(min_history=2, alpha=0.5), {}
    >>> [ind.evaluate(state, tx_at(m, a)).value for m, a in enumerate([100, 300, 400, 4000])]
    [None, None, 2.0, 13.333]
    """

    name = "amount_ewma_ratio"
    family = "amount"
    typology = "account takeover, unusual spend, mule credits on a small account"
    Params = AmountEwmaRatioParams
    state_doc = "`avg`: the running average amount; `n`: transactions seen."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)

    def score_one(self, state, tx):
        n = state.get("n", 0)
        if n < self.p.min_history:
            return self._short[n]
        avg = state["avg"]
        ratio = tx.amount / avg
        hit = ratio >= self.p.ratio
        return self.signal(round(ratio, 3), hit,
                           f"amount {tx.amount:,.2f} is {ratio:.1f}x the recent average {avg:,.2f}" if hit else NO_HIT)

    def learn_one(self, state, tx):
        amount, avg = tx.amount, state.get("avg")
        state["avg"] = amount if avg is None else avg + self.p.alpha * (amount - avg)
        state["n"] = state.get("n", 0) + 1


class MaxMultipleParams(Params):
    multiple: float = Field(3.0, gt=1,
        description="hit at or above this multiple of the largest amount the entity ever moved")
    min_history: int = Field(5, ge=1, description="transactions needed before judging")


@register
class MaxMultiple(Indicator):
    """Amount as a multiple of the entity's largest amount so far: a new record, by how much.

    Robust to spread where z-scores are not: an account that sometimes pays 5,000 is not
    alarmed by 4,000, however small its usual payment; 3x its all-time record is news.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = MaxMultiple(min_history=3), {}
    >>> [ind.evaluate(state, tx_at(m, a)).value for m, a in enumerate([50, 500, 80, 400, 1600])]
    [None, None, None, 0.8, 3.2]
    """

    name = "max_multiple"
    family = "amount"
    typology = "account takeover, draining, first abuse of a mule account"
    Params = MaxMultipleParams
    state_doc = "`max`: the largest amount seen; `n`: transactions seen."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)

    def score_one(self, state, tx):
        n = state.get("n", 0)
        if n < self.p.min_history:
            return self._short[n]
        top = state["max"]
        multiple = tx.amount / top
        hit = multiple >= self.p.multiple
        return self.signal(round(multiple, 3), hit,
                           f"amount {tx.amount:,.2f} is {multiple:.1f}x the largest so far ({top:,.2f})" if hit
                           else NO_HIT)

    def learn_one(self, state, tx):
        amount, top = tx.amount, state.get("max", 0.0)
        state["max"] = amount if amount > top else top
        state["n"] = state.get("n", 0) + 1


class RoundAmountParams(Params):
    granularity: float = Field(1_000.0, gt=0, description="round means a whole multiple of this (own currency)")
    min_amount: float = Field(5_000.0, gt=0,
        description="only amounts at or above this count: small round amounts (ATM notes, top-ups) are everyday")


@register
class RoundAmount(Indicator):
    """A large amount that is a whole multiple of the granularity (5,000, 10,000, 250,000).

    Genuine purchases carry prices and taxes; round figures are typical of transfers between
    criminals, loan-back schemes, cash placed in the system and amounts chosen by a fraudster
    rather than by an invoice. Value: the amount in units of the granularity when round.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind = RoundAmount(granularity=1000, min_amount=5000)
    >>> [ind.evaluate({}, tx_at(0, a)).hit for a in (10_000, 10_000.5, 3_000, 5_000)]
    [True, False, False, True]
    """

    name = "round_amount"
    family = "amount"
    typology = "laundering with round transfers, cash placement, scams with made-up amounts"
    Params = RoundAmountParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._not_round = self.signal(0.0, False, "not a large round amount")

    def score_one(self, state, tx):
        amount, p = tx.amount, self.p
        if amount < p.min_amount:  # most amounts: no need to look for roundness
            return self._not_round
        units = amount / p.granularity
        # Within a cent of a multiple counts: amounts arrive as floats.
        if abs(amount - round(units) * p.granularity) >= 0.005:
            return self._not_round
        return self.signal(float(round(units)), True,
                           f"round amount {amount:,.0f} ({round(units)} x {p.granularity:,.0f})")

    def learn_one(self, state, tx):
        pass  # stateless


class CategoryAmountRatioParams(Params):
    ratio: float = Field(5.0, gt=1, description="hit at or above this multiple of the account's usual amount at this kind of merchant")
    min_history: int = Field(3, ge=1, description="transactions at this kind of merchant needed before judging")
    max_categories: int = Field(32, ge=1, description="merchant categories remembered per account (the least recent is forgotten)")


@register
class CategoryAmountRatio(Indicator):
    """Amount as a multiple of what the account usually spends at this kind of merchant (MCC).

    A 300 grocery bill is news for a customer whose groceries cost 40, and nothing for one who
    books flights at 900: each category has its own usual level (a geometric mean, so one big
    bill does not move it far). The value is the multiple.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = CategoryAmountRatio(min_history=2), {}
    >>> [ind.evaluate(state, tx_at(m, a, mcc=c)).value for m, (a, c) in
    ...  enumerate([(40, "5411"), (40, "5411"), (900, "4511"), (400, "5411")])]
    [None, None, None, 10.0]
    """

    name = "category_amount_ratio"
    family = "amount"
    typology = "stolen card spent where the customer spends, at amounts the customer never spends there"
    requires = ("mcc",)
    Params = CategoryAmountRatioParams
    state_doc = "`c`: per MCC [transactions, mean log amount] (at most `max_categories`, least recent forgotten)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)

    def score_one(self, state, tx):
        seen = state.get("c", {}).get(tx.mcc)
        if seen is None or seen[0] < self.p.min_history:
            return self._short[0 if seen is None else seen[0]]
        ratio = tx.amount / exp(seen[1])
        hit = ratio >= self.p.ratio
        return self.signal(round(ratio, 3), hit,
                           f"amount {tx.amount:,.2f} is {ratio:.1f}x the account's usual at MCC {tx.mcc}"
                           if hit else NO_HIT)

    def learn_one(self, state, tx):
        categories = state.setdefault("c", {})
        seen = categories.pop(tx.mcc, None) or [0, 0.0]  # re-inserted last: dict order is recency
        seen[0] += 1
        seen[1] += (log(tx.amount) - seen[1]) / seen[0]
        categories[tx.mcc] = seen
        if len(categories) > self.p.max_categories:
            del categories[next(iter(categories))]
