"""Counterparties and merchants: how many distinct ones in a window, which kinds, which are new."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, register
from indicators.novelty import Novelty
from indicators.support import add_event, in_window


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
        self._skip = f"not a {self.direction} of at least {self.params.min_amount:g}"

    def _counts(self, tx) -> bool:
        return tx.direction == self.direction and tx.amount >= self.params.min_amount

    def score_one(self, state, tx):
        if not self._counts(tx):
            return self.signal(0.0, False, self._skip)
        recent = in_window(state.get("e", []), tx.ts_ms, self.params.window)
        distinct = len({e[1] for e in recent} | {tx.counterparty_id})
        return self.signal(float(distinct), distinct >= self.params.count,
                       lambda: f"{distinct} distinct {self.side} of at least {self.params.min_amount:,.0f} "
                               f"within {self.params.window // 60_000} min")

    def learn_one(self, state, tx):
        if self._counts(tx):
            add_event(state.setdefault("e", []), [tx.ts_ms, tx.counterparty_id], self.params.window, self.params.cap)


@register
class FanIn(Fan):
    """Credits from many distinct payers within the window: a collection account.

    >>> from indicators.base import tx_at
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

    >>> from indicators.base import tx_at
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

    >>> from indicators.base import tx_at
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

    def score_one(self, state, tx):
        if tx.mcc in self._mccs:
            return self.signal(1.0, True, f"merchant category {tx.mcc} is high risk")
        return self.signal(0.0, False, "merchant category not listed")

    def learn_one(self, state, tx):
        pass  # stateless


@register
class NewMerchant(Novelty):
    """A merchant the account has not paid before (the novelty mechanism on ``merchant_id``).

    >>> from indicators.base import tx_at
    >>> ind, state = NewMerchant(min_history=2, fresh=0), {}
    >>> [ind.evaluate(state, tx_at(m, merchant_id=x)).hit for m, x in enumerate("aabac")]
    [False, False, True, False, True]
    """

    name = "new_merchant"
    family = "counterparty"
    typology = "card testing at unknown shops, stolen card used at new merchants"
    requires = ("merchant_id",)
    field = "merchant_id"
