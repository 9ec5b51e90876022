"""Velocity: how much an entity does within a sliding window of event time."""

from __future__ import annotations

from operator import itemgetter

from pydantic import Field

from riskcockpit.indicators.base import NO_HIT, DurationMs, Indicator, Params, Signal, register
from riskcockpit.indicators.support import IN_ORDER_DOC, Plain, Signals, new_signal, push_event, recent

_AMOUNT = itemgetter(1)


class CountVelocityParams(Params):
    window: DurationMs = Field(600_000, description="sliding window")
    limit: int = Field(5, ge=1, description="hit above this many transactions in the window")
    baseline_factor: float = Field(3.0, ge=0, description="and above this multiple of the entity's usual count in such a window (0: limit only)")
    baseline_min_history: int = Field(10, ge=2, description="transactions before the entity's pace is trusted")
    cap: int = Field(200, ge=1, description="events kept per entity (bounds state)")


@register
class CountVelocity(Indicator):
    """Transactions in the window, this one included, against a limit and the entity's own pace.

    The usual pace is an exponentially weighted mean gap between the entity's transactions, so
    a business account paying every minute is not flagged for what is normal to it, while a
    quiet account's sudden burst is.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = CountVelocity(window="10m", limit=3), {}
    >>> [ind.evaluate(state, tx_at(m)).value for m in (0, 1, 2, 3, 30)]
    [1.0, 2.0, 3.0, 4.0, 1.0]
    >>> ind.evaluate(state, tx_at(31)).hit, ind.evaluate(state, tx_at(32)).reason
    (False, '3 transactions within 600s')
    """

    name = "count_velocity"
    family = "velocity"
    typology = "account takeover bursts, card testing, automated abuse"
    Params = CountVelocityParams
    state_doc = ("`e`: [time] of the window's transactions in arrival order (at most `cap`); " + IN_ORDER_DOC + "; "
                 "`last`, `n`, `gap`: the latest time, transactions seen and the running mean gap (ms).")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._within = f" transactions within {self.p.window // 1000}s"
        # Until the pace is known, the signal depends on the count alone (at most cap + 1 of them).
        self._by_count = Signals(lambda count: Signal(self.name, float(count), count > self.p.limit,
                                                      f"{count}{self._within}"))

    def usual(self, state) -> float | None:
        """The entity's usual count in one window, from its mean gap; None until trusted."""
        if state.get("n", 0) < self.p.baseline_min_history or not state.get("gap"):
            return None
        return self.p.window / state["gap"]

    def score_one(self, state, tx):
        p, events = self.p, state.get("e")
        count = 1 + len(recent(state, events, tx.ts_ms, p.window)) if events else 1
        usual = self.usual(state) if "gap" in state else None  # no gap yet: no call needed
        if usual is None:
            return self._by_count[count]
        hit = count > p.limit and count > p.baseline_factor * usual
        reason = f"{count}{self._within} (usual {usual:.1f})" if hit else NO_HIT
        return new_signal((self.name, float(count), hit, reason))

    def learn_one(self, state, tx):
        now = tx.ts_ms
        events = state.setdefault("e", [])
        last = state.get("last")
        if last is None:
            state["last"] = now
        elif now > last:
            # Gaps are capped at a day so one long holiday does not make every week look busy.
            gap = min(now - last, 86_400_000)
            state["gap"] = gap if "gap" not in state else 0.9 * state["gap"] + 0.1 * gap
            state["last"] = now
        state["n"] = state.get("n", 0) + 1
        push_event(state, events, [now], self.p.window, self.p.cap)


class AmountVelocityParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    limit: float = Field(100_000.0, gt=0, description="hit above this total amount in the window")
    cap: int = Field(200, ge=1, description="events kept per entity (bounds state)")


@register
class AmountVelocity(Indicator):
    """Total amount moved in the window, this transaction included, against a limit.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = AmountVelocity(window="1h", limit=1000), {}
    >>> [ind.evaluate(state, tx_at(m, 400)).hit for m in (0, 10, 20)]
    [False, False, True]
    >>> ind.evaluate(state, tx_at(200, 400)).value
    400.0
    """

    name = "amount_velocity"
    family = "velocity"
    typology = "rapid draining of an account, mule cash-out"
    Params = AmountVelocityParams
    state_doc = ("`e`: [time, amount] of the window's transactions in arrival order (at most `cap`); "
                 + IN_ORDER_DOC + ".")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._moved = f" moved within {self.p.window // 60_000} min"

    def score_one(self, state, tx):
        p, total, events = self.p, tx.amount, state.get("e")
        if events:
            total += sum(map(_AMOUNT, recent(state, events, tx.ts_ms, p.window)))
        hit = total > p.limit
        return new_signal((self.name, round(total, 2), hit, f"{total:,.2f}{self._moved}" if hit else NO_HIT))

    def learn_one(self, state, tx):
        push_event(state, state.setdefault("e", []), [tx.ts_ms, tx.amount], self.p.window, self.p.cap)
