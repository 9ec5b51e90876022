"""Card testing, continued: probing many shops with small amounts, and the probe that worked."""

from __future__ import annotations

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, register
from indicators.support import add_event, in_window


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

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        if tx.amount > self.params.max_amount:
            return self.signal(0.0, False, "not a small amount")
        recent = in_window(state.get("e", []), tx.ts_ms, self.params.window)
        distinct = len({e[1] for e in recent} | {tx.merchant_id})
        return self.signal(float(distinct), distinct >= self.params.merchants,
                       lambda: f"payments <= {self.params.max_amount:g} at {distinct} merchants "
                               f"within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        if tx.amount <= self.params.max_amount:
            add_event(state.setdefault("e", []), [tx.ts_ms, tx.merchant_id], self.params.window, self.params.cap)


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

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        if tx.status != "approved":
            return self.signal(0.0, False, "declined")
        run = 0
        for e in reversed(in_window(state.get("e", []), tx.ts_ms, self.params.window)):
            if not e[1]:
                break
            run += 1
        return self.signal(float(run), run >= self.params.declines,
                       lambda: f"approved after {run} declines in a row within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        add_event(state.setdefault("e", []), [tx.ts_ms, int(tx.status == "declined")],
                  self.params.window, self.params.cap)
