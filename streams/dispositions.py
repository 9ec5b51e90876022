"""Analysts' dispositions and bulk labels, as ``risk.dispositions`` carries them.

A disposition says only which decision and which verdict. It is keyed by account like the
transactions, so it reaches the worker that owns the account's partition, where the
partition's record of its decisions (:mod:`riskcockpit.streams.decisions`) says what the
decision saw: its features teach the partition's models, its transaction the entity stages
(merchant compromise learns from confirmed fraud). Nothing a disposition claims the decision
saw is believed.
"""

from __future__ import annotations

import json
from typing import Any

from riskcockpit.ground.contract import InvalidRecord, decision_id
from riskcockpit.streams.batches import NotApplied
from riskcockpit.streams.decisions import DecisionLog

LABELS = ("confirmed_fraud", "false_positive")


def disposition_of(value: bytes | None) -> dict:
    """What a ``risk.dispositions`` record asks: the decision (by ``alert_id``, or ``tx_id`` and
    ``account_id``) and the verdict; raises :class:`InvalidRecord` naming what is wrong.

    >>> item = disposition_of(b'{"tx_id": "t1", "account_id": "A1", "label": "confirmed_fraud"}')
    >>> item["decision_id"] == decision_id("A1", "t1"), item["named"]
    (True, 'tx t1 of account A1')
    >>> disposition_of(b'{"tx_id": "t1", "label": "fraud"}')
    Traceback (most recent call last):
    ...
    riskcockpit.ground.contract.InvalidRecord: label: 'fraud' is not confirmed_fraud or false_positive
    """
    try:
        item = json.loads(value) if value is not None else None
    except (ValueError, RecursionError):
        raise InvalidRecord("disposition is not JSON") from None
    if not isinstance(item, dict):
        raise InvalidRecord("disposition is not a JSON object")
    label = item.get("label")
    if label not in LABELS:
        raise InvalidRecord(f"label: {label!r} is not {' or '.join(LABELS)}")
    alert_id, tx_id, account_id = item.get("alert_id"), item.get("tx_id"), item.get("account_id")
    if isinstance(alert_id, str) and alert_id:
        return {"label": label, "decision_id": alert_id, "named": f"alert {alert_id}",
                "account_id": account_id if isinstance(account_id, str) else None}
    if not (isinstance(tx_id, str) and tx_id and isinstance(account_id, str) and account_id):
        raise InvalidRecord("names no decision: alert_id, or tx_id and account_id (text), required")
    return {"label": label, "decision_id": decision_id(account_id, tx_id),
            "named": f"tx {tx_id} of account {account_id}", "account_id": account_id}


def decision_of(item: dict, decisions: DecisionLog, partition: int) -> dict[str, Any]:
    """The decision a disposition (:func:`disposition_of`) names, kept in this ``partition``;
    raises :class:`NotApplied` for one not kept here, or of another account than it says."""
    decision = decisions.get(item["decision_id"])
    if decision is None:
        raise NotApplied(f"no decision {item['decision_id']} ({item['named']}) is kept in partition {partition}: "
                         f"older than its last {decisions.keep}, never scored, or keyed by another account than "
                         "its own")
    if item["account_id"] not in (None, decision["tx"]["account_id"]):
        raise NotApplied(f"{item['named']} is a decision of account {decision['tx']['account_id']}, "
                         f"not of {item['account_id']}")
    return decision
