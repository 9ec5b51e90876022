"""AML flows: money that comes in from many sources and leaves again quickly (mules)."""

from __future__ import annotations

from pydantic import Field

from riskcockpit.indicators.base import DurationMs, Indicator, Params, Signal, register
from riskcockpit.indicators.support import IN_ORDER_DOC, Plain, new_signal, push_event, recent


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

    >>> from riskcockpit.indicators.base import tx_at
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
    state_doc = ("`e`: [time, amount signed + for a credit and - for a debit, counterparty] of the window's "
                 "transactions in arrival order (at most `cap`); " + IN_ORDER_DOC + ".")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._not_debit = Signal(self.name, 0.0, False, "not a debit")
        self._no_inflow = Signal(self.name, 0.0, False, "no recent inflow")

    def score_one(self, state, tx):
        if tx.direction != "debit":
            return self._not_debit
        p, events = self.p, state.get("e")
        inflow, paid_out, sources = 0, 0, set()
        # One pass, adding in list order as sum() would: the same floats as three separate sums.
        for _, signed, counterparty in recent(state, events, tx.ts_ms, p.window) if events else ():
            if signed > 0:
                inflow += signed
                if counterparty:
                    sources.add(counterparty)
            elif signed < 0:
                paid_out += signed
        if not inflow:
            return self._no_inflow
        outflow = tx.amount - paid_out
        share = outflow / inflow
        hit = p.ratio <= share < p.max_ratio and len(sources) >= p.min_sources
        reason = (f"{share:.0%} of {inflow:,.2f} received from {len(sources)} payers passed on "
                  f"within {p.window // 60_000} min")
        return new_signal((self.name, round(share, 3), hit, reason))

    def learn_one(self, state, tx):
        if tx.direction in ("debit", "credit"):
            signed = tx.amount if tx.direction == "credit" else -tx.amount
            push_event(state, state.setdefault("e", []), [tx.ts_ms, signed, tx.counterparty_id], self.p.window,
                       self.p.cap)
