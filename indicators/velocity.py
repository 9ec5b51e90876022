"""Velocity: how much an entity does within a sliding window of event time."""

from __future__ import annotations

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, prune_window, register


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

    >>> from indicators.base import tx_at
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

    def usual(self, state) -> float | None:
        """The entity's usual count in one window, from its mean gap; None until trusted."""
        if state.get("n", 0) < self.params.baseline_min_history or not state.get("gap"):
            return None
        return self.params.window / state["gap"]

    def score_one(self, state, tx):
        now, horizon = tx.ts_ms, tx.ts_ms - self.params.window
        count = 1 + sum(1 for e in state.get("e", ()) if horizon < e[0] <= now)
        usual = self.usual(state)
        hit = count > self.params.limit and (usual is None or count > self.params.baseline_factor * usual)
        pace = f" (usual {usual:.1f})" if usual is not None else ""
        return self.signal(float(count), hit, f"{count} transactions within {self.params.window // 1000}s{pace}")

    def learn_one(self, state, tx):
        events = state.setdefault("e", [])
        last = state.get("last")
        if last is not None and tx.ts_ms > last:
            # Gaps are capped at a day so one long holiday does not make every week look busy.
            gap = min(tx.ts_ms - last, 86_400_000)
            state["gap"] = gap if "gap" not in state else 0.9 * state["gap"] + 0.1 * gap
        state["last"] = max(tx.ts_ms, last or 0)
        state["n"] = state.get("n", 0) + 1
        events.append([tx.ts_ms])
        prune_window(events, tx.ts_ms, self.params.window, self.params.cap)


class AmountVelocityParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    limit: float = Field(100_000.0, gt=0, description="hit above this total amount in the window")
    cap: int = Field(200, ge=1, description="events kept per entity (bounds state)")


@register
class AmountVelocity(Indicator):
    """Total amount moved in the window, this transaction included, against a limit.

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        now, horizon = tx.ts_ms, tx.ts_ms - self.params.window
        total = tx.amount + sum(e[1] for e in state.get("e", ()) if horizon < e[0] <= now)
        return self.signal(round(total, 2), total > self.params.limit,
                           f"{total:,.2f} moved within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        events = state.setdefault("e", [])
        events.append([tx.ts_ms, tx.amount])
        prune_window(events, tx.ts_ms, self.params.window, self.params.cap)
