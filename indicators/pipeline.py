"""The pipeline: the route of a transaction through the stages, and of a label back.

A transaction is scored in stages, each against the state of one entity:

1. the account's indicators, against the account's state, in the order its transactions arrive;
2. each entity stage in turn (merchant, device, counterparty: those some enabled indicator keeps
   state for), against that entity's state; a transaction without the entity's field gets that
   stage's "not applicable" signals;
3. the decision, at the account again: score, tier and reasons from every signal, with the
   models of the account's partition.

A label travels the other way: the partition's models learn it from the features the decision
was made with, and each entity stage from the transaction.

The pipeline does not know where states live. It asks a :class:`StateStore` for each one; a
store that keeps it elsewhere (in another worker, in another process) answers None, and the
pipeline hands back a :class:`Trip`: where the transaction goes next and what it carries. The
caller takes it there and resumes with it. Offline every state is in :class:`Dicts`; in the
worker the store is its Faust tables, and a trip is a record on the next stage's topic.

>>> from riskcockpit.indicators.scoring import Scorer, load_scoring_config
>>> from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
>>> from riskcockpit.ground.contract import parse_transaction
>>> pipeline = Pipeline(Scorer(load_scoring_config(DEFAULT_CONFIG_DIR)))
>>> pipeline.stages
('merchant', 'device', 'counterparty')
>>> tx = parse_transaction(b'{"tx_id": "t1", "ts": "2026-01-05T10:00:00Z", "account_id": "A1",'
...                        b' "amount": 120.0, "merchant_id": "M1"}')
>>> pipeline.score(tx, Dicts()).record["tx_id"]
't1'

With the merchants kept elsewhere, the account's signals go there first:

>>> trip = pipeline.score(tx, Dicts(kept=("account",)))
>>> trip.at, trip.key
('merchant', 'M1')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from riskcockpit.ground.contract import Transaction
from riskcockpit.indicators.base import ENTITY_FIELDS, Signal
from riskcockpit.indicators.scoring import Scorer

ACCOUNT = "account"
# An account's transactions away in the entity stages, at most: their account signals wait in
# its state until they come back to be decided.
PENDING_KEPT = 64


class StateStore(Protocol):
    def state(self, entity: str, key: str) -> dict | None:
        """``key``'s state of ``entity`` (made empty on first use), to be changed in place; None
        when it is kept elsewhere."""


class Dicts:
    """Every state in dicts, ``states[entity][key]``; with ``kept``, only those entities' states
    (the others are kept elsewhere)."""

    def __init__(self, kept: Iterable[str] | None = None):
        self.kept = None if kept is None else frozenset(kept)
        self.states: dict[str, dict[str, dict]] = {entity: {} for entity in self.kept or ()}

    def state(self, entity: str, key: str) -> dict | None:
        states = self.states.get(entity)
        if states is None:
            if self.kept is not None:
                return None
            states = self.states[entity] = {}
        state = states.get(key)
        if state is None:
            state = states[key] = {}
        return state


@dataclass(slots=True)
class Trip:
    """A transaction on its way: the stage it goes to next (``at``: an entity stage, or
    ``"account"`` for the decision), the key of that stage's entity, and the signals so far.

    ``account_first`` False: the account's indicators run at the decision instead of first,
    which is the same wherever nothing can overtake an account's transaction on its way (a
    backtest, which takes every entity stage in event-time order before the accounts')."""

    at: str
    key: str
    signals: list[Signal] = field(default_factory=list)
    account_first: bool = True


@dataclass(slots=True)
class Decision:
    """The score record of a transaction; ``new`` False when it is the record given before to the same ``tx_id``."""

    record: dict[str, Any]
    new: bool


class NotKeptHere(LookupError):
    """A trip came to a stage whose state this store does not keep."""


class Pipeline:
    """The stages of :class:`riskcockpit.indicators.scoring.Scorer`, in their order; one entry per
    direction: :meth:`score` a transaction, :meth:`learn` a label."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.stages: tuple[str, ...] = tuple(scorer.stages)  # the entity stages, in order
        self._fields = [(entity, ENTITY_FIELDS[entity]) for entity in self.stages]
        self._after = {entity: k for k, (entity, _) in enumerate(self._fields)} | {ACCOUNT: len(self.stages)}

    def entities_first(self) -> Trip:
        """The trip of a transaction whose account's indicators run at its decision (:class:`Trip`)."""
        return Trip(self.stages[0] if self.stages else ACCOUNT, "", [], account_first=False)

    def score(self, tx: Transaction, store: StateStore, source: tuple[int, int] = (-1, -1),
              trip: Trip | None = None) -> Decision | Trip:
        """Take ``tx`` as far as ``store`` keeps its states: from the account (``trip`` None: it
        has just arrived there) or where ``trip`` brought it. The :class:`Decision`, with the
        models of partition ``source[0]``; or the :class:`Trip` on to the first stage kept
        elsewhere."""
        scorer = self.scorer
        account = None
        if trip is None:
            account = self._kept(store, ACCOUNT, tx.account_id)
            recent = account.get("recent")
            if recent and tx.tx_id in recent:  # redelivered: the answer it was given
                return Decision(recent[tx.tx_id], new=False)
            own = self._account_signals(tx, account)
            signals, first, start = list(own), True, 0
        else:
            signals, first, start = list(trip.signals), trip.account_first, self._after[trip.at]
        for k in range(start, len(self._fields)):
            entity, name = self._fields[k]
            key = getattr(tx, name)
            if key is None:
                signals += scorer.entity_signals(entity, tx, {})
                continue
            state = store.state(entity, key)
            if state is None:
                if trip is not None and k == start:
                    raise NotKeptHere(f"{name} {key!r}: its stage came here, where its state is not kept")
                if account is not None:
                    self._keep_pending(account, tx, own)
                return Trip(entity, key, signals, first)
            signals += scorer.entity_signals(entity, tx, state)
        if account is None:
            account = store.state(ACCOUNT, tx.account_id)
            if account is None:
                return Trip(ACCOUNT, tx.account_id, signals, first)
        new = tx.tx_id not in account.get("recent", ())
        if not first:
            return Decision(scorer.score(tx, account, source, signals), new)
        pending = account.get("pending")
        if pending:
            pending.pop(tx.tx_id, None)
        return Decision(scorer.decide(tx, account, signals, source), new)

    def learn(self, tx: Transaction, is_fraud: bool, store: StateStore, decision: dict[str, Any] | None = None,
              stages: Iterable[str] | None = None) -> list[str]:
        """Teach a verdict on ``tx``: with its ``decision`` (the score record, or its ``tx_id``,
        ``features`` and ``source_partition``: where its account is), that partition's models;
        then each entity stage (of ``stages``, default all) whose state ``store`` keeps. Returns
        the entity stages kept elsewhere, to be told."""
        scorer = self.scorer
        if decision is not None:
            scorer.feedback(decision, is_fraud)
        elsewhere = []
        for entity, name in self._fields if stages is None else [(e, ENTITY_FIELDS[e]) for e in stages]:
            key = getattr(tx, name)
            if key is None:
                continue
            state = store.state(entity, key)
            if state is None:
                elsewhere.append(entity)
            else:
                scorer.learn_label(entity, tx, state, is_fraud)
        return elsewhere

    @staticmethod
    def _kept(store: StateStore, entity: str, key: str) -> dict:
        state = store.state(entity, key)
        if state is None:
            raise NotKeptHere(f"{ENTITY_FIELDS[entity]} {key!r}: it came here, where its state is not kept")
        return state

    def _account_signals(self, tx: Transaction, account: dict) -> list[Signal]:
        """The account's own signals, evaluated once: a transaction arriving again before its
        decision (redelivered while it was in the entity stages) gets those of its first
        arrival, and is not counted twice."""
        pending = account.get("pending")
        if pending and tx.tx_id in pending:
            return [Signal(*item) for item in pending[tx.tx_id]]
        return self.scorer.account_signals(tx, account)

    @staticmethod
    def _keep_pending(account: dict, tx: Transaction, signals: list[Signal]) -> None:
        pending = account.setdefault("pending", {})
        pending[tx.tx_id] = [tuple(sig) for sig in signals]
        while len(pending) > PENDING_KEPT:  # one that never came back (dead-lettered on the way)
            del pending[next(iter(pending))]
