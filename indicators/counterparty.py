"""Counterparties and merchants: how many distinct ones in a window, which kinds, which are new."""

from __future__ import annotations

from operator import itemgetter
from typing import Annotated, ClassVar

from pydantic import Field

from riskcockpit.indicators.base import NO_HIT, DurationMs, Indicator, Params, Signal, register
from riskcockpit.indicators.novelty import Novelty
from riskcockpit.indicators.support import Plain, Signals, add_event, in_window, new_signal

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
    state_doc = ("`e`: [time, counterparty] of the window's credits (fan_in) or debits (fan_out) of at least "
                 "`min_amount`, at most `cap`.")

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._skip = Signal(self.name, 0.0, False, f"not a {self.direction} of at least {self.p.min_amount:g}")
        self._by_distinct = Signals(self._signal)  # at most cap + 1

    def _signal(self, distinct: int) -> Signal:
        hit = distinct >= self.p.count
        return Signal(self.name, float(distinct), hit, NO_HIT if not hit else
                      f"{distinct} distinct {self.side} of at least {self.p.min_amount:,.0f} "
                      f"within {self.p.window // 60_000} min")

    def score_one(self, state, tx):
        p = self.p
        if tx.direction != self.direction or tx.amount < p.min_amount:
            return self._skip
        counterparties = set(map(_SECOND, in_window(state.get("e", []), tx.ts_ms, p.window)))
        counterparties.add(tx.counterparty_id)
        return self._by_distinct[len(counterparties)]

    def learn_one(self, state, tx):
        if tx.direction == self.direction and tx.amount >= self.p.min_amount:
            add_event(state.setdefault("e", []), [tx.ts_ms, tx.counterparty_id], self.p.window, self.p.cap)


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
        self._not_listed = Signal(self.name, 0.0, False, "merchant category not listed")

    def score_one(self, state, tx):
        if tx.mcc in self._mccs:
            return new_signal((self.name, 1.0, True, f"merchant category {tx.mcc} is high risk"))
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
