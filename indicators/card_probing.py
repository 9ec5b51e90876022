"""Card testing, continued: probing many shops with small amounts, and the probe that worked."""

from __future__ import annotations

from operator import itemgetter

from pydantic import Field

from riskcockpit.indicators.base import NO_HIT, DurationMs, Indicator, Params, Signal, register
from riskcockpit.indicators.support import Plain, Signals, add_event, in_window

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
    state_doc = "`e`: [time, merchant] of the window's small payments (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._not_small = Signal(self.name, 0.0, False, "not a small amount")
        self._by_distinct = Signals(self._signal)  # at most cap + 1

    def _signal(self, distinct: int) -> Signal:
        hit = distinct >= self.p.merchants
        return Signal(self.name, float(distinct), hit, NO_HIT if not hit else
                      f"payments <= {self.p.max_amount:g} at {distinct} merchants within {self.p.window // 60_000} min")

    def score_one(self, state, tx):
        p = self.p
        if tx.amount > p.max_amount:
            return self._not_small
        merchants = set(map(_SECOND, in_window(state.get("e", []), tx.ts_ms, p.window)))
        merchants.add(tx.merchant_id)
        return self._by_distinct[len(merchants)]

    def learn_one(self, state, tx):
        if tx.amount <= self.p.max_amount:
            add_event(state.setdefault("e", []), [tx.ts_ms, tx.merchant_id], self.p.window, self.p.cap)


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
    state_doc = "`e`: [time, 1 if declined] of the window's transactions (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._declined = Signal(self.name, 0.0, False, "declined")
        self._by_run = Signals(self._signal)  # at most cap + 1

    def _signal(self, run: int) -> Signal:
        hit = run >= self.p.declines
        return Signal(self.name, float(run), hit, NO_HIT if not hit else
                      f"approved after {run} declines in a row within {self.p.window // 60_000} min")

    def score_one(self, state, tx):
        if tx.status != "approved":
            return self._declined
        p, run = self.p, 0
        for e in reversed(in_window(state.get("e", []), tx.ts_ms, p.window)):
            if not e[1]:
                break
            run += 1
        return self._by_run[run]

    def learn_one(self, state, tx):
        add_event(state.setdefault("e", []), [tx.ts_ms, int(tx.status == "declined")],
                  self.p.window, self.p.cap)
