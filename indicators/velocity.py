"""Velocity: how much an entity does, and moves, within a sliding window of event time,
against a limit and against its own pace; back-to-back transactions."""

from __future__ import annotations

from operator import itemgetter

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, register
from riskcockpit.indicators.support import Signals, add_event, in_window, short_history

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
    state_doc = ("`w`: [time] of the window's transactions in time order (at most `cap`); "
                 "`last`, `n`, `gap`: the latest time, transactions seen and the running mean gap (ms).")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._within = f" transactions within {self.p.window // 1000}s"
        # Until the pace is known, the signal depends on the count alone (at most cap + 1 of them).
        self._by_count = Signals(lambda count: self.signal(float(count), count > self.p.limit,
                                                      f"{count}{self._within}"))

    def usual(self, state) -> float | None:
        """The entity's usual count in one window, from its mean gap; None until trusted."""
        if state.get("n", 0) < self.p.baseline_min_history or not state.get("gap"):
            return None
        return self.p.window / state["gap"]

    def score_one(self, state, tx):
        p = self.p
        count = 1 + len(in_window(state, tx.ts_ms, p.window))
        usual = self.usual(state) if "gap" in state else None  # no gap yet: no call needed
        if usual is None:
            return self._by_count[count]
        hit = count > p.limit and count > p.baseline_factor * usual
        reason = f"{count}{self._within} (usual {usual:.1f})" if hit else NO_HIT
        return self.signal(float(count), hit, reason)

    def learn_one(self, state, tx):
        now = tx.ts_ms
        last = state.get("last")
        if last is None:
            state["last"] = now
        elif now > last:
            # Gaps are capped at a day so one long holiday does not make every week look busy.
            gap = min(now - last, 86_400_000)
            state["gap"] = gap if "gap" not in state else 0.9 * state["gap"] + 0.1 * gap
            state["last"] = now
        state["n"] = state.get("n", 0) + 1
        add_event(state, [now], self.p.window, self.p.cap)


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
    state_doc = "`w`: [time, amount] of the window's transactions in time order (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._moved = f" moved within {self.p.window // 60_000} min"

    def score_one(self, state, tx):
        p, total = self.p, tx.amount
        total += sum(map(_AMOUNT, in_window(state, tx.ts_ms, p.window)))
        hit = total > p.limit
        return self.signal(round(total, 2), hit, f"{total:,.2f}{self._moved}" if hit else NO_HIT)

    def learn_one(self, state, tx):
        add_event(state, [tx.ts_ms, tx.amount], self.p.window, self.p.cap)


_AMOUNT = itemgetter(1)


class AmountVelocityBaselineParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    factor: float = Field(5.0, gt=1,
        description="hit when the window's total reaches this multiple of the entity's usual total per window")
    min_total: float = Field(5_000.0, ge=0,
        description="and at least this amount moved, so small spenders' coffee rounds are not flagged")
    min_history: int = Field(5, ge=2, description="transactions before the entity's usual total is trusted")
    alpha: float = Field(0.1, gt=0, le=1,
        description="weight of the newest amount and gap in the running averages (0.1: about the last 10)")
    cap: int = Field(50, ge=1, description="events kept per entity (bounds state)")


@register
class AmountVelocityBaseline(Indicator):
    """Total moved in the window, this transaction included, as a multiple of the entity's usual.

    The usual total per window is (transactions per window) x (mean amount), both running
    averages; an entity is assumed to do at least one transaction per window, so a quiet
    account's usual is one typical payment, not a fraction of one. A payroll account moving
    millions an hour is normal for it; a pensioner's account moving 20 payments' worth is not.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = AmountVelocityBaseline(window="1h", min_total=1000, min_history=3), {}
    >>> [ind.evaluate(state, tx_at(h * 600, 100)).value for h in range(4)]   # one 100 every 10 hours
    [None, None, None, 1.0]
    >>> sig = ind.evaluate(state, tx_at(1830, 900))     # 100 + 900 within the hour
    >>> sig.value, sig.hit
    (10.0, True)
    """

    name = "amount_velocity_baseline"
    family = "velocity"
    typology = "account draining, mule cash-out, sudden money movement on a quiet account"
    Params = AmountVelocityBaselineParams
    state_doc = ("`w`: [time, amount] of the window's transactions (at most `cap`); `n`, `last`, `gap`, `mean`: "
                 "transactions seen, the latest time, the running mean gap (ms) and the running mean amount.")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)

    def usual(self, state) -> float | None:
        if state.get("n", 0) < self.p.min_history:
            return None
        per_window = max(1.0, self.p.window / state["gap"]) if state.get("gap") else 1.0
        return per_window * state["mean"]

    def score_one(self, state, tx):
        n, p = state.get("n", 0), self.p
        if n < p.min_history:
            return self._short[n]
        usual = self.usual(state)
        total = tx.amount + sum(map(_AMOUNT, in_window(state, tx.ts_ms, p.window)))
        ratio = total / usual
        hit = ratio >= p.factor and total >= p.min_total
        return self.signal(round(ratio, 3), hit, NO_HIT if not hit else
                           f"{total:,.2f} moved within {p.window // 60_000} min, {ratio:.1f}x the usual {usual:,.2f}")

    def learn_one(self, state, tx):
        now, amount = tx.ts_ms, tx.amount
        a, last = self.p.alpha, state.get("last")
        if last is not None and now > last:
            # Capped at a day, like count_velocity, so a holiday does not make every week look busy.
            gap = min(now - last, 86_400_000)
            state["gap"] = gap if "gap" not in state else (1 - a) * state["gap"] + a * gap
        state["last"] = max(now, last or 0)
        state["mean"] = amount if "mean" not in state else (1 - a) * state["mean"] + a * amount
        state["n"] = state.get("n", 0) + 1
        add_event(state, [now, amount], self.p.window, self.p.cap)


class RapidSuccessionParams(Params):
    gap: DurationMs = Field(30_000, description="a transaction this soon after the previous one is back-to-back")
    count: int = Field(3, ge=1, description="hit at this many back-to-back gaps in a row (count + 1 transactions)")
    usual_gap_factor: float = Field(
        5.0, ge=0, description="and only if the entity's usual gap is at least this many times `gap` "
                               "(0: whatever its rhythm); a business paying every few seconds is not a script")
    min_history: int = Field(10, ge=2, description="transactions before the entity's usual gap is trusted")


@register
class RapidSuccession(Indicator):
    """A run of transactions each within ``gap`` of the previous one: scripted, not human.

    Value: the number of back-to-back gaps in a row ending with this transaction. Unlike
    count_velocity it ignores how busy the window is and looks at the rhythm: ten payments
    spread over an hour are a busy day, five within a minute are a script or a thief.

    Hits only when back-to-back is unusual for the entity: its usual gap (an exponentially
    weighted mean, capped at a day) must be ``usual_gap_factor`` times ``gap`` or more, and known
    from ``min_history`` transactions.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = RapidSuccession(gap="30s", count=3, min_history=3), {}
    >>> [ind.evaluate(state, tx_at(h * 60)).hit for h in range(4)]         # hourly habits
    [False, False, False, False]
    >>> [ind.evaluate(state, tx_at(240 + s / 60)).value for s in (0, 10, 20, 30)]
    [0.0, 1.0, 2.0, 3.0]
    >>> ind.evaluate(state, tx_at(240 + 40 / 60)).hit                      # a script, for this account
    True
    """

    name = "rapid_succession"
    family = "velocity"
    typology = "scripted card testing, account takeover cash-out, bots"
    Params = RapidSuccessionParams
    state_doc = ("`t`: the times of the latest `count` + 1 transactions, in time order; `gap`: the usual gap "
                 "(EWMA, ms); `n`: transactions seen.")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._no_hit = Signals(lambda run: self.signal(float(run), False, NO_HIT))  # at most count + 1

    def _unusual_for_entity(self, state) -> bool:
        if not self.p.usual_gap_factor:
            return True
        return state.get("n", 0) >= self.p.min_history and \
            state.get("gap", 0) >= self.p.usual_gap_factor * self.p.gap

    def score_one(self, state, tx):
        now, max_gap = tx.ts_ms, self.p.gap
        run, current = 0, now
        for t in reversed(state.get("t", ())):
            if t > now:
                continue  # a late event's run is made of its own past
            if current - t >= max_gap:
                break
            run, current = run + 1, t
        if run < self.p.count or not self._unusual_for_entity(state):
            return self._no_hit[run]
        reason = (f"{run + 1} transactions each within {max_gap / 1000:g}s of the previous"
                  f" (usually {state['gap'] / 1000:,.0f}s apart)")
        return self.signal(float(run), True, reason)

    def learn_one(self, state, tx):
        now = tx.ts_ms
        times = state.setdefault("t", [])
        if times and now > times[-1]:
            gap = min(now - times[-1], 86_400_000)
            state["gap"] = gap if "gap" not in state else 0.9 * state["gap"] + 0.1 * gap
        state["n"] = state.get("n", 0) + 1
        # count + 1 times are all a run can need; older ones cannot extend it.
        times.append(now)
        if len(times) > 1 and times[-2] > now:
            times.sort()
        del times[: -(self.p.count + 1)]
