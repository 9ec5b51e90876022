"""Time: accounts that wake up after a long sleep, or start their life with a large move."""

from __future__ import annotations

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, register
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

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        last = state.get("last")
        if last is None:
            return self.signal(None, False, "no earlier transaction")
        woke = state.get("woke")
        if woke is not None and woke <= tx.ts_ms < woke + self.params.fresh:
            days = state["idle"] / DAY_MS
            return self.signal(round(days, 2), True, f"account woke up {(tx.ts_ms - woke) // 60_000} min ago "
                                                    f"after {days:,.0f} days idle")
        # A late event was not idle: the entity acted after it already.
        idle = max(tx.ts_ms - last, 0)
        days = idle / DAY_MS
        return self.signal(round(days, 2), idle >= self.params.idle,
                       lambda: f"{days:,.0f} days since the previous transaction")

    def learn_one(self, state, tx):
        last = state.get("last")
        if last is not None and tx.ts_ms - last >= self.params.idle:
            state["woke"], state["idle"] = tx.ts_ms, tx.ts_ms - last
        state["last"] = max(tx.ts_ms, last or 0)


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

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        n = state.get("n", 0)
        if n >= self.params.first:
            return self.signal(None, False, "established account")
        if self.params.debits_only and tx.direction == "credit":
            return self.signal(0.0, False, "a credit")
        if tx.channel in self.params.exempt_channels:
            return self.signal(0.0, False, f"in person ({tx.channel})")
        return self.signal(tx.amount, tx.amount >= self.params.amount,
                       lambda: f"transaction {n + 1} of a new account moves {tx.amount:,.2f} out")

    def learn_one(self, state, tx):
        n = state.get("n", 0)
        if n < self.params.first:
            state["n"] = n + 1  # the count stops growing: only "still new or not" matters
