"""Card testing: fraudsters probing stolen cards with small payments, many declined."""

from __future__ import annotations

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, prune_window, register


class SmallAmountBurstParams(Params):
    window: DurationMs = Field(600_000, description="sliding window")
    max_amount: float = Field(10.0, gt=0, description="what counts as a small amount")
    count: int = Field(5, ge=2, description="hit at this many small payments in the window")
    cap: int = Field(100, ge=1, description="events kept per entity")


@register
class SmallAmountBurst(Indicator):
    """A burst of small payments, value = how many distinct merchants they went to.

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        if tx.amount > self.params.max_amount:
            return self.signal(0.0, False, "not a small amount")
        horizon = tx.ts_ms - self.params.window
        recent = [e for e in state.get("e", ()) if horizon < e[0] <= tx.ts_ms]
        merchants = {e[1] for e in recent if e[1]} | ({tx.merchant_id} if tx.merchant_id else set())
        count = len(recent) + 1
        return self.signal(float(count), count >= self.params.count,
                           f"{count} payments <= {self.params.max_amount:g} at {len(merchants)} merchants "
                           f"within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        if tx.amount <= self.params.max_amount:
            events = state.setdefault("e", [])
            events.append([tx.ts_ms, tx.merchant_id])
            prune_window(events, tx.ts_ms, self.params.window, self.params.cap)


class DeclineRatioParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    min_tx: int = Field(5, ge=1, description="transactions in the window before judging")
    ratio: float = Field(0.4, gt=0, le=1, description="hit at or above this share declined")
    cap: int = Field(100, ge=1, description="events kept per entity")


@register
class DeclineRatio(Indicator):
    """Share of declined transactions in the window, this one included.

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        horizon = tx.ts_ms - self.params.window
        flags = [e[1] for e in state.get("e", ()) if horizon < e[0] <= tx.ts_ms]
        flags.append(int(tx.status == "declined"))
        if len(flags) < self.params.min_tx:
            return self.signal(None, False, f"{len(flags)} transactions < {self.params.min_tx}")
        ratio = sum(flags) / len(flags)
        return self.signal(round(ratio, 3), ratio >= self.params.ratio,
                           f"{sum(flags)} of {len(flags)} declined within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        events = state.setdefault("e", [])
        events.append([tx.ts_ms, int(tx.status == "declined")])
        prune_window(events, tx.ts_ms, self.params.window, self.params.cap)
