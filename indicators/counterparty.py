"""Counterparties and merchants: how many distinct ones in a window, which kinds, which are new;
merchants where confirmed frauds cluster, and beneficiaries many of the bank's accounts pay."""

from __future__ import annotations

from operator import itemgetter
from typing import Annotated, ClassVar

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, Signal, register
from riskcockpit.indicators.novelty import Novelty
from riskcockpit.indicators.support import (
    SharedParams,
    Signals,
    add_event,
    distinct_accounts,
    in_window,
    remember_account,
)

_SECOND = itemgetter(1)


class FanParams(Params):
    window: DurationMs = Field(7_200_000, description="sliding window")
    count: int = Field(3, ge=2, description="hit at this many distinct counterparties in the window, this one included")
    min_amount: float = Field(1_000.0, ge=0,
        description="transactions below this amount are ignored: friends splitting a bill or paying back lunch are "
                    "not a collection scheme")
    cap: int = Field(50, ge=1, description="transactions kept per entity (bounds state)")


class Fan(Indicator):
    """Distinct counterparties on one side (``direction``) of the entity's flows in a window."""

    direction: ClassVar[str]
    side: ClassVar[str]
    requires = ("direction", "counterparty_id")
    Params = FanParams
    state_doc = ("`w`: [time, counterparty] of the window's credits (fan_in) or debits (fan_out) of at least "
                 "`min_amount`, at most `cap`.")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._skip = self.signal(0.0, False, f"not a {self.direction} of at least {self.p.min_amount:g}")
        self._by_distinct = Signals(self._signal)  # at most cap + 1

    def _signal(self, distinct: int) -> Signal:
        hit = distinct >= self.p.count
        return self.signal(float(distinct), hit, NO_HIT if not hit else
                      f"{distinct} distinct {self.side} of at least {self.p.min_amount:,.0f} "
                      f"within {self.p.window // 60_000} min")

    def score_one(self, state, tx):
        p = self.p
        if tx.direction != self.direction or tx.amount < p.min_amount:
            return self._skip
        counterparties = set(map(_SECOND, in_window(state, tx.ts_ms, p.window)))
        counterparties.add(tx.counterparty_id)
        return self._by_distinct[len(counterparties)]

    def learn_one(self, state, tx):
        if tx.direction == self.direction and tx.amount >= self.p.min_amount:
            add_event(state, [tx.ts_ms, tx.counterparty_id], self.p.window, self.p.cap)


@register
class FanIn(Fan):
    """Credits from many distinct payers within the window: a collection account.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = FanIn(window="1h", count=3, min_amount=1000), {}
    >>> [ind.evaluate(state, tx_at(m, 2000, direction="credit", counterparty_id=c)).value for m, c in enumerate("aabc")]
    [1.0, 1.0, 2.0, 3.0]
    >>> ind.evaluate(state, tx_at(9, 50, direction="credit", counterparty_id="z")).reason
    'not a credit of at least 1000'
    """

    name = "fan_in"
    family = "counterparty"
    typology = "money-mule collection, scam proceeds from many victims"
    direction = "credit"
    side = "payers"


class FanOutParams(FanParams):
    window: DurationMs = Field(3_600_000, description="sliding window")
    count: int = Field(4, ge=2, description="hit at this many distinct counterparties in the window, this one included")


@register
class FanOut(Fan):
    """Debits to many distinct payees within the window: dispersal of funds.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = FanOut(count=3, min_amount=0), {}
    >>> [ind.evaluate(state, tx_at(m, direction="debit", counterparty_id=c)).hit for m, c in enumerate("abac")]
    [False, False, False, True]
    """

    name = "fan_out"
    family = "counterparty"
    typology = "mule dispersal, layering, account takeover paying several beneficiaries"
    direction = "debit"
    side = "payees"
    Params = FanOutParams


Mcc = Annotated[str, Field(pattern=r"^\d{4}$")]


class HighRiskMccParams(Params):
    mccs: tuple[Mcc, ...] = Field(
        ("7995", "7801", "7802", "6051", "6540", "4829", "6211"),
        description="merchant category codes treated as high risk. Defaults: 7995 betting and casino chips, "
                    "7801/7802 online gambling and horse racing (gambling converts money into winnings "
                    "with a clean story); 6051 quasi-cash: crypto exchanges, money orders, foreign currency "
                    "(leaves the card system as bearer value); 6540 stored-value and prepaid card loads "
                    "(untraceable cash-out of stolen cards); 4829 money transfer services (fast, often "
                    "cross-border, hard to recall); 6211 securities brokers (fast conversion to assets "
                    "abroad, investment scams)",
    )


@register
class HighRiskMcc(Indicator):
    """A payment at a merchant category commonly used to cash out or launder.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind = HighRiskMcc()
    >>> [ind.evaluate({}, tx_at(0, mcc=m)).hit for m in ("5411", "7995", "6051")]
    [False, True, True]
    >>> ind.evaluate({}, tx_at(0)).reason
    'not applicable: no mcc'
    """

    name = "high_risk_mcc"
    family = "counterparty"
    typology = "cash-out of stolen funds via gambling, crypto, prepaid cards and money transfer"
    requires = ("mcc",)
    Params = HighRiskMccParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._mccs = frozenset(self.params.mccs)
        self._not_listed = self.signal(0.0, False, "merchant category not listed")

    def score_one(self, state, tx):
        if tx.mcc in self._mccs:
            return self.signal(1.0, True, f"merchant category {tx.mcc} is high risk")
        return self._not_listed

    def learn_one(self, state, tx):
        pass  # stateless


@register
class NewMerchant(Novelty):
    """A merchant the account has not paid before (the novelty mechanism on ``merchant_id``).

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = NewMerchant(min_history=2, fresh=0), {}
    >>> [ind.evaluate(state, tx_at(m, merchant_id=x)).hit for m, x in enumerate("aabac")]
    [False, False, True, False, True]
    """

    name = "new_merchant"
    family = "counterparty"
    typology = "card testing at unknown shops, stolen card used at new merchants"
    requires = ("merchant_id",)
    field = "merchant_id"


@register
class NewCounterparty(Novelty):
    """A counterparty the account has not paid or been paid by before.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = NewCounterparty(min_history=2, fresh=0), {}
    >>> [ind.evaluate(state, tx_at(m, counterparty_id=c)).hit for m, c in enumerate("aabac")]
    [False, False, True, False, True]
    >>> ind.evaluate(state, tx_at(9)).reason
    'not applicable: no counterparty_id'
    """

    name = "new_counterparty"
    family = "counterparty"
    typology = "payments to a fraudster's or mule's account"
    requires = ("counterparty_id",)
    field = "counterparty_id"


DAY_MS = 86_400_000


class MerchantCompromiseParams(Params):
    window: DurationMs = Field(30 * DAY_MS, ge=DAY_MS, description="confirmed frauds counted over this many days")
    min_frauds: int = Field(2, ge=1, description="hit from this many confirmed frauds at the merchant in the window")
    min_share: float = Field(0.02, ge=0, le=1,
        description="and when they are at least this share of the merchant's transactions: a big store with "
                    "a few frauds among thousands of sales is not compromised")
    memory: int = Field(32, ge=1, description="labelled tx_ids remembered so a repeated verdict counts once")


@register
class MerchantCompromise(Indicator):
    """A merchant or terminal where confirmed frauds cluster: learned from analysts' verdicts.

    Each transaction adds to the merchant's daily count; each confirmed fraud (a disposition,
    arriving however late) adds to the count of the day the fraud happened. A merchant hits when
    its confirmed frauds in the window reach ``min_frauds`` and ``min_share`` of its
    transactions: a skimmed terminal, or a merchant that helps cash out stolen cards.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = MerchantCompromise(min_frauds=2, min_share=0.1), {}
    >>> sales = [tx_at(m, merchant_id="M7", tx_id=f"s{m}") for m in range(10)]
    >>> [ind.evaluate(state, tx).value for tx in sales[:3]]
    [0.0, 0.0, 0.0]
    >>> ind.learn_label(state, sales[1], True); ind.learn_label(state, sales[1], True)  # counted once
    >>> ind.learn_label(state, sales[2], False); ind.evaluate(state, sales[3]).hit
    False
    >>> ind.learn_label(state, sales[0], True)
    >>> ind.evaluate(state, sales[4]).reason
    'merchant M7: 2 confirmed frauds in 30 days, 40% of its 5 transactions'
    """

    name = "merchant_compromise"
    family = "counterparty"
    typology = "skimmed or compromised terminals, merchants colluding in cash-out (learned from confirmed fraud)"
    entity = "merchant"
    requires = ("merchant_id",)
    Params = MerchantCompromiseParams
    state_doc = ("per merchant: `d`: [day, transactions, confirmed frauds] per day of the window (at most "
                 "window/1d + 1); `l`: the last `memory` labelled tx_ids.")

    def score_one(self, state, tx):
        days = state.get("d")
        if not days:
            return self.signal(0.0, False, "no history at this merchant")
        first = tx.ts_ms // DAY_MS - self.params.window // DAY_MS
        txs = frauds = 0
        for day, n, f in days:
            if day > first:
                txs += n
                frauds += f
        share = frauds / (txs + 1)  # this transaction included
        hit = frauds >= self.params.min_frauds and share >= self.params.min_share
        return self.signal(float(frauds), hit,
                           lambda: f"merchant {tx.merchant_id}: {frauds} confirmed frauds in "
                                   f"{self.params.window // DAY_MS} days, {share:.0%} of its {txs + 1} transactions")

    def _bucket(self, state, ts_ms: int) -> list | None:
        day, days = ts_ms // DAY_MS, state.setdefault("d", [])
        for bucket in reversed(days):  # nearly always the last one
            if bucket[0] == day:
                return bucket
        latest = max([day, *(b[0] for b in days)])
        if day <= latest - self.params.window // DAY_MS:
            return None  # older than the window: nothing to keep
        days.append([day, 0, 0])
        days.sort()
        days[:] = [b for b in days if b[0] > latest - self.params.window // DAY_MS - 1]
        return days[-1] if days[-1][0] == day else next(b for b in days if b[0] == day)

    def learn_one(self, state, tx):
        bucket = self._bucket(state, tx.ts_ms)
        if bucket is not None:
            bucket[1] += 1

    def learn_label(self, state, tx, is_fraud):
        labelled = state.setdefault("l", [])
        if tx.tx_id in labelled:
            return
        labelled.append(tx.tx_id)
        del labelled[:-self.params.memory]
        if is_fraud:
            bucket = self._bucket(state, tx.ts_ms)
            if bucket is not None:
                bucket[2] += 1


class CounterpartyFanInParams(SharedParams):
    accounts: int = Field(4, ge=2, description="hit at this many distinct paying accounts in the window, this one included")
    min_amount: float = Field(500.0, ge=0, description="payments below this are ignored (a shop, a utility)")


@register
class CounterpartyFanIn(Indicator):
    """Many of the bank's accounts paying one beneficiary within the window.

    The beneficiary is outside the bank, so no account's history shows it: only the
    counterparty's own view does. Scam victims and taken-over accounts paying one collection
    account look like this.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = CounterpartyFanIn(window="24h", accounts=3, min_amount=500), {}
    >>> pay = lambda m, a, amount=800: tx_at(m, amount, direction="debit", counterparty_id="C1", account_id=a)
    >>> [ind.evaluate(state, pay(m, a)).value for m, a in enumerate("AB")]
    [1.0, 2.0]
    >>> ind.evaluate(state, pay(2, "C", 20)).reason  # small: not counted
    'a payment under 500'
    >>> ind.evaluate(state, pay(3, "D")).hit
    True
    """

    name = "counterparty_fan_in"
    family = "counterparty"
    typology = "scam collection accounts, mule beneficiaries shared by takeover victims"
    entity = "counterparty"
    requires = ("counterparty_id", "direction")
    Params = CounterpartyFanInParams
    state_doc = ("per counterparty: `w`: [latest time, account] per paying account in the window (payments of at "
                 "least `min_amount`), at most `cap`.")

    def _counts(self, tx) -> bool:
        return tx.direction == "debit" and tx.amount >= self.params.min_amount

    def score_one(self, state, tx):
        if tx.direction != "debit":
            return self.signal(None, False, "not applicable: a credit")
        if tx.amount < self.params.min_amount:
            return self.signal(0.0, False, f"a payment under {self.params.min_amount:g}")
        n = distinct_accounts(state, tx, self.params.window)
        return self.signal(float(n), n >= self.params.accounts,
                           lambda: f"beneficiary {tx.counterparty_id}: paid by {n} accounts within "
                                   f"{self.params.window // 3_600_000}h")

    def learn_one(self, state, tx):
        if self._counts(tx):
            remember_account(state, tx, self.params.window, self.params.cap)
