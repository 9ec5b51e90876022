"""Topic names: the contracts between the stages, fixed here so every process agrees.

| topic | key | value | written by | read by |
|---|---|---|---|---|
| transactions | account_id | Transaction JSON (streams.contract) | producers, generator, replay | worker |
| transactions.repartition | account_id | same bytes, re-keyed; signals of the entity stages in a header | worker | worker |
| transactions.by_merchant (by_device, by_counterparty) | merchant_id (…) | same bytes, for the entity's stage; or a disposition to learn | worker | worker |
| transactions.dlq | original key | original bytes; reason and source in headers | worker | sink |
| risk.dispositions.dlq | original key | a disposition the worker could not apply, same headers | worker | sink |
| risk.alerts.dlq | original key | an alert the notifier could not read, same headers | notifier | sink |
| risk.scores | account_id | score record JSON (indicators.scoring) | worker | sink |
| risk.alerts | account_id | score record of tier >= 1 | worker | sink, notifiers |
| risk.actions | alert_id | acknowledge / disposition by a person | cockpit | sink, notifier |
| risk.silences | silence_id | newest version of a silence (compacted) | `riskcockpit silence` | notifier, sink |
| risk.notifications | receiver + group | notification job | notifier | delivery loop |
| risk.notifications.dlq | receiver + group | job that never got through, with the last error | delivery loop | people |
| risk.deliveries | notification_id | one delivery attempt | delivery loop | sink |
| risk.dispositions | account_id | {tx_id, account_id, label, actor, at} or {alert_id, …}: a verdict on a decision | cockpit, `riskcockpit labels` | worker |
| risk.configs | config_hash | a scoring config a worker runs (compacted) | worker, at start | sink |
"""

from functools import lru_cache

from aiokafka.partitioner import DefaultPartitioner

TRANSACTIONS = "transactions"
REPARTITION = "transactions.repartition"
DLQ = "transactions.dlq"
DISPOSITIONS_DLQ = "risk.dispositions.dlq"
ALERTS_DLQ = "risk.alerts.dlq"
SCORES = "risk.scores"
ALERTS = "risk.alerts"
ACTIONS = "risk.actions"
SILENCES = "risk.silences"
NOTIFICATIONS = "risk.notifications"
NOTIFICATIONS_DLQ = "risk.notifications.dlq"
DELIVERIES = "risk.deliveries"
DISPOSITIONS = "risk.dispositions"
CONFIGS = "risk.configs"

# The stage of indicators kept per merchant, device or counterparty reads its own re-keyed topic.
BY_ENTITY = {entity: f"transactions.by_{entity}" for entity in ("merchant", "device", "counterparty")}

ALL = (TRANSACTIONS, REPARTITION, DLQ, SCORES, ALERTS, ACTIONS, DISPOSITIONS, DISPOSITIONS_DLQ, ALERTS_DLQ,
       *BY_ENTITY.values())
# Where a record goes that its reader could not handle: its bytes as they were, the reason and
# the source in headers (H_REASON, H_SOURCE_*).
DEAD_LETTERS = (DLQ, DISPOSITIONS_DLQ, ALERTS_DLQ)
# What the sink copies into ClickHouse.
SINK_TOPICS = (SCORES, ALERTS, *DEAD_LETTERS, ACTIONS, SILENCES, DELIVERIES, CONFIGS)
# Topics that keep the newest record per key: whoever creates one first must make it compacted.
COMPACTED = (SILENCES, CONFIGS)
# The notifier's topics; it creates them itself (risk.silences compacted), see alerting.bus.
ALERTING = (SILENCES, NOTIFICATIONS, NOTIFICATIONS_DLQ, DELIVERIES)

# Headers of a DLQ record: the value stays byte-for-byte what the producer sent.
H_REASON = "x-dlq-reason"
H_SOURCE_TOPIC = "x-source-topic"
H_SOURCE_PARTITION = "x-source-partition"
H_SOURCE_OFFSET = "x-source-offset"
H_SOURCE_TIMESTAMP = "x-source-timestamp"

# Between the worker's stages: the signals of the entity stages passed so far (JSON list of
# [name, value, hit, reason]), and on an entity topic, a disposition to learn (its label).
# Honoured only on the worker's internal topics (INTERNAL), never on what producers write.
H_SIGNALS = "x-riskcockpit-signals"
H_LABEL = "x-riskcockpit-label"
INTERNAL = (REPARTITION, *BY_ENTITY.values())
INTERNAL_HEADERS = (H_SIGNALS, H_LABEL)


def dlq_headers(topic: str, partition: int, offset: int, timestamp_ms: int, reason: str) -> list[tuple[str, bytes]]:
    """The headers of a dead-lettered record: why, and where it was read."""
    return [
        (H_REASON, reason[:4096].encode("utf-8", "replace")),
        (H_SOURCE_TOPIC, topic.encode()),
        (H_SOURCE_PARTITION, str(partition).encode()),
        (H_SOURCE_OFFSET, str(offset).encode()),
        (H_SOURCE_TIMESTAMP, str(timestamp_ms).encode()),
    ]


def dead_letter_topic(topic: str) -> str:
    """Where the worker sends a record of ``topic`` it could not handle.

    >>> dead_letter_topic("transactions.by_merchant"), dead_letter_topic(DISPOSITIONS)
    ('transactions.dlq', 'risk.dispositions.dlq')
    """
    return DISPOSITIONS_DLQ if topic == DISPOSITIONS else DLQ


_partitioner = DefaultPartitioner()


@lru_cache(maxsize=1 << 16)
def owning_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``; Faust's producer agrees.
    Kept for the keys seen last: the worker asks for one key at each of its checks and stages,
    and the hash is Python.

    >>> owning_partition(b"A1", 4), owning_partition(b"A1", 1)
    (3, 0)
    """
    every = list(range(partitions))
    return _partitioner(key, every, every)
