"""People's actions (acknowledge, disposition) travel through Kafka like every other fact."""

from __future__ import annotations

import json
import threading

from kafka import KafkaProducer

from streams import topics


class ActionPublisher:
    """Publishes an action to ``risk.actions`` keyed by alert; the sink stores it."""

    REQUIRED = ("action_id", "alert_id", "action", "actor", "at")

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def publish(self, action: dict) -> None:
        missing = [k for k in self.REQUIRED if not action.get(k)]
        if missing:
            raise ValueError(f"action lacks {', '.join(missing)}")
        with self._lock:
            if self._producer is None:  # connect lazily: the cockpit must start even if Kafka is late
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            future = self._producer.send(topics.ACTIONS, key=action["alert_id"].encode(),
                                         value=json.dumps(action, ensure_ascii=False).encode())
        future.get(timeout=10)  # the analyst must know the acknowledgement was recorded

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
