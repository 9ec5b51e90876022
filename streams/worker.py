"""The Faust worker: validate → (re-key) → score against per-account state → publish.

Read top to bottom, this is the pipeline of one transaction:

1. ``transactions`` (or ``transactions.repartition``) delivers raw bytes.
2. :func:`streams.contract.parse_transaction` validates them; a bad record goes to
   ``transactions.dlq`` byte-for-byte, with the reason and its source offset in headers.
3. A record on the wrong partition for its account (no key, another key, or a producer
   whose partitioner differs from Kafka's murmur2) is forwarded to ``transactions.repartition``
   keyed by account, so each account's state lives in exactly one partition.
4. The account's state comes from the changelog-backed table ``accounts``; the scoring core
   (:class:`indicators.scoring.Scorer`) scores the transaction and updates the state.
5. The record goes to ``risk.scores``; if it has a tier, to ``risk.alerts`` as well.

Analysts' dispositions arrive on ``risk.dispositions``, keyed by account like the transactions,
so they reach the worker that owns the account's partition and teach that partition's
supervised model. Each partition's models are checkpointed into the changelog-backed table
``models`` every ``checkpoint_every`` transactions and restored from it when the partition is
(re)assigned; what was learned since the last checkpoint is lost on a crash.

Delivery is at-least-once: after a crash Faust replays from the last committed offset. The
scorer answers a redelivered ``tx_id`` with its earlier decision and the sink stores each
``tx_id`` once, so the replay changes nothing downstream.
"""

from __future__ import annotations

import base64
import json
import logging
import sys

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner

from indicators.models import ModelSet
from indicators.scoring import Scorer, load_scoring_config
from riskcockpit.runtime import tune_gc
from riskcockpit.settings import Settings
from streams import topics
from streams.contract import InvalidRecord, parse_transaction

log = logging.getLogger("riskcockpit.worker")
_partitioner = DefaultPartitioner()


def owning_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``; Faust's producer agrees."""
    every = list(range(partitions))
    return _partitioner(key, every, every)


def dlq_headers(message, reason: str) -> list[tuple[str, bytes]]:
    return [
        (topics.H_REASON, reason.encode()),
        (topics.H_SOURCE_TOPIC, message.topic.encode()),
        (topics.H_SOURCE_PARTITION, str(message.partition).encode()),
        (topics.H_SOURCE_OFFSET, str(message.offset).encode()),
        (topics.H_SOURCE_TIMESTAMP, str(int(message.timestamp * 1000)).encode()),
    ]


def create_app(settings: Settings) -> faust.App:
    scorer = Scorer(load_scoring_config(settings.config_dir))
    partitions = settings.kafka.partitions
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.servers}",
        store="memory://",  # tables are rebuilt from their changelog topics at start
        topic_partitions=partitions,
        # JSON for the accounts table, keys included: recovery decodes changelog keys with the
        # app's key codec, so raw keys would not round-trip. Topics carry raw bytes (per topic).
        key_serializer="json",
        value_serializer="json",
        # A crashed worker's partitions move to the survivors (or its restart) after this long.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        web_enabled=settings.worker.web_port is not None,
        web_port=settings.worker.web_port or 6066,
        datadir=str(settings.data_dir / "faust"),
        # Fewer, larger produce requests: per-request socket writes dominated at 5 ms.
        producer_linger_ms=20,
        stream_buffer_maxsize=16384,
    )
    def raw_topic(*names):
        return app.topic(*names, partitions=partitions, key_serializer="raw", value_serializer="raw")

    source = raw_topic(topics.TRANSACTIONS, topics.REPARTITION, topics.DISPOSITIONS)
    repartition = raw_topic(topics.REPARTITION)
    dlq = raw_topic(topics.DLQ)
    scores = raw_topic(topics.SCORES)
    alerts = raw_topic(topics.ALERTS)
    accounts = app.Table("accounts", default=None, partitions=partitions)
    models = app.Table("models", default=None, partitions=partitions)  # partition -> checkpoint

    def partition_models(partition: int) -> ModelSet:
        if partition not in scorer.models:
            blob = models.get(str(partition))
            if blob:
                scorer.models[partition] = ModelSet.loads(base64.b64decode(blob), scorer.config.models)
                log.info("partition %d: models restored (%d transactions seen)", partition,
                         scorer.models[partition].seen)
        return scorer.model_set(partition)

    @app.on_partitions_revoked.connect
    async def forget_models(app, revoked, **kwargs):
        # Another worker may advance these models; take the checkpoint again if they come back.
        for tp in revoked:
            scorer.models.pop(tp.partition, None)

    def learn_disposition(message) -> None:
        try:
            item = json.loads(message.value)
            label = item["label"]
            if label not in ("confirmed_fraud", "false_positive"):
                raise ValueError(f"label {label!r} is not confirmed_fraud or false_positive")
            account = item["account_id"]
            known = ((accounts.get(account) or {}).get("recent") or {}).get(item["tx_id"], {})
            x = item.get("features") or known.get("features")
            if not x:
                raise ValueError(f"no features for {item['tx_id']}: not among recent decisions and none given")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("disposition at %s/%d/%d ignored: %s", message.topic, message.partition, message.offset, exc)
            return
        partition_models(message.partition).feedback(x, label == "confirmed_fraud")

    @app.agent(source)
    async def score(stream):
        async for event in stream.events():
            message = event.message
            if message.topic == topics.DISPOSITIONS:
                learn_disposition(message)
                continue
            try:
                tx = parse_transaction(event.value, settings.worker.max_record_bytes)
            except InvalidRecord as exc:
                await dlq.send(key=message.key, value=message.value, headers=dlq_headers(message, exc.reason))
                continue
            key = tx.account_id.encode()
            if message.key != key or owning_partition(key, partitions) != message.partition:
                await repartition.send(key=key, value=message.value)
                continue
            state = accounts.get(tx.account_id) or {}
            partition_set = partition_models(message.partition)
            record = scorer.score(tx, state, (message.partition, message.offset))
            accounts[tx.account_id] = state
            if partition_set.due_for_checkpoint():
                models[str(message.partition)] = base64.b64encode(partition_set.dumps()).decode()
            payload = orjson.dumps(record)
            # Awaited, not send_soon: Faust's buffer flush before a commit gives up after 0.1 s
            # without progress, which could commit offsets of decisions still in the buffer.
            await scores.send(key=key, value=payload)
            if record["tier"]:
                await alerts.send(key=key, value=payload)

    app.scorer = scorer
    return app


def run(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker until SIGTERM/SIGINT; several workers share the partitions."""
    from riskcockpit.broker import ensure_topics

    ensure_topics(settings.kafka.servers, settings.kafka.partitions, topics.ALL)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = create_app(settings)
    tune_gc()
    log.info("scoring config %s, %d indicators", app.scorer.config_hash, len(app.scorer.indicators))
    # aiokafka formats a debug record for every produce request unless told otherwise (6 % of a
    # worker's time was spent there).
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    sys.argv = ["riskcockpit-worker", "worker", "--loglevel", loglevel,
                *(["--without-web"] if settings.worker.web_port is None else [])]
    app.main()
