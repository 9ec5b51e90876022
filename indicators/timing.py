"""Time: when an entity acts, against its own daily rhythm; accounts that wake up after a long
sleep, or start their life with a large move."""

from __future__ import annotations

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, register
from riskcockpit.indicators.support import short_history


class UnusualHourParams(Params):
    utc_offset_hours: float = Field(8.0, ge=-12, le=14, description="customers' local time (China: +8)")
    min_history: int = Field(20, ge=1, description="transactions before the profile is trusted")
    share: float = Field(0.02, gt=0, lt=1, description="hit if this hour holds less than this share of the history")
    max_count: int = Field(2000, ge=100, description="counts are halved past this, so old habits fade")


@register
class UnusualHour(Indicator):
    """An hour of day (local time) the account rarely uses, from a 24-bin profile.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = UnusualHour(utc_offset_hours=0, min_history=10), {}
    >>> for d in range(12):
    ...     _ = ind.evaluate(state, tx_at(d * 1440 + 600))   # every day at 10:00
    >>> ind.evaluate(state, tx_at(20 * 1440 + 180)).hit       # 03:00
    True
    >>> ind.evaluate(state, tx_at(21 * 1440 + 610)).hit       # 10:10
    False
    """

    name = "unusual_hour"
    risky_tail = "low"  # a rare share of the account's activity is the risk
    family = "time"
    typology = "account takeover, night-time fraud"
    Params = UnusualHourParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)

    def _hour(self, tx) -> int:
        return int((tx.ts_ms / 3_600_000 + self.p.utc_offset_hours) % 24)

    def score_one(self, state, tx):
        hours = state.get("h")
        total = sum(hours) if hours else 0
        p = self.p
        if total < p.min_history:
            return self._short[total]
        hour = int((tx.ts_ms / 3_600_000 + p.utc_offset_hours) % 24)
        share = hours[hour] / total
        return self.signal(round(share, 4), share < p.share,
                           f"{hour:02d}h local holds {share:.1%} of the account's activity")

    def learn_one(self, state, tx):
        hours = state.get("h")
        if hours is None:
            hours = state["h"] = [0] * 24
        hours[self._hour(tx)] += 1
        if sum(hours) > self.p.max_count:
            hours[:] = [h // 2 for h in hours]


DAY_MS = 86_400_000


class DormantReactivationParams(Params):
    idle: DurationMs = Field(90 * DAY_MS,
        description="hit when the entity was silent at least this long before this transaction")
    fresh: DurationMs = Field(3_600_000,
        description="transactions this soon after the reactivation count as well, so the whole burst hits")


@register
class DormantReactivation(Indicator):
    """A transaction after a long silence; value = days idle before the reactivation.

    Bought or taken-over dormant accounts are emptied or used as mules within hours of
    waking up, so the transactions shortly after the first one hit too.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = DormantReactivation(idle="90d", fresh="1h"), {}
    >>> ind.evaluate(state, tx_at(0)).value is None
    True
    >>> day = 1440
    >>> [ind.evaluate(state, tx_at(m)).value for m in (10 * day, 110 * day, 110 * day + 30, 110 * day + 90)]
    [10.0, 100.0, 100.0, 0.04]
    """

    name = "dormant_reactivation"
    family = "time"
    typology = "takeover or sale of a dormant account, sleeper mule accounts"
    Params = DormantReactivationParams
    state_doc = ("`last`: the latest transaction time; `woke`, `idle`: when the entity last woke up and how long it "
                 "had been silent before (ms).")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._first = self.signal(None, False, "no earlier transaction")

    def score_one(self, state, tx):
        last = state.get("last")
        if last is None:
            return self._first
        now, woke = tx.ts_ms, state.get("woke")
        if woke is not None and woke <= now < woke + self.p.fresh:
            days = state["idle"] / DAY_MS
            reason = f"account woke up {(now - woke) // 60_000} min ago after {days:,.0f} days idle"
            return self.signal(round(days, 2), True, reason)
        # A late event was not idle: the entity acted after it already.
        idle = now - last if now > last else 0
        days = idle / DAY_MS
        hit = idle >= self.p.idle
        return self.signal(round(days, 2), hit,
                           f"{days:,.0f} days since the previous transaction" if hit else NO_HIT)

    def learn_one(self, state, tx):
        now, last = tx.ts_ms, state.get("last")
        if last is None:
            state["last"] = now
        else:
            if now - last >= self.p.idle:
                state["woke"], state["idle"] = now, now - last
            if now > last:
                state["last"] = now


class FirstActivityLargeParams(Params):
    first: int = Field(3, ge=1, description="the entity's first this many transactions are watched")
    amount: float = Field(3_000.0, gt=0, description="hit at or above this amount (own currency)")
    debits_only: bool = Field(True,
        description="only money leaving counts: a large first deposit is how accounts are funded")
    exempt_channels: tuple[str, ...] = Field(("branch",),
        description="channels with an identity check in person, where a large first withdrawal is not a remote "
                    "takeover")


@register
class FirstActivityLarge(Indicator):
    """One of an entity's first transactions moves a large amount out at once.

    A new account, or one never seen active, that starts with a large debit: typical of
    accounts opened or bought to receive and pass on fraud money, and of dormant accounts
    taken over with no history to compare against. Unlike most indicators it can hit on the
    entity's very first transaction: having no history is the point. Note that on a cold
    start (empty state) every account is new; warm the state from history first.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = FirstActivityLarge(first=2, amount=1000), {}
    >>> [ind.evaluate(state, tx_at(m, a, direction="debit")).hit for m, a in enumerate([5000, 100, 5000])]
    [True, False, False]
    >>> ind.evaluate({}, tx_at(0, 5000, direction="credit")).reason
    'a credit'
    """

    name = "first_activity_large"
    family = "time"
    typology = "dormant or newly opened account taken over or used as a mule, bust-out"
    Params = FirstActivityLargeParams
    state_doc = "`n`: transactions seen, counted up to `first` only."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._established = self.signal(None, False, "established account")
        self._credit = self.signal(0.0, False, "a credit")

    def score_one(self, state, tx):
        n, p = state.get("n", 0), self.p
        if n >= p.first:
            return self._established
        if p.debits_only and tx.direction == "credit":
            return self._credit
        if tx.channel in p.exempt_channels:
            return self.signal(0.0, False, f"in person ({tx.channel})")
        amount = tx.amount
        hit = amount >= p.amount
        return self.signal(amount, hit,
                           f"transaction {n + 1} of a new account moves {amount:,.2f} out" if hit else NO_HIT)

    def learn_one(self, state, tx):
        n = state.get("n", 0)
        if n < self.p.first:
            state["n"] = n + 1  # the count stops growing: only "still new or not" matters
