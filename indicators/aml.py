"""AML flows: money that comes in from many sources and leaves again quickly (mules), emptying
what came in, money that keeps crossing borders, cash-heavy activity."""

from __future__ import annotations

from operator import itemgetter

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, register
from riskcockpit.indicators.support import add_event, in_window, short_history, tally, too_few


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
    state_doc = ("`w`: [time, amount signed + for a credit and - for a debit, counterparty] of the window's "
                 "transactions in time order (at most `cap`).")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._not_debit = self.signal(0.0, False, "not a debit")
        self._no_inflow = self.signal(0.0, False, "no recent inflow")

    def score_one(self, state, tx):
        if tx.direction != "debit":
            return self._not_debit
        p = self.p
        inflow, paid_out, sources = 0, 0, set()
        # One pass, adding in list order as sum() would: the same floats as three separate sums.
        for _, signed, counterparty in in_window(state, tx.ts_ms, p.window):
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
        return self.signal(round(share, 3), hit, reason)

    def learn_one(self, state, tx):
        if tx.direction in ("debit", "credit"):
            signed = tx.amount if tx.direction == "credit" else -tx.amount
            add_event(state, [tx.ts_ms, signed, tx.counterparty_id], self.p.window, self.p.cap)


_SECOND = itemgetter(1)


class BalanceDrainParams(Params):
    ratio: float = Field(0.8, gt=0, description="hit when a debit takes at least this share of the estimated balance")
    min_balance: float = Field(5_000.0, gt=0,
        description="judge only balances at least this large: emptying a near-empty account is everyday")


@register
class BalanceDrain(Indicator):
    """A debit that takes most of the entity's estimated balance (credits - debits seen, >= 0).

    The estimate only knows what the stream showed, so it starts at 0 and is floored there
    (money the bank saw leave but never saw arrive was already in the account). Declined
    transactions move no money. Value: the debit as a share of the estimated balance.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = BalanceDrain(ratio=0.8, min_balance=1000), {}
    >>> _ = ind.evaluate(state, tx_at(0, 6000, direction="credit"))
    >>> _ = ind.evaluate(state, tx_at(1, 1000, direction="debit"))
    >>> sig = ind.evaluate(state, tx_at(2, 4500, direction="debit"))
    >>> sig.hit, sig.value
    (True, 0.9)
    """

    name = "balance_drain"
    family = "aml"
    typology = "mule cash-out, account takeover emptying the account"
    requires = ("direction",)
    Params = BalanceDrainParams
    state_doc = "`b`: the estimated balance, approved credits minus approved debits, floored at 0."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._not_debit = self.signal(0.0, False, "not a debit")
        self._too_small = self.signal(None, False, "estimated balance too small to judge")

    def score_one(self, state, tx):
        if tx.direction != "debit":
            return self._not_debit
        balance = state.get("b", 0.0)
        if balance < self.p.min_balance:
            return self._too_small
        share = tx.amount / balance
        hit = share >= self.p.ratio
        return self.signal(round(share, 3), hit,
                           f"debit takes {share:.0%} of the estimated balance {balance:,.2f}" if hit else NO_HIT)

    def learn_one(self, state, tx):
        if tx.status == "declined":
            return
        signed = tx.amount if tx.direction == "credit" else -tx.amount
        state["b"] = round(max(0.0, state.get("b", 0.0) + signed), 2)


class CrossBorderRatioParams(Params):
    window: DurationMs = Field(3_600_000, description="sliding window")
    ratio: float = Field(0.6, gt=0, le=1, description="hit at or above this share of transactions outside the home country")
    min_tx: int = Field(3, ge=1, description="transactions in the window, this one included, before judging")
    min_history: int = Field(5, ge=1, description="transactions before the home country (the most frequent one) is trusted")
    max_count: int = Field(1000, ge=10, description="country counts are halved past this, so a move abroad becomes home")
    max_countries: int = Field(16, ge=2, description="countries remembered per entity; the rarest is forgotten first")
    cap: int = Field(50, ge=1, description="transactions kept per entity in the window")


@register
class CrossBorderRatio(Indicator):
    """Share of the window's transactions booked outside the entity's home country.

    Home is the entity's most frequent country. Hits only on a foreign transaction, the one
    that continues the pattern: one holiday purchase is nothing, a run of foreign payments
    with hardly anything at home is an account operated from abroad.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = CrossBorderRatio(min_history=3, min_tx=3), {}
    >>> for m in range(3):
    ...     _ = ind.evaluate(state, tx_at(m, country="CN"))
    >>> [ind.evaluate(state, tx_at(100 + m, country="RU")).value for m in range(3)]
    [None, None, 1.0]
    >>> ind.evaluate(state, tx_at(103, country="CN")).hit     # 3 of 4 abroad, but this one is home
    False
    """

    name = "cross_border_ratio"
    family = "aml"
    typology = "account operated from abroad, layering through foreign jurisdictions"
    requires = ("country",)
    Params = CrossBorderRatioParams
    state_doc = ("`c`: transactions per country (at most `max_countries`, halved past `max_count`), `n` their total; "
                 "`w`: [time, country] of the window's transactions (at most `cap`).")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._too_few = too_few(self, self.p.min_tx)
        self._short = short_history(self, self.p.min_history)

    def score_one(self, state, tx):
        total, p = state.get("n", 0), self.p
        if total < p.min_history:
            return self._short[total]
        recent = in_window(state, tx.ts_ms, p.window)
        n = len(recent) + 1
        if n < p.min_tx:
            return self._too_few[n]
        counts = state["c"]
        home = max(counts, key=counts.get)
        abroad = tx.country != home
        foreign = n - 1 - list(map(_SECOND, recent)).count(home) + abroad
        share = foreign / n
        hit = abroad and share >= p.ratio
        return self.signal(round(share, 3), hit, NO_HIT if not hit else
                           f"{foreign} of {n} transactions outside {home} within {p.window // 60_000} min")

    def learn_one(self, state, tx):
        tally(state, tx.country, self.p.max_count, self.p.max_countries)
        add_event(state, [tx.ts_ms, tx.country], self.p.window, self.p.cap)


class CashIntensityParams(Params):
    window: DurationMs = Field(86_400_000, description="sliding window")
    share: float = Field(0.8, gt=0, le=1, description="hit at or above this share of the window's amount in cash")
    min_cash: float = Field(20_000.0, gt=0, description="and at least this much cash in the window (own currency)")
    cash_channels: tuple[str, ...] = Field(("atm", "branch"), description="channels that move cash")
    cap: int = Field(50, ge=1, description="transactions kept per entity in the window")


@register
class CashIntensity(Indicator):
    """Share of the window's amount moved in cash, when the cash is substantial.

    Cash breaks the audit trail: placement of criminal cash and cash-out of mule accounts
    both show as an account whose money mostly comes or goes over the counter or the ATM.
    Hits only on a cash transaction. Value: the cash share of the amount in the window.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = CashIntensity(min_cash=10_000), {}
    >>> _ = ind.evaluate(state, tx_at(0, 500, channel="card"))
    >>> [ind.evaluate(state, tx_at(m, 6000, channel="branch")).hit for m in (60, 120)]
    [False, True]
    """

    name = "cash_intensity"
    family = "aml"
    typology = "cash placement, structuring at counters and ATMs, mule cash-out"
    requires = ("channel",)
    Params = CashIntensityParams
    state_doc = "`w`: [time, amount, 1 if cash] of the window's transactions (at most `cap`)."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._cash = frozenset(self.p.cash_channels)
        self._not_cash = self.signal(0.0, False, "not cash")

    def score_one(self, state, tx):
        if tx.channel not in self._cash:
            return self._not_cash
        p = self.p
        in_cash, moved = 0, 0
        # One pass, adding in list order as sum() would: the same floats as two separate sums.
        for _, amount, is_cash in in_window(state, tx.ts_ms, p.window):
            moved += amount
            if is_cash:
                in_cash += amount
        cash, total = tx.amount + in_cash, tx.amount + moved
        share = cash / total
        hit = share >= p.share and cash >= p.min_cash
        return self.signal(round(share, 3), hit, NO_HIT if not hit else
                           f"{cash:,.2f} in cash, {share:.0%} of the amount within {p.window // 3_600_000}h")

    def learn_one(self, state, tx):
        add_event(state, [tx.ts_ms, tx.amount, int(tx.channel in self._cash)],
                  self.p.window, self.p.cap)
