"""The Faust worker: the pipeline's stages as agents over Kafka topics and changelog-backed tables.

Read top to bottom, what a transaction meets (the stages themselves are
:class:`riskcockpit.indicators.pipeline.Pipeline`'s, the same the backtest and the backfill run):

1. ``transactions`` (or ``transactions.repartition``) delivers raw bytes;
   :func:`riskcockpit.ground.contract.parse_transaction` validates them, and a bad record goes to
   ``transactions.dlq`` as it was, with the reason and its source offset in headers.
2. A record on the wrong partition for its account (no key, another key, or a producer whose
   partitioner differs from Kafka's murmur2) is forwarded to ``transactions.repartition``
   keyed by account, so each account's state lives in exactly one partition.
3. The pipeline takes it through the account's indicators and the entity stages kept in this
   worker (:mod:`riskcockpit.streams.tables`); a stage kept in another worker gets it on its
   topic (``transactions.by_merchant``, …), whose agent there takes it on and back to
   ``transactions.repartition``, where the account's partition decides, with its models
   (:mod:`riskcockpit.streams.checkpoints`).
4. The decision goes to ``risk.scores``, and with a tier to ``risk.alerts`` as well; the
   partition keeps a record of it (:mod:`riskcockpit.streams.decisions`).

Dispositions and bulk labels arrive on ``risk.dispositions`` (:mod:`riskcockpit.streams.dispositions`)
and travel the other way: the partition's models, then each entity stage.

Every agent takes its records in batches and isolates each record
(:mod:`riskcockpit.streams.batches`). Headers between the stages are believed only on the
worker's internal topics, never on ``transactions``, where any producer writes. Delivery is
at-least-once; a redelivered ``tx_id`` gets its earlier decision and the sink stores each
``tx_id`` once, so a replay changes nothing downstream.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

import faust
import orjson

from riskcockpit.ground import topics
from riskcockpit.ground.contract import InvalidRecord, decision_id, parse_transaction
from riskcockpit.ground.kafka import KafkaSettings, client_configs, ensure_topics
from riskcockpit.ground.runtime import tune_gc
from riskcockpit.indicators.base import ENTITY_FIELDS
from riskcockpit.indicators.pipeline import ACCOUNT, NotKeptHere, Pipeline, Trip
from riskcockpit.indicators.scoring import SCORING_FILE, Scorer, load_scoring_config
from riskcockpit.streams import faust_seek
from riskcockpit.streams.batches import Outbox, agent
from riskcockpit.streams.checkpoints import Checkpoints
from riskcockpit.streams.decisions import DecisionLog
from riskcockpit.streams.dispositions import decision_of, disposition_of
from riskcockpit.streams.settings import WorkerSettings
from riskcockpit.streams.tables import Tables, carried_signals, header, send_trip, table_name

log = logging.getLogger("riskcockpit.worker")


def create_app(worker: WorkerSettings, kafka: KafkaSettings, config_dir: Path, data_dir: Path) -> faust.App:
    """The worker over the scoring config in ``config_dir``; its own files go under ``data_dir``."""
    faust_seek.install()  # or records fetched while the flow is stopped are lost (see the module)
    pipeline = Pipeline(Scorer(load_scoring_config(config_dir)))
    partitions = kafka.partitions
    parse = partial(parse_transaction, max_bytes=worker.max_record_bytes, max_amount=worker.max_amount)
    app = faust.App(
        worker.app_id,
        broker=f"kafka://{kafka.servers}",
        broker_credentials=kafka.faust_credentials(),
        store="memory://",  # tables are rebuilt from their changelog topics at start
        topic_partitions=partitions,
        # JSON for the tables, keys included: recovery decodes changelog keys with the app's key
        # codec, so raw keys would not round-trip. Topics carry raw bytes (per topic).
        key_serializer="json",
        value_serializer="json",
        # A crashed worker's partitions move to the survivors (or its restart) after this long.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        web_enabled=worker.web_port is not None,
        web_port=worker.web_port or 6066,
        datadir=str(data_dir),
        # aiokafka keeps one request in flight per broker; what is sent meanwhile waits in one
        # batch per partition, and a sender finding that batch full waits for the round trip.
        # A batch of events fills the default 16 KiB many times over, and goes out in one
        # request anyway, so lingering would only delay it.
        producer_max_batch_size=512 * 1024,
        producer_linger=0.0,
        stream_buffer_maxsize=16384,
    )

    def topic(*names):
        return app.topic(*names, partitions=partitions, key_serializer="raw", value_serializer="raw")

    def table(name):
        return app.Table(name, default=None, partitions=partitions)

    # Topics: where transactions arrive, where each entity stage takes them, and the labels.
    transactions = topic(topics.TRANSACTIONS, topics.REPARTITION)
    stages = {entity: topic(topics.BY_ENTITY[entity]) for entity in pipeline.stages}
    dispositions = topic(topics.DISPOSITIONS)
    # Tables: the states of the pipeline's entities, each partition's models and decisions.
    states = {entity: table(table_name(entity)) for entity in (ACCOUNT, *pipeline.stages)}
    models = Checkpoints(table("models"), pipeline.scorer)
    decisions = DecisionLog(table("decisions"), worker.decisions_kept)

    def score_one(out: Outbox, message) -> None:
        """A transaction at its account's partition: new, or back from the entity stages."""
        if message.topic == topics.TRANSACTIONS:
            forged = [name for name, _ in message.headers or () if name in topics.INTERNAL_HEADERS]
            if forged:  # the producer is misconfigured or tries to skip the entity stages
                raise InvalidRecord(f"header {forged[0]} is the worker's own, not accepted on {message.topic}")
        tx = parse(message.value)
        key = tx.account_id.encode()
        carried = carried_signals(message)
        trip = None if carried is None else Trip(ACCOUNT, tx.account_id, carried)
        if not (message.key == key and topics.owning_partition(key, partitions) == message.partition):
            if trip is None:
                out.send(topics.REPARTITION, key, message.value)
            else:
                send_trip(out, trip, message.value)
            return
        store = Tables(app, states, out, partitions, accounts=True)
        account = store.state(ACCOUNT, tx.account_id)
        models.restore(message.partition)
        if tx.tx_id not in account.get("recent", ()) and (
                earlier := decisions.published(decision_id(tx.account_id, tx.tx_id))) is not None:
            # Redelivered after more of the account's transactions than it remembers (a worker
            # killed before its offsets were committed): scored again, it would be scored
            # against a later history. It gets the answer it was published with.
            publish(out, key, earlier)
            return
        outcome = pipeline.score(tx, store, (message.partition, message.offset), trip)
        if isinstance(outcome, Trip):
            send_trip(out, outcome, message.value)
            return
        if outcome.new:
            decisions.remember(out, message.partition, outcome.record, tx)
        publish(out, key, outcome.record)

    def publish(out: Outbox, key: bytes, record: dict) -> None:
        payload = orjson.dumps(record)
        out.send(topics.SCORES, key, payload)
        if record["tier"]:
            out.send(topics.ALERTS, key, payload)

    def stage_one(entity: str, out: Outbox, message) -> None:
        """A transaction (or a label) at the stage of ``entity``, in the partition of its key."""
        tx = parse(message.value)  # validated before it was passed here, unless someone else wrote it
        field = ENTITY_FIELDS[entity]
        key = getattr(tx, field)
        if key is None or topics.owning_partition(key.encode(), partitions) != message.partition:
            raise InvalidRecord(f"{field}: {key!r} is not kept in partition {message.partition} of {message.topic}")
        store = Tables(app, states, out, partitions, accounts=False)
        label = header(message, topics.H_LABEL)
        if label is not None:
            if pipeline.learn(tx, label == b"True", store, stages=(entity,)):
                raise NotKeptHere(f"{field} {key!r}: its stage came here, where its state is not kept")
            return
        send_trip(out, pipeline.score(tx, store, trip=Trip(entity, key, carried_signals(message) or [])),
                  message.value)

    def learn_one(out: Outbox, message) -> None:
        """A verdict on a decision this partition keeps: its models, then its entity stages."""
        item = disposition_of(message.value)
        decision = decision_of(item, decisions, message.partition)
        if decision["label"] == item["label"]:
            log.info("disposition at %s/%d/%d of %s: already learned as %s", message.topic, message.partition,
                     message.offset, item["named"], item["label"])
            return
        tx, is_fraud = parse_transaction(orjson.dumps(decision["tx"])), item["label"] == "confirmed_fraud"
        models.restore(decision["partition"])
        store = Tables(app, states, out, partitions, accounts=False)
        decided = {"tx_id": tx.tx_id, "features": decision["features"], "source_partition": decision["partition"]}
        elsewhere = pipeline.learn(tx, is_fraud, store, decided)
        value = orjson.dumps(tx.model_dump(mode="json", exclude_none=True))
        for entity in elsewhere:
            out.send(topics.BY_ENTITY[entity], getattr(tx, ENTITY_FIELDS[entity]).encode(), value,
                     headers=[(topics.H_LABEL, str(is_fraud).encode())])
        decisions.labelled(out, item["decision_id"], decision, item["label"])

    # Agents. The partitions whose accounts a batch scored, or whose models a batch taught, are
    # checkpointed with it; not those of entity stages run here: a partition's models are
    # restored only where its accounts are.
    app.agent(transactions, name="riskcockpit.score")(
        agent(app, score_one, lambda out: models.keep(out, out.partitions_changed(states[ACCOUNT]), due_only=True)))
    for entity, stage in stages.items():
        app.agent(stage, name=f"riskcockpit.stage_{entity}")(agent(app, partial(stage_one, entity)))
    app.agent(dispositions, name="riskcockpit.learn")(
        agent(app, learn_one, lambda out: models.keep(out, out.partitions_changed(decisions.table))))

    @app.on_partitions_revoked.connect
    async def hand_over_models(app, revoked, **kwargs):
        # Faust calls this once the batches in flight are acked and before the partitions move:
        # what the models learned since their last checkpoint goes with them, so a rebalance
        # changes no later decision.
        partitions = {tp.partition for tp in revoked}
        out = Outbox(app)
        models.keep(out, partitions)
        await out.deliver()
        models.forget(partitions)
        decisions.forget(partitions)

    @app.on_before_shutdown.connect
    async def leave_models(app, **kwargs):
        # A stop skips the revoke above; the streams are empty by now and the producer still runs.
        out = Outbox(app)
        models.keep(out, list(pipeline.scorer.models))
        await out.deliver()

    app.scorer, app.config_source = pipeline.scorer, Path(config_dir, SCORING_FILE).resolve()
    return app


def ensure_worker_topics(kafka: KafkaSettings, app: faust.App) -> None:
    """The pipeline's topics and the changelog topic of each of ``app``'s tables.

    Faust creates a table's changelog as its agents start and compares partition counts at
    once; read from metadata that has not seen the new topic yet, the count is 0 and the agent
    crashes with PartitionsMismatch, again at each restart (a stage table in 1 of 4 cold
    starts: its entity's transactions were never scored). Made here, they exist before Faust
    looks, compacted as Faust would make them.
    """
    ensure_topics(kafka.servers, kafka.partitions, topics.ALL)
    ensure_topics(kafka.servers, kafka.partitions,
                  (*topics.COMPACTED, *(table.changelog_topic.get_topic_name() for table in app.tables.values())),
                  configs={"cleanup.policy": "compact"})


def publish_config(kafka: KafkaSettings, app: faust.App) -> None:
    """The scoring config this worker runs, to ``risk.configs`` keyed by its hash: the store then
    keeps every config a decision names, and ``audit … --verify`` recomputes with it years later."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    scorer = app.scorer
    record = {"config_hash": scorer.config_hash, "config": scorer.config.model_dump(mode="json"),
              "source": str(app.config_source),
              "published_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    producer = KafkaProducer(bootstrap_servers=kafka.servers, acks="all", **client_configs())
    try:
        producer.send(topics.CONFIGS, key=scorer.config_hash.encode(), value=orjson.dumps(record)).get(timeout=30)
    finally:
        producer.close(timeout=5)


def run(worker: WorkerSettings, kafka: KafkaSettings, config_dir: Path, data_dir: Path,
        loglevel: str = "info") -> None:
    """Run one worker until SIGTERM/SIGINT; several workers share the partitions."""
    data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = create_app(worker, kafka, config_dir, data_dir)
    ensure_worker_topics(kafka, app)
    publish_config(kafka, app)
    tune_gc()
    # Faust's consumer runs in a thread of its own and hands fetched records to this one; while
    # a batch is scored, each handover waits up to the switch interval for the GIL, and Python's
    # default interval put whole seconds into the worst decision latencies.
    sys.setswitchinterval(0.001)
    log.info("scoring config %s, %d indicators", app.scorer.config_hash, len(app.scorer.indicators))
    # aiokafka formats a debug record for every produce request unless told otherwise, a
    # visible share of a worker's time.
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    sys.argv = ["riskcockpit-worker", "worker", "--loglevel", loglevel,
                *(["--without-web"] if worker.web_port is None else [])]
    app.main()
