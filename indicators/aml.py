"""AML flows: money that comes in from many sources and leaves again quickly (mules)."""

from __future__ import annotations

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, prune_window, register


class PassThroughParams(Params):
    window: DurationMs = Field(7_200_000, description="how soon after the credits the debit counts")
    ratio: float = Field(0.8, gt=0, le=1.5, description="hit when outflow reaches this share of the inflow")
    max_ratio: float = Field(1.1, gt=0, description="and stays below this share: far more out than in is the holder's own money")
    min_sources: int = Field(3, ge=1, description="distinct paying counterparties needed (fan-in)")
    cap: int = Field(100, ge=1, description="credits kept per entity")


@register
class PassThrough(Indicator):
    """A debit that passes on most of what arrived from several payers within the window.

    Value: outflow (this debit plus earlier ones in the window) as a share of the inflow.

    >>> from indicators.base import tx_at
    >>> ind, state = PassThrough(min_sources=3), {}
    >>> for m, c in enumerate("abc"):
    ...     _ = ind.evaluate(state, tx_at(m, 1000, direction="credit", counterparty_id=c))
    >>> sig = ind.evaluate(state, tx_at(10, 2900, direction="debit", counterparty_id="z"))
    >>> sig.hit, sig.value
    (True, 0.967)
    """

    name = "pass_through"
    family = "aml"
    typology = "money-mule pass-through, layering"
    requires = ("direction",)
    Params = PassThroughParams

    def _recent(self, state, tx):
        horizon = tx.ts_ms - self.params.window
        return [e for e in state.get("e", ()) if horizon < e[0] <= tx.ts_ms]

    def score_one(self, state, tx):
        if tx.direction != "debit":
            return self.signal(0.0, False, "not a debit")
        recent = self._recent(state, tx)
        inflow = sum(e[1] for e in recent if e[1] > 0)
        if not inflow:
            return self.signal(0.0, False, "no recent inflow")
        outflow = tx.amount - sum(e[1] for e in recent if e[1] < 0)
        sources = len({e[2] for e in recent if e[1] > 0 and e[2]})
        share = outflow / inflow
        hit = self.params.ratio <= share < self.params.max_ratio and sources >= self.params.min_sources
        return self.signal(round(share, 3), hit,
                           f"{share:.0%} of {inflow:,.2f} received from {sources} payers passed on "
                           f"within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        if tx.direction in ("debit", "credit"):
            events = state.setdefault("e", [])
            signed = tx.amount if tx.direction == "credit" else -tx.amount
            events.append([tx.ts_ms, signed, tx.counterparty_id])
            prune_window(events, tx.ts_ms, self.params.window, self.params.cap)
