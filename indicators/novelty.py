"""Novelty: a value the entity has never used before (counterparty, device, country).

One mechanism, several fields: each indicator remembers the entity's last ``memory`` distinct
values and hits on an unseen one once the entity has enough history to have habits.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from indicators.base import Indicator, Params, register


class NoveltyParams(Params):
    min_history: int = Field(3, ge=0, description="transactions with this field before a new value counts")
    memory: int = Field(32, ge=1, description="distinct values remembered per entity (bounds state)")


class Novelty(Indicator):
    field: ClassVar[str]
    Params = NoveltyParams

    def score_one(self, state, tx):
        value = getattr(tx, self.field)
        seen = state.get("seen", ())
        n = state.get("n", 0)
        if value in seen:
            return self.signal(0.0, False, f"known {self.field}")
        hit = n >= self.params.min_history
        return self.signal(1.0, hit, f"{self.field} {value} never seen in {n} transactions")

    def learn_one(self, state, tx):
        value = getattr(tx, self.field)
        seen = state.setdefault("seen", [])
        if value in seen:
            seen.remove(value)  # most recent last, so the oldest is forgotten first
        seen.append(value)
        del seen[: -self.params.memory]
        state["n"] = state.get("n", 0) + 1


@register
class NewCounterparty(Novelty):
    """A counterparty the account has not paid or been paid by before.

    >>> from indicators.base import tx_at
    >>> ind, state = NewCounterparty(min_history=2), {}
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


@register
class NewDevice(Novelty):
    """A device the account has not used before.

    >>> from indicators.base import tx_at
    >>> ind, state = NewDevice(min_history=1), {}
    >>> [ind.evaluate(state, tx_at(m, device_id=d)).hit for m, d in enumerate("aab")]
    [False, False, True]
    """

    name = "new_device"
    family = "device_geo"
    typology = "account takeover from a fraudster's device"
    requires = ("device_id",)
    field = "device_id"


@register
class NewCountry(Novelty):
    """A country the account has not transacted from before.

    >>> from indicators.base import tx_at
    >>> ind, state = NewCountry(min_history=2), {}
    >>> [ind.evaluate(state, tx_at(m, country=c)).hit for m, c in enumerate(["CN", "CN", "CN", "RU"])]
    [False, False, False, True]
    """

    name = "new_country"
    family = "device_geo"
    typology = "account takeover from abroad, compromised card used cross-border"
    requires = ("country",)
    field = "country"
