"""Producing transactions into Kafka (generator, replay): keyed by account, with progress."""

from __future__ import annotations

import json
from collections.abc import Iterable

from kafka import KafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from riskcockpit.ground import topics
from riskcockpit.ground.kafka import client_configs


def producer(bootstrap: str) -> KafkaProducer:
    # acks=all: a transaction the producer saw acknowledged is on the broker, not in a buffer.
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, **client_configs(), batch_size=256 * 1024,
                         compression_type=None, retries=10)


def produce(bootstrap: str, records: Iterable[dict], total: int | None = None, topic: str = topics.TRANSACTIONS,
            show_progress: bool = True, description: str = "producing") -> int:
    """Send each record as compact JSON keyed by its ``account_id``; returns the count sent."""
    sent = 0
    kafka = producer(bootstrap)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[rate]:>8.0f} tx/s")]
    try:
        with Progress(*columns, disable=not show_progress, transient=False) as progress:
            task = progress.add_task(description, total=total, rate=0.0)
            for record in records:
                kafka.send(topic, key=str(record.get("account_id", "")).encode() or None,
                           value=json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode())
                sent += 1
                if sent % 500 == 0:
                    elapsed = progress.tasks[0].elapsed or 1e-9
                    progress.update(task, completed=sent, rate=sent / elapsed)
            kafka.flush()
            progress.update(task, completed=sent)
    finally:
        kafka.close()
    return sent
