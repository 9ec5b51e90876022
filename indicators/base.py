"""The indicator protocol: every indicator is a small class with a params model and two methods.

Like River's estimators (``score_one`` then ``learn_one``), an indicator first scores a
transaction against what it knows of the entity, then learns from it. State is a plain
JSON-serialisable dict per entity and indicator, so the Faust worker can keep it in a
changelog-backed table and a backtest can keep it in memory: the same code runs in both.

An indicator whose required input is absent says "not applicable" (value ``None``), never hits.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from riskcockpit.ground.contract import Transaction

NO_HIT = "no hit"


class Signal(NamedTuple):
    """What one indicator says about one transaction."""

    name: str
    value: float | None  # None: not applicable or not enough history
    hit: bool
    reason: str


# Signal(...) without the NamedTuple's generated Python-level ``__new__``: every transaction
# builds one signal per indicator, and that frame is a third of the cost.
_tuple_new = tuple.__new__


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Plain:
    """The fields of frozen params as plain attributes, ``Indicator.p``: pydantic models define
    ``__getattr__``, so CPython cannot specialise reads of their attributes, and each
    ``self.params.window`` costs about three plain reads, on every transaction.

    >>> Plain(type("P", (Params,), {"__annotations__": {"cap": int}, "cap": 5})()).cap
    5
    """

    def __init__(self, params):
        for name, value in vars(params).items():
            setattr(self, name, value)


REGISTRY: dict[str, type[Indicator]] = {}

# Whose state an indicator keeps, and the transaction field that names it. The worker re-keys
# the stream by that field so each entity's state lives in exactly one partition.
ENTITY_FIELDS = {"account": "account_id", "merchant": "merchant_id", "device": "device_id",
                 "counterparty": "counterparty_id"}


def register(cls: type[Indicator]) -> type[Indicator]:
    if cls.name in REGISTRY:
        raise ValueError(f"indicator {cls.name!r} registered twice")
    if cls.entity not in ENTITY_FIELDS:
        raise ValueError(f"indicator {cls.name!r}: entity {cls.entity!r} is not one of {', '.join(ENTITY_FIELDS)}")
    REGISTRY[cls.name] = cls
    return cls


class Indicator:
    name: ClassVar[str]
    family: ClassVar[str]
    typology: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    entity: ClassVar[str] = "account"  # a key of ENTITY_FIELDS: whose state ``state`` is
    # Which side of the value is risky, for its evidence (indicators.evidence): "high" for a
    # count, an amount or a ratio; "low" for a share of the entity's habits (this hour's share).
    risky_tail: ClassVar[str] = "high"
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None, **kwargs: Any):
        self.params = params if params is not None else self.Params(**kwargs)
        self.p = Plain(self.params)  # what score_one and learn_one read
        self._not_applicable: dict[tuple[str, ...], Signal] = {}

    def score_one(self, state: dict, tx: Transaction) -> Signal:
        raise NotImplementedError

    def learn_one(self, state: dict, tx: Transaction) -> None:
        raise NotImplementedError

    def learn_label(self, state: dict, tx: Transaction, is_fraud: bool) -> None:
        """Learn an analyst's verdict on ``tx`` (confirmed fraud or false positive), however late.

        Most indicators learn from transactions only; those that learn from outcomes (a
        merchant where confirmed frauds cluster) override this.
        """

    def evaluate(self, state: dict, tx: Transaction) -> Signal:
        """Score, then learn: the order every caller must use so a tx never judges itself."""
        for field in self.requires:
            if getattr(tx, field) is None:
                return self.not_applicable(tx)
        signal = self.score_one(state, tx)
        self.learn_one(state, tx)
        return signal

    def not_applicable(self, tx: Transaction) -> Signal:
        """The signal of a transaction without a field in ``requires``: one per set of missing fields."""
        if len(self.requires) == 1:  # most indicators: one field, so one signal, found without a scan
            missing = self.requires
        else:
            missing = tuple(f for f in self.requires if getattr(tx, f) is None)
        signal = self._not_applicable.get(missing)
        if signal is None:
            signal = self._not_applicable[missing] = _tuple_new(
                Signal, (self.name, None, False, f"not applicable: no {', '.join(missing)}"))
        return signal

    def signal(self, value: float | None, hit: bool, reason: str | Callable[[], str]) -> Signal:
        """A signal of this indicator: the one way an indicator builds one, per transaction or
        once (a constant signal, built in ``__init__``; those that repeat by a key, in a
        :class:`riskcockpit.indicators.support.Signals`). A callable reason is written out only
        for a hit: reasons are stored only for hits, and number formatting is a real share of an
        indicator's cost.

        >>> LargeAmountLike = type("X", (Indicator,), {"name": "x"})
        >>> LargeAmountLike().signal(0.2, False, lambda: 1 / 0).reason
        'no hit'
        """
        if reason.__class__ is not str:
            reason = reason() if hit else NO_HIT
        return _tuple_new(Signal, (self.name, value, hit, reason))


class Evaluator:
    """Several indicators' :meth:`Indicator.evaluate` on one entity, as one loop.

    ``evaluate(states, tx)`` is ``[ind.evaluate(states[ind.name], tx) for ind in indicators]``,
    each indicator's state made on first use (none for one never applicable). Every transaction
    runs thirty-odd indicators, so a call frame, four attribute reads and a list saved per
    indicator are a measurable share of the scoring core's instructions.

    >>> from riskcockpit.indicators.velocity import CountVelocity
    >>> states, evaluator = {}, Evaluator([CountVelocity(limit=2)])
    >>> [evaluator.evaluate(states, tx_at(m))[0].hit for m in range(3)], list(states)
    ([False, False, True], ['count_velocity'])
    """

    def __init__(self, indicators: list[Indicator]):
        self.indicators = indicators
        # attrgetter of one name returns the value, not a tuple: tx_id (never None) makes it one.
        self._steps = [(ind.name, ind.requires and attrgetter(*ind.requires, "tx_id"), ind.score_one, ind.learn_one,
                        ind) for ind in indicators]

    def evaluate(self, states: dict[str, dict], tx: Transaction) -> list[Signal]:
        signals = []
        append = signals.append
        for name, required, score_one, learn_one, ind in self._steps:
            if required and None in required(tx):
                append(ind.not_applicable(tx))
                continue
            state = states.get(name)
            if state is None:
                state = states[name] = {}
            append(score_one(state, tx))
            learn_one(state, tx)
        return signals


def tx_at(minute: float, amount: float = 100.0, **fields: Any) -> Transaction:
    """A transaction ``minute`` minutes after 2026-01-01 00:00 UTC, for examples and tests."""
    base = 1_767_225_600_000
    fields.setdefault("tx_id", f"t{minute:g}-{amount:g}")
    fields.setdefault("account_id", "A1")
    return Transaction(ts=int(base + minute * 60_000), amount=amount, **fields)
