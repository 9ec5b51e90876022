"""Kafka plumbing shared by the notifier, the delivery loop and the silence commands."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition

from riskcockpit.ground import topics
from riskcockpit.ground.kafka import client_configs

log = logging.getLogger("riskcockpit.alerting")


# A replacement for a crashed notifier takes over its partitions after 10 s (kafka-python's default
# is 45 s), as the worker does; notifications are latency-bound.
GROUP_TIMEOUTS = {"session_timeout_ms": 10000, "heartbeat_interval_ms": 2000}


def producer(bootstrap: str) -> KafkaProducer:
    # linger 0: a notification is latency-bound, not throughput-bound.
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, retries=5, **client_configs(),
                         max_request_size=4 * 1024 * 1024)


def consumer(bootstrap: str) -> KafkaConsumer:
    """A consumer outside any group, for topics read from a chosen position (never committed)."""
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **client_configs(),
                         fetch_max_wait_ms=100)


def ensure_alerting_topics(bootstrap: str, partitions: int) -> None:
    """Create the alerting topics; ``risk.silences`` must be compacted, so fix it if someone auto-created it."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from riskcockpit.ground.kafka import ensure_topics
    # The inputs too: the notifier may start before the worker and the cockpit have created them.
    ensure_topics(bootstrap, partitions, (topics.ALERTS, topics.ALERTS_DLQ, topics.ACTIONS, topics.NOTIFICATIONS,
                                          topics.NOTIFICATIONS_DLQ, topics.DELIVERIES))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **client_configs())
    try:
        if topics.SILENCES not in set(admin.list_topics()):
            try:
                admin.create_topics([NewTopic(topics.SILENCES, partitions, 1,
                                              topic_configs={"cleanup.policy": "compact"})])
            except TopicAlreadyExistsError:
                pass
        _make_compacted(admin, topics.SILENCES)
    finally:
        admin.close()


def _make_compacted(admin, topic: str, timeout: float = 30.0) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    deadline = time.monotonic() + timeout
    while True:
        # A topic created a moment ago is described with no configs at all: ask again.
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)],
                                           config_filter="all")
        policy = _config_value(described, topic, "cleanup.policy")
        if policy is not None:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot read the configuration of topic {topic}")
        time.sleep(0.3)
    if policy != "compact":
        log.warning("%s had cleanup.policy=%s (auto-created?); setting compact", topic, policy)
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": "compact"})],
                            raise_on_unknown=False)


def _config_value(described: Any, topic: str, key: str) -> str | None:
    # kafka-python returns nested dicts; tolerate the list-of-dicts shape of older releases.
    if isinstance(described, list):
        described = described[0] if described else {}
    node = described
    for part in ("topic", topic):
        if isinstance(node, dict) and part in node:
            node = node[part]
    entry = node.get(key) if isinstance(node, dict) else None
    if isinstance(entry, dict):
        return entry.get("value")
    return entry


def partitions_of(client: KafkaConsumer, topic: str) -> list[TopicPartition]:
    deadline = time.monotonic() + 30
    while True:
        found = client.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
        time.sleep(0.2)


def assign_from(client: KafkaConsumer, starts: dict[str, int | None]) -> dict[TopicPartition, int]:
    """Assign every partition of each topic, from the beginning (None) or a time (ms); return end offsets now."""
    parts = {topic: partitions_of(client, topic) for topic in starts}
    every = [tp for tps in parts.values() for tp in tps]
    client.assign(every)
    for topic, since in starts.items():
        if since is None:
            client.seek_to_beginning(*parts[topic])
            continue
        found = client.offsets_for_times({tp: max(0, since) for tp in parts[topic]})
        for tp in parts[topic]:
            hit = found.get(tp)
            if hit is None:
                client.seek_to_end(tp)
            else:
                client.seek(tp, hit.offset)
    return client.end_offsets(every)


def poll_records(client: KafkaConsumer, timeout_ms: int) -> list:
    polled = client.poll(timeout_ms=timeout_ms)
    return [record for records in polled.values() for record in records]


def drain(client: KafkaConsumer, ends: dict[TopicPartition, int], stall: float = 60.0) -> Iterator:
    """Records up to the end offsets taken at assignment: catch up before acting on live input.

    Gives up only when nothing arrives for ``stall`` seconds, so a long topic is read to the end.
    """
    last_progress = time.monotonic()
    while any(client.position(tp) < end for tp, end in ends.items()):
        records = poll_records(client, 200)
        if records:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > stall:
            raise RuntimeError(f"reading {sorted({tp.topic for tp in ends})} made no progress for {stall:.0f}s")
        yield from records


def replay_start_ms(bootstrap: str, group_id: str, topic: str, default_ms: int) -> int:
    """When the oldest record a consumer group will read again was written (ms), or ``default_ms``.

    The notifier reads back its own jobs only from there: what it produced earlier concerns
    alerts it will not see again.
    """
    client = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, **client_configs(),
                           fetch_max_wait_ms=100)
    try:
        parts = partitions_of(client, topic)
        ends = client.end_offsets(parts)
        committed = {tp: client.committed(tp) for tp in parts}
        if any(offset is None for offset in committed.values()):
            return default_ms
        pending = {tp: offset for tp, offset in committed.items() if offset < ends[tp]}
        if not pending:
            return int(time.time() * 1000)
        client.assign(list(pending))
        for tp, offset in pending.items():
            client.seek(tp, offset)
        oldest: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 30
        while len(oldest) < len(pending) and time.monotonic() < deadline:
            for record in poll_records(client, 200):
                tp = TopicPartition(record.topic, record.partition)
                oldest.setdefault(tp, record.timestamp)
                client.pause(tp)
        if len(oldest) < len(pending):
            return default_ms
        # a minute of slack: the job's and the alert's timestamps come from different clocks
        return max(default_ms, min(oldest.values()) - 60_000)
    finally:
        client.close()


def read_until_end(bootstrap: str, topic: str, since_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """Every JSON object on a topic (from a time, or the beginning), up to its end now."""
    client = consumer(bootstrap)
    try:
        ends = assign_from(client, {topic: since_ms})
        for record in drain(client, ends):
            if record.value is None:
                continue
            try:
                value = json.loads(record.value)
            except ValueError:
                continue
            if isinstance(value, dict):
                yield value
    finally:
        client.close()


class Rebalance(ConsumerRebalanceListener):
    """Keeps the offset tracker in step with the assignment, optionally positioning new partitions by time.

    kafka-python runs these callbacks on its network thread, where blocking calls (commit,
    committed, offsets_for_times) are refused; so nothing here does IO. Revoked partitions are
    forgotten (whoever takes them over resumes from the last periodic commit and may repeat a
    few notifications, with the same idempotency keys). With ``since_ms``, assigned partitions
    are paused until ``position_new`` (called from the polling thread) has placed the ones the
    group never committed at that time: a new notifier deployment must not announce a year of
    old alerts, while alerts younger than the alert TTL are still read.
    """

    def __init__(self, client: KafkaConsumer, tracker, since_ms: int | None = None):
        self.client = client
        self.tracker = tracker
        self.since_ms = since_ms
        self._to_position: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked):
        self.tracker.forget(revoked)
        self._to_position -= set(revoked)

    def on_partitions_assigned(self, assigned):
        if self.since_ms is not None and assigned:
            self.client.pause(*assigned)
            self._to_position |= set(assigned)

    def position_new(self) -> None:
        if not self._to_position:
            return
        parts, self._to_position = sorted(self._to_position), set()
        fresh = [tp for tp in parts if self.client.committed(tp) is None]
        if fresh:
            found = self.client.offsets_for_times({tp: max(0, self.since_ms) for tp in fresh})
            for tp in fresh:
                hit = found.get(tp)
                if hit is None:
                    self.client.seek_to_end(tp)
                else:
                    self.client.seek(tp, hit.offset)
        self.client.resume(*parts)
