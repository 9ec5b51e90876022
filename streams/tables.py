"""The pipeline's states in the worker: changelog-backed Faust tables, and trips as records.

Each entity's states live in a table of their own (``accounts``, ``merchant_state``, …), keyed
like the entity's topic, so a state lives in the partition Kafka's murmur2 gives its key, in
the worker that owns that partition. :class:`Tables` is the
:class:`riskcockpit.indicators.pipeline.StateStore` of one batch: a state whose partition this
worker owns is changed in place and written to the changelog with the batch; any other is
kept elsewhere, and the pipeline's :class:`riskcockpit.indicators.pipeline.Trip` becomes a record
on that stage's topic (``transactions.by_merchant``, …, or back to ``transactions.repartition``
for the decision) with the signals so far in a header.

Faust assigns partition p of every topic of the same partition count to one worker, with the
tables' changelog partitions p, so one worker alone owns them all and two own half each. A
stage's partition owned here runs in the agent at hand: one Kafka hop (a produce, a fetch, a
parse, a commit) fewer, and the same state, table and changelog as the stage's own agent,
which runs in this event loop too. The assignment cannot change under a batch: Faust waits
for in-flight events to be acked before a rebalance.
"""

from __future__ import annotations

import orjson
from faust.types import TP

from riskcockpit.ground import topics
from riskcockpit.indicators.base import Signal
from riskcockpit.indicators.pipeline import ACCOUNT, Trip
from riskcockpit.streams.batches import Outbox


def table_name(entity: str) -> str:
    """The worker's table of ``entity``'s states.

    >>> table_name("account"), table_name("merchant")
    ('accounts', 'merchant_state')
    """
    return "accounts" if entity == ACCOUNT else f"{entity}_state"


class Tables:
    """The states of one batch: ``tables[entity]`` where this worker owns the key's partition.

    With ``accounts`` False (an entity stage's agent), the accounts are kept elsewhere: only the
    agent of ``transactions`` changes an account, in the order its transactions arrive."""

    def __init__(self, app, tables: dict, out: Outbox, partitions: int, accounts: bool):
        self.app, self.tables, self.out, self.partitions, self.accounts = app, tables, out, partitions, accounts

    def state(self, entity: str, key: str) -> dict | None:
        partition = topics.owning_partition(key.encode(), self.partitions)
        if entity == ACCOUNT:
            if not self.accounts:
                return None
        elif not self.app.assignor.is_active(TP(topics.BY_ENTITY[entity], partition)):
            return None
        table = self.tables[entity]
        state = table.get(key)
        if state is None:
            state = {}
        self.out.changed(table, partition, key, state)
        return state


def encode_signals(signals: list[Signal]) -> bytes:
    return orjson.dumps([tuple(sig) for sig in signals])  # orjson takes tuples, not their subclasses


def header(message, name: bytes) -> bytes | None:
    """Header ``name`` of a record of the worker's own topics; None elsewhere, where any
    producer writes and such a header is a forgery."""
    if message.topic not in topics.INTERNAL:
        return None
    for key, value in message.headers or ():
        if key == name:
            return value
    return None


def carried_signals(message) -> list[Signal] | None:
    """The signals a record carries between stages, or None if it carries none."""
    value = header(message, topics.H_SIGNALS)
    return None if value is None else [Signal(*item) for item in orjson.loads(value)]


def send_trip(out: Outbox, trip: Trip, value: bytes) -> None:
    """``value`` (the transaction's contract JSON) on to the next stage of ``trip``, with its signals."""
    topic = topics.REPARTITION if trip.at == ACCOUNT else topics.BY_ENTITY[trip.at]
    out.send(topic, trip.key.encode(), value, headers=[(topics.H_SIGNALS, encode_signals(trip.signals))])
