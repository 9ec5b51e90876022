"""The worker's own memory of its decisions, so a label weeks later teaches what the decision saw.

A disposition names a decision (its ``alert_id``, or ``tx_id`` and account, keyed by the
account); the supervised model must
learn from the features *the worker* computed when it scored it, and the entity stages from the
transaction *the worker* received, never from what the disposition's sender says they were
(anyone who can write to ``risk.dispositions`` could otherwise feed the models any numbers).
So each decision is kept in the changelog-backed table ``decisions``, keyed by its id
(:func:`riskcockpit.ground.contract.decision_id`: two accounts may use one ``tx_id``), in
the account's partition, where its dispositions arrive. Each row also remembers the label it
was taught, so a repeated or redelivered label teaches once, and the score record it was
published as, so a transaction redelivered after more of its account's transactions than the
account state remembers (``dedup_memory``) gets the same answer again.

Kept: the last ``keep`` decisions of each partition (``worker.decisions_kept``); older ones are
deleted from the table and its changelog (tombstones), and a label for one of them is
reported as not applied. Rows are compact JSON text, the partition in front, so the eviction
order of a recovered partition is rebuilt from the table without decoding every row.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

# What of the transaction the entity stages need to learn a label (the contract's required
# fields and the entities' keys).
TX_FIELDS = ("tx_id", "ts", "account_id", "amount", "direction", "merchant_id", "device_id", "counterparty_id",
             "mcc", "channel", "country")


def encode(partition: int, record: dict[str, Any], tx, label: str | None = None) -> str:
    """One row: the partition, then the decision's features and its transaction (a
    :class:`riskcockpit.ground.contract.Transaction`) as the contract's JSON."""
    get = tx.__dict__.get  # not model_dump: a quarter of the cost (orjson writes the datetime as ISO-8601)
    body = {"features": record["features"], "tx": {k: v for k in TX_FIELDS if (v := get(k)) is not None},
            "label": label, "published": {k: v for k, v in record.items() if k != "features"}}
    return f"{partition} {orjson.dumps(body).decode()}"


def decode(row: str) -> dict[str, Any]:
    """A row's decision: ``features``, ``tx`` (the contract's JSON) and ``label``.

    >>> from riskcockpit.ground.contract import parse_transaction
    >>> tx = parse_transaction(b'{"tx_id": "t1", "ts": "2026-01-01T00:00:00Z", "account_id": "A", "amount": 3.5}')
    >>> row = encode(2, {"features": {"log_amount": 1.5}}, tx)
    >>> row.split(" ")[0], decode(row)["features"], decode(row)["tx"]["amount"], decode(row)["label"]
    ('2', {'log_amount': 1.5}, 3.5, None)
    >>> published(decode(row))
    {'features': {'log_amount': 1.5}}
    """
    return orjson.loads(row[row.index(" ") + 1:])


def published(decision: dict[str, Any]) -> dict[str, Any] | None:
    """The score record a decision (from :func:`decode`) was published as; None for a row kept
    before rows remembered it."""
    record = decision.get("published")
    return None if record is None else record | {"features": decision["features"]}


def _partition(row: str) -> int:
    return int(row[:row.index(" ")])


class DecisionLog:
    """The ``decisions`` table with its per-partition eviction order; rows are written through
    the worker's batch outbox (``changed`` / ``deleted``), which sends them to the changelog."""

    def __init__(self, table, keep: int):
        self.table, self.keep = table, keep
        self._order: dict[int, deque[str]] = {}  # partition → decision ids, oldest first

    def _keys(self, partition: int) -> deque[str]:
        keys = self._order.get(partition)
        if keys is None:  # first use since the partition was assigned: the recovered rows, in changelog order
            keys = self._order[partition] = deque(k for k, row in self.table.data.items() if _partition(row) == partition)
        return keys

    def get(self, key: str) -> dict[str, Any] | None:
        """The decision ``key`` (:func:`decode`, with the ``partition`` it is kept in), or None."""
        row = self.table.data.get(key)
        return None if row is None else {**decode(row), "partition": _partition(row)}

    def published(self, key: str) -> dict[str, Any] | None:
        """The score record decision ``key`` was published as, if it is kept here."""
        row = self.table.data.get(key)
        return None if row is None else published(decode(row))

    def remember(self, out, partition: int, record: dict[str, Any], tx: dict[str, Any]) -> None:
        """Keep a new decision; forget the partition's oldest beyond ``keep``."""
        keys = self._keys(partition)
        key = record["alert_id"]
        if key not in self.table.data:
            keys.append(key)
        out.changed(self.table, partition, key, encode(partition, record, tx))
        while len(keys) > self.keep:
            out.deleted(self.table, partition, keys.popleft())

    def labelled(self, out, key: str, decision: dict[str, Any], label: str) -> None:
        """Remember the label a decision (from :meth:`get`) was taught, so a repeat teaches nothing."""
        partition = decision["partition"]
        body = {k: v for k, v in decision.items() if k != "partition"} | {"label": label}
        out.changed(self.table, partition, key, f"{partition} {orjson.dumps(body).decode()}")

    def forget(self, partitions) -> None:
        """Partitions revoked: their order is rebuilt if they come back."""
        for partition in partitions:
            self._order.pop(partition, None)
