"""Card testing: fraudsters probing stolen cards with small payments, at one shop or many, many
declined, and the probe that worked."""

from __future__ import annotations

from operator import itemgetter

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, Signal, register
from riskcockpit.indicators.support import Signals, add_event, in_window, too_few

_SECOND = itemgetter(1)


class SmallAmountBurstParams(Params):
    window: DurationMs = Field(600_000, description="sliding window")
    max_amount: float = Field(10.0, gt=0, description="what counts as a small amount")
    count: int = Field(5, ge=2, description="hit at this many small payments in the window")
    cap: int = Field(100, ge=1, description="events kept per entity")


@register
class SmallAmountBurst(Indicator):
    """A burst of small payments, value = how many distinct merchants they went to.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = SmallAmountBurst(count=3), {}
    >>> [ind.evaluate(state, tx_at(m, 1.5, merchant_id=f"M{m}")).hit for m in range(4)]
    [False, False, True, True]
    >>> ind.evaluate(state, tx_at(5, 900.0)).reason
    'not a small amount'
    """

    name = "small_amount_burst"
    family = "card_testing"
    typology = "card testing at many merchants"
    Params = SmallAmountBurstParams
    state_doc = "`w`: [time, merchant] of the window's small payments in time order (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._not_small = self.signal(0.0, False, "not a small amount")

    def score_one(self, state, tx):
        p = self.p
        if tx.amount > p.max_amount:
            return self._not_small
        window = in_window(state, tx.ts_ms, p.window)
        merchants = set(map(_SECOND, window))
        merchants.add(tx.merchant_id)
        merchants.discard(None)  # payments without a merchant are counted, not as a merchant
        count = len(window) + 1
        reason = f"{count} payments <= {p.max_amount:g} at {len(merchants)} merchants within {p.window // 60_000} min"
        return self.signal(float(count), count >= p.count, reason)

    def learn_one(self, state, tx):
        p = self.p
        if tx.amount <= p.max_amount:
            add_event(state, [tx.ts_ms, tx.merchant_id], p.window, p.cap)


class DeclineRatioParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    min_tx: int = Field(5, ge=1, description="transactions in the window before judging")
    ratio: float = Field(0.4, gt=0, le=1, description="hit at or above this share declined")
    cap: int = Field(100, ge=1, description="events kept per entity")


@register
class DeclineRatio(Indicator):
    """Share of declined transactions in the window, this one included.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = DeclineRatio(min_tx=4, ratio=0.5), {}
    >>> [ind.evaluate(state, tx_at(m, status=s)).hit for m, s in enumerate(
    ...     ["approved", "declined", "declined", "declined"])]
    [False, False, False, True]
    """

    name = "decline_ratio"
    family = "card_testing"
    typology = "card testing, brute-forcing card details"
    requires = ("status",)
    Params = DeclineRatioParams
    state_doc = "`w`: [time, 1 if declined] of the window's transactions in time order (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._too_few = too_few(self, self.p.min_tx)

    def score_one(self, state, tx):
        p = self.p
        window = in_window(state, tx.ts_ms, p.window)
        n = len(window) + 1
        if n < p.min_tx:
            return self._too_few[n]
        declined = sum(map(_SECOND, window)) + (tx.status == "declined")
        ratio = declined / n
        return self.signal(round(ratio, 3), ratio >= p.ratio,
                           f"{declined} of {n} declined within {p.window // 60_000} min")

    def learn_one(self, state, tx):
        add_event(state, [tx.ts_ms, int(tx.status == "declined")], self.p.window, self.p.cap)


_SECOND = itemgetter(1)


class DistinctMerchantsSmallParams(Params):
    window: DurationMs = Field(600_000, description="sliding window")
    max_amount: float = Field(10.0, gt=0, description="what counts as a small amount")
    merchants: int = Field(4, ge=2, description="hit at this many distinct merchants among small payments in the window")
    cap: int = Field(50, ge=1, description="small payments kept per entity")


@register
class DistinctMerchantsSmall(Indicator):
    """Distinct merchants among the window's small payments, this one included.

    small_amount_burst counts payments; this counts shops. Ten coffees at one café or a
    metered parking app are one merchant; one euro at five unrelated web shops within
    minutes is a stolen card being checked where each shop's fraud screen sees one try.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = DistinctMerchantsSmall(merchants=3), {}
    >>> [ind.evaluate(state, tx_at(m, 1.0, merchant_id=x)).value for m, x in enumerate("aabc")]
    [1.0, 1.0, 2.0, 3.0]
    >>> ind.evaluate(state, tx_at(5, 500.0, merchant_id="d")).reason
    'not a small amount'
    """

    name = "distinct_merchants_small"
    family = "card_testing"
    typology = "card testing across many merchants"
    requires = ("merchant_id",)
    Params = DistinctMerchantsSmallParams
    state_doc = "`w`: [time, merchant] of the window's small payments (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._not_small = self.signal(0.0, False, "not a small amount")
        self._by_distinct = Signals(self._signal)  # at most cap + 1

    def _signal(self, distinct: int) -> Signal:
        hit = distinct >= self.p.merchants
        return self.signal(float(distinct), hit, NO_HIT if not hit else
                      f"payments <= {self.p.max_amount:g} at {distinct} merchants within {self.p.window // 60_000} min")

    def score_one(self, state, tx):
        p = self.p
        if tx.amount > p.max_amount:
            return self._not_small
        merchants = set(map(_SECOND, in_window(state, tx.ts_ms, p.window)))
        merchants.add(tx.merchant_id)
        return self._by_distinct[len(merchants)]

    def learn_one(self, state, tx):
        if tx.amount <= self.p.max_amount:
            add_event(state, [tx.ts_ms, tx.merchant_id], self.p.window, self.p.cap)


class DeclinedThenApprovedParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    declines: int = Field(2, ge=1, description="hit on an approval right after at least this many declines in a row")
    cap: int = Field(20, ge=2, description="transactions kept per entity")


@register
class DeclinedThenApproved(Indicator):
    """An approval right after a run of declines within the window: a probe that succeeded.

    Value: the declines in a row just before this approval. The approval is the moment that
    matters: the card details now work and will be used or sold, so it should be stopped
    rather than the declines that already failed.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = DeclinedThenApproved(declines=2), {}
    >>> [ind.evaluate(state, tx_at(m, status=s)).hit for m, s in enumerate(
    ...     ["approved", "declined", "declined", "approved", "approved"])]
    [False, False, False, True, False]
    """

    name = "declined_then_approved"
    family = "card_testing"
    typology = "card testing, brute-forcing card details, CVV/expiry guessing"
    requires = ("status",)
    Params = DeclinedThenApprovedParams
    state_doc = "`w`: [time, 1 if declined] of the window's transactions (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._declined = self.signal(0.0, False, "declined")
        self._by_run = Signals(self._signal)  # at most cap + 1

    def _signal(self, run: int) -> Signal:
        hit = run >= self.p.declines
        return self.signal(float(run), hit, NO_HIT if not hit else
                      f"approved after {run} declines in a row within {self.p.window // 60_000} min")

    def score_one(self, state, tx):
        if tx.status != "approved":
            return self._declined
        p, run = self.p, 0
        for e in reversed(in_window(state, tx.ts_ms, p.window)):
            if not e[1]:
                break
            run += 1
        return self._by_run[run]

    def learn_one(self, state, tx):
        add_event(state, [tx.ts_ms, int(tx.status == "declined")],
                  self.p.window, self.p.cap)
