"""Warm start: build the worker's state from history, so a new deployment starts as if it had run.

``riskcockpit backfill FILE --mapping MAP.yaml`` scores a historical file with the backtest's
staged scoring (:mod:`riskcockpit.backtest.stages`, the worker's own code, over the settings'
``kafka.partitions``), learning its labels if it has them, and publishes nothing it decides.
What it keeps is the state a worker would have at the end of that history: each account's
state, each merchant's, device's and counterparty's, and each partition's models (anomaly
detectors, rarity of every indicator, supervised model, alert-budget lines). It writes them to
the changelog topics of the worker's tables, each row in the partition the worker would write
it to, with the worker's own serialisation; a worker that starts afterwards restores them as
after a restart, and scores its first live transaction against that history instead of
tiering every first activity.

Refused while a worker of the same ``worker.app_id`` is running (it would not see the rows, and
its own writes would mix with them), and, unless ``--force``, when the tables already hold
state: backfill prepares a deployment, it does not merge into a running one. The decisions
table is not filled: a label for a historical transaction belongs in the backfill's own
labels (``--labels`` / ``--label-file``), which it learns before it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskcockpit.backtest.history import BacktestError, Loaded
from riskcockpit.backtest.run import feed_plan
from riskcockpit.backtest.stages import ProcessFailed, partition_of, score_staged
from riskcockpit.ground.kafka import client_configs
from riskcockpit.ground.topics import owning_partition
from riskcockpit.indicators.pipeline import ACCOUNT
from riskcockpit.indicators.scoring import Scorer
from riskcockpit.settings import Settings


class BackfillRefused(RuntimeError):
    """The target cannot take a backfill now (a worker runs, or the tables hold state)."""


def build_state(loaded: Loaded, scorer: Scorer, partitions: int, delay: int, processes: int = 1,
                progress: Callable[[int, str], None] | None = None):
    """(shards with the accounts' states and models, entity → key → state, labels learned)."""
    items, due, _ = feed_plan(loaded, delay)
    owner = partition_of(items, partitions)
    entity_states: dict[str, dict[str, dict]] = {}
    try:
        shards = score_staged(scorer, items, due, owner, processes, progress, entity_states=entity_states)
    except ProcessFailed as exc:
        raise BacktestError(str(exc)) from None
    return shards, entity_states, sum(shard.fed_back for shard in shards)


def _worker_tables(settings: Settings):
    """The worker's tables as it declares them (names, changelog topics, codecs), without running it."""
    from riskcockpit.streams.worker import create_app, ensure_worker_topics

    app = create_app(settings.worker, settings.kafka, settings.config_dir, settings.faust_dir)
    ensure_worker_topics(settings.kafka, app)
    return app.tables


def _refuse_if_busy(settings: Settings, tables, force: bool) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import CoordinatorNotAvailableError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.servers, **client_configs())
    try:
        members = admin.describe_groups([settings.worker.app_id])[settings.worker.app_id]["members"]
    except CoordinatorNotAvailableError:  # no group has ever had a coordinator: no worker runs
        members = []
    finally:
        admin.close()
    if members:
        raise BackfillRefused(f"{len(members)} worker(s) of {settings.worker.app_id!r} are running on "
                              f"{settings.kafka.servers}; stop them first (a running worker would not see the "
                              "backfilled state, and its own writes would mix with it)")
    if force:
        return
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.servers, **client_configs())
    try:
        held = []
        for table in tables.values():
            topic = table.changelog_topic.get_topic_name()
            tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
            start, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            rows = sum(end[tp] - start[tp] for tp in tps)
            if rows:
                held.append(f"{topic} ({rows} records)")
    finally:
        consumer.close()
    if held:
        raise BackfillRefused("the worker's tables already hold state: " + ", ".join(held) +
                              "; backfill prepares a new deployment (--force writes over the rows it has)")


def write_state(settings: Settings, shards, entity_states: dict[str, dict[str, dict]],
                force: bool = False, progress: Callable[[int, str], None] | None = None) -> tuple[int, dict[str, int], int]:
    """Write the built state to the worker's changelogs; (accounts, rows per entity, partitions)."""
    from faust.serializers import codecs
    from kafka import KafkaProducer

    from riskcockpit.streams import checkpoints
    from riskcockpit.streams.tables import table_name

    tables = _worker_tables(settings)
    _refuse_if_busy(settings, tables, force)
    partitions = settings.kafka.partitions
    producer = KafkaProducer(bootstrap_servers=settings.kafka.servers, acks="all", linger_ms=20, **client_configs(),
                             max_request_size=16 * 1024 * 1024)
    futures: list[Any] = []
    sent = 0

    def send(table_name: str, key: str, value: Any, partition: int) -> None:
        nonlocal sent
        table = tables[table_name]
        futures.append(producer.send(table.changelog_topic.get_topic_name(),
                                     key=codecs.dumps(table.key_serializer, key),
                                     value=codecs.dumps(table.value_serializer, value), partition=partition))
        sent += 1
        if progress is not None and sent % 5000 == 0:
            progress(sent, "writing state")

    try:
        accounts = 0
        for shard in shards:
            for account, state in shard.states.items():
                send(table_name(ACCOUNT), account, state, owning_partition(account.encode(), partitions))
                accounts += 1
            for partition, models in shard.models.items():
                send("models", str(partition), checkpoints.encode(models), partition)
        counts = {}
        for entity, states in entity_states.items():
            for key, state in states.items():
                send(table_name(entity), key, state, owning_partition(key.encode(), partitions))
            counts[entity] = len(states)
        producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises the delivery error of any row not stored
    finally:
        producer.close(timeout=10)
    return accounts, counts, len({p for shard in shards for p in shard.models})
