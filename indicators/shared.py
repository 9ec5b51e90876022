"""What many accounts do at one merchant, device or counterparty.

An account's own history cannot show a fraud ring: five victims paying one collection
account, one phone logging into six accounts, a terminal where confirmed frauds cluster.
These indicators keep their state per merchant, device or counterparty (``entity``); the
worker re-keys the stream by that field so each one's state lives in one partition.
"""

from __future__ import annotations

from pydantic import Field

from riskcockpit.indicators.base import DurationMs, Indicator, Params, register
from riskcockpit.indicators.support import add_event

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


class SharedParams(Params):
    window: DurationMs = Field(86_400_000, description="sliding window")
    accounts: int = Field(3, ge=2, description="hit at this many distinct accounts in the window, this one included")
    cap: int = Field(50, ge=2, description="accounts kept per entity (bounds state)")


def _distinct_accounts(state, tx, window: int) -> int:
    horizon = tx.ts_ms - window
    return len({e[1] for e in state.get("e", ()) if e[0] > horizon} | {tx.account_id})


def _remember_account(state, tx, window: int, cap: int) -> None:
    events = state.setdefault("e", [])
    # One entry per account (its latest time): the window counts accounts, not transactions.
    events[:] = [e for e in events if e[1] != tx.account_id]
    add_event(events, [tx.ts_ms, tx.account_id], window, cap)


@register
class DeviceShared(Indicator):
    """One device used by several accounts within the window.

    People rarely share phones across bank accounts; a fraudster working through a list of
    taken-over accounts, or a mule herder operating recruits' accounts, does.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = DeviceShared(window="24h", accounts=3), {}
    >>> [ind.evaluate(state, tx_at(m, device_id="D9", account_id=a)).value for m, a in enumerate("AABC")]
    [1.0, 1.0, 2.0, 3.0]
    >>> ind.evaluate(state, tx_at(5, device_id="D9", account_id="D")).reason
    'device D9: 4 accounts within 24h'
    >>> ind.evaluate(state, tx_at(60 * 30, device_id="D9", account_id="A")).value  # a day later
    1.0
    """

    name = "device_shared"
    family = "device_geo"
    typology = "account takeover rings, mule herding (one device operating many accounts)"
    entity = "device"
    requires = ("device_id",)
    Params = SharedParams
    state_doc = "per device: `e`: [latest time, account] per account seen in the window, at most `cap`."

    def score_one(self, state, tx):
        n = _distinct_accounts(state, tx, self.params.window)
        return self.signal(float(n), n >= self.params.accounts,
                           lambda: f"device {tx.device_id}: {n} accounts within {self.params.window // 3_600_000}h")

    def learn_one(self, state, tx):
        _remember_account(state, tx, self.params.window, self.params.cap)


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
    state_doc = ("per counterparty: `e`: [latest time, account] per paying account in the window (payments of at "
                 "least `min_amount`), at most `cap`.")

    def _counts(self, tx) -> bool:
        return tx.direction == "debit" and tx.amount >= self.params.min_amount

    def score_one(self, state, tx):
        if tx.direction != "debit":
            return self.signal(None, False, "not applicable: a credit")
        if tx.amount < self.params.min_amount:
            return self.signal(0.0, False, f"a payment under {self.params.min_amount:g}")
        n = _distinct_accounts(state, tx, self.params.window)
        return self.signal(float(n), n >= self.params.accounts,
                           lambda: f"beneficiary {tx.counterparty_id}: paid by {n} accounts within "
                                   f"{self.params.window // 3_600_000}h")

    def learn_one(self, state, tx):
        if self._counts(tx):
            _remember_account(state, tx, self.params.window, self.params.cap)
