"""People's actions (acknowledge, disposition) travel through Kafka like every other fact."""

from __future__ import annotations

import json
import threading

from kafka import KafkaProducer

from riskcockpit.ground import topics
from riskcockpit.ground.kafka import client_configs


class ActionPublisher:
    """Publishes an action to ``risk.actions`` keyed by alert; the sink stores it.

    A disposition (confirmed fraud / false positive) also goes to ``risk.dispositions``, keyed
    by account so it reaches the worker that owns the account. It names the decision and the
    verdict only: the worker teaches its models from its own record of what the decision saw
    (:mod:`riskcockpit.streams.decisions`), never from what a disposition says it saw.
    """

    REQUIRED = ("action_id", "alert_id", "action", "actor", "at")

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def publish(self, action: dict) -> None:
        missing = [k for k in self.REQUIRED if not action.get(k)]
        if action.get("action") == "disposition":
            if action.get("disposition") not in ("confirmed_fraud", "false_positive"):
                raise ValueError(f"disposition {action.get('disposition')!r} is not confirmed_fraud or false_positive")
            missing += [] if action.get("account_id") else ["account_id"]
        if missing:
            raise ValueError(f"action lacks {', '.join(missing)}")
        with self._lock:
            if self._producer is None:  # connect lazily: the cockpit must start even if Kafka is late
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **client_configs())
            stored = {k: v for k, v in action.items() if k != "account_id"}
            futures = [self._producer.send(topics.ACTIONS, key=action["alert_id"].encode(),
                                           value=json.dumps(stored, ensure_ascii=False).encode())]
            if action["action"] == "disposition":
                futures.append(self._producer.send(topics.DISPOSITIONS, key=action["account_id"].encode(), value=json.dumps({
                    "alert_id": action["alert_id"], "account_id": action["account_id"], "label": action["disposition"],
                    "actor": action["actor"], "at": action["at"]}, ensure_ascii=False).encode()))
        for future in futures:
            future.get(timeout=10)  # the analyst must know the action was recorded

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
