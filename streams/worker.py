"""The Faust worker: validate → the account's indicators → entity stages → decide → publish.

Read top to bottom, this is the pipeline of one transaction:

1. ``transactions`` (or ``transactions.repartition``) delivers raw bytes.
2. :func:`riskcockpit.ground.contract.parse_transaction` validates them; a bad record goes to
   ``transactions.dlq`` byte-for-byte, with the reason and its source offset in headers.
3. A record on the wrong partition for its account (no key, another key, or a producer
   whose partitioner differs from Kafka's murmur2) is forwarded to ``transactions.repartition``
   keyed by account, so each account's state lives in exactly one partition.
4. The account's indicators run first, against its state in the changelog-backed table
   ``accounts``, in the order the account's transactions arrive.
5. Indicators kept per merchant, device or counterparty (``Scorer.stages``) run in a stage of
   their own, against that entity's state (changelog-backed table ``merchant_state``, …),
   in the worker that owns the entity's partition. Where that is this worker, the stage runs
   right here; otherwise the record goes to ``transactions.by_merchant`` keyed by merchant,
   whose agent in the owning worker scores it and passes it on with the signals so far in a
   header, to the next entity stage, then back to ``transactions.repartition`` keyed by
   account. A record without the entity's field skips that stage ("not applicable").
   The scoring core (:class:`riskcockpit.indicators.scoring.Scorer`) then decides from every signal, with
   the models of the account's partition.
6. The record goes to ``risk.scores``; if it has a tier, to ``risk.alerts`` as well.

Analysts' dispositions and bulk labels arrive on ``risk.dispositions``, keyed by account like
the transactions, so they reach the worker that owns the account's partition. There the
partition's record of its decisions (:mod:`riskcockpit.streams.decisions`) says what the decision saw: its
features teach the partition's supervised model, its transaction the entity stages (merchant
compromise learns from confirmed fraud). A disposition says only which decision and which
verdict; nothing it claims the decision saw is believed. Each partition's models are
checkpointed into the changelog-backed table ``models`` with every batch (``checkpoint_every``:
1; or every that many transactions), and whenever the partition moves to another worker (a
rebalance, a stop), and restored from it when the partition is (re)assigned. A batch's
checkpoint and table rows are delivered before its records, so a worker killed before its
offsets were committed answers the batch again as it did, from models that already hold it.

One record never costs another: whatever goes wrong while one record is handled (a record
that breaks the contract, a disposition of a decision not kept here, a bug) sends that record
to its dead-letter topic (``transactions.dlq``, ``risk.dispositions.dlq``) with the reason and
its source offset, and the batch goes on. Faust acks a whole batch once its loop body is done,
so an exception escaping the loop would commit the batch's remaining records unhandled.
Headers between the stages (the signals so far, a label to learn) are believed only on the
worker's internal topics, never on ``transactions``, where any producer writes.

Every agent takes its events in batches (whatever arrived while the last batch was processed,
up to ``BATCH_MAX``) and sends its records straight to the producer, so a batch goes out in a
few produce requests; a table row the batch changed is written to the changelog once, with its
final value. Delivery is at-least-once: a batch's events are acked only after everything it
sent is delivered, and after a crash Faust replays from the last committed offset. The scorer
answers a redelivered ``tx_id`` with its earlier decision and the sink stores each ``tx_id``
once, so the replay changes nothing downstream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
from functools import partial
from pathlib import Path

import faust
import orjson
from faust.serializers import codecs
from faust.types import TP

from riskcockpit.indicators.base import ENTITY_FIELDS, Signal
from riskcockpit.indicators.models import ModelSet
from riskcockpit.indicators.scoring import SCORING_FILE, Scorer, load_scoring_config
from riskcockpit.ground.runtime import tune_gc
from riskcockpit.ground.settings import Settings
from riskcockpit.ground import topics
from riskcockpit.streams import faust_seek
from riskcockpit.ground.contract import InvalidRecord, decision_id, parse_transaction
from riskcockpit.streams.decisions import DecisionLog

log = logging.getLogger("riskcockpit.worker")
# A batch is whatever arrived while the previous one was processed, up to BATCH_MAX events; a
# lone event waits at most BATCH_WAIT seconds for company.
BATCH_MAX = 500
BATCH_WAIT = 0.005
# An account's transactions in the entity stages, at most: their account signals wait in its
# state until they come back to be decided.
PENDING_KEPT = 64


class Outbox:
    """What one batch of events sends: each table row the batch changed, to the table's
    changelog once, with its final value; then its records.

    The rows go first, and the records only once the broker has the rows: a decision is
    published only when the account state that remembers it is stored, so a worker killed
    between the two, replaying the batch, answers each transaction with the decision it
    published, never with a second one.

    Not ``Topic.send``: it yields to the event loop three times per record (a guard around
    "is the producer started?"), and aiokafka's sender, finding the loop free, sent about one
    produce request per record. Not ``table[key] = value`` either: that needs the event being
    processed, which a batch has not, and queues the changelog record in Faust's buffer, whose
    flush before a commit gives up after 0.1 s without progress.
    """

    def __init__(self, app: faust.App):
        self.app = app
        self.records: list[tuple] = []
        self.rows: dict[tuple[str, str], tuple] = {}

    async def send(self, topic: str, key: bytes | None, value: bytes, headers=None, partition: int | None = None):
        self.records.append((topic, key, value, partition, headers))

    def changed(self, table, partition: int, key: str, value) -> None:
        """``table[key] = value``, written to the changelog's ``partition`` when the batch is delivered."""
        table.data[key] = value
        self.rows[(table.name, key)] = (table, partition, key, value)

    def deleted(self, table, partition: int, key: str) -> None:
        """``del table[key]``: a tombstone in the changelog, so recovery forgets it too."""
        table.data.pop(key, None)
        self.rows[(table.name, key)] = (table, partition, key, None)

    async def _send_all(self, records) -> None:
        send = self.app.producer.send
        await asyncio.gather(*[await send(topic, key, value, partition, None, headers)
                               for topic, key, value, partition, headers in records])

    async def deliver(self) -> None:
        """Send the changed rows, then the records, and wait until everything is delivered. A
        failed delivery ends the process at once: the batch's events must not be acked (Faust
        would commit them), so that a restart replays them."""
        rows = [(table.changelog_topic.get_topic_name(), codecs.dumps(table.key_serializer, key),
                 None if value is None else codecs.dumps(table.value_serializer, value), partition, None)
                for table, partition, key, value in self.rows.values()]
        try:
            await self._send_all(rows)
            await self._send_all(self.records)
        except Exception:  # noqa: BLE001 - any failed delivery loses a decision unless we stop here
            log.critical("delivery failed; exiting without acking the batch, a restart replays it", exc_info=True)
            logging.shutdown()
            os._exit(70)


class NotApplied(Exception):
    """A record the worker understood but cannot apply (a disposition of an unknown decision)."""


async def dead_letter(out: Outbox, message, exc: Exception) -> None:
    """``message`` to its dead-letter topic, as it was, with what went wrong and where it came from."""
    if isinstance(exc, InvalidRecord | NotApplied):
        reason = str(exc)
    else:  # not the record's fault alone: the operator needs the traceback
        reason = f"{type(exc).__name__}: {exc}"
        log.error("record at %s/%d/%d dead-lettered: %s", message.topic, message.partition, message.offset, reason,
                  exc_info=exc)
    await out.send(topics.dead_letter_topic(message.topic), message.key, message.value,
                   headers=topics.dlq_headers(message.topic, message.partition, message.offset,
                                              int(message.timestamp * 1000), reason))


def encode_signals(signals: list[Signal]) -> bytes:
    return orjson.dumps([tuple(sig) for sig in signals])  # orjson takes tuples, not their subclasses


def signals_header(message) -> list[Signal] | None:
    """The entity stages' signals a record carries, or None if it has not been through them (or
    came from outside, where such a header is a forgery)."""
    if message.topic not in topics.INTERNAL:
        return None
    for name, value in message.headers or ():
        if name == topics.H_SIGNALS:
            return [Signal(*item) for item in orjson.loads(value)]
    return None


def entity_state(out: Outbox, table, partition: int, key: str) -> dict:
    """``key``'s state in ``table``, made on first use, to be written to the changelog with the batch."""
    state = table.get(key) or {}
    out.changed(table, partition, key, state)
    return state


def add_stage(app: faust.App, scorer: Scorer, entity: str, topic, table, pass_on, parse) -> None:
    """The stage of the indicators kept per ``entity``, with that entity's state in ``table``:
    it adds its signals to the record's and passes it on."""
    field = ENTITY_FIELDS[entity]

    async def stage_one(out: Outbox, message) -> None:
        tx = parse(message.value)  # validated before it was passed here, unless someone else wrote it
        key = getattr(tx, field)
        if key is None or topics.owning_partition(key.encode(), table.partitions) != message.partition:
            raise InvalidRecord(f"{field}: {key!r} is not kept in partition {message.partition} of {message.topic}")
        state = entity_state(out, table, message.partition, key)
        label = dict(message.headers or ()).get(topics.H_LABEL)
        if label is not None:
            scorer.learn_label(entity, tx, state, label == b"True")
            return
        carried = (signals_header(message) or []) + scorer.entity_signals(entity, tx, state)
        if not await pass_on(out, tx, message.value, carried, entity):
            await out.send(topics.REPARTITION, tx.account_id.encode(), message.value,
                           headers=[(topics.H_SIGNALS, encode_signals(carried))])

    async def stage(stream):
        await app.maybe_start_producer()
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WAIT):
            out = Outbox(app)
            for event in events:
                try:
                    await stage_one(out, event.message)
                except Exception as exc:  # noqa: BLE001 - one record must not cost the rest of the batch
                    await dead_letter(out, event.message, exc)
            await out.deliver()  # before the batch's events are acked, when the next is taken

    app.agent(topic, name=f"riskcockpit.stage_{entity}")(stage)


def create_app(settings: Settings) -> faust.App:
    faust_seek.install()  # or records fetched while the flow is stopped are lost (see the module)
    scorer = Scorer(load_scoring_config(settings.config_dir))
    partitions = settings.kafka.partitions
    parse = partial(parse_transaction, max_bytes=settings.worker.max_record_bytes,
                    max_amount=settings.worker.max_amount)
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.servers}",
        broker_credentials=settings.kafka.faust_credentials(),
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
        # aiokafka keeps one request in flight per broker; what is sent meanwhile waits in one
        # batch per partition, and a sender finding that batch full waits for the round trip.
        # A batch of events fills the default 16 KiB many times over, and goes out in one
        # request anyway, so lingering would only delay it.
        producer_max_batch_size=512 * 1024,
        producer_linger=0.0,
        stream_buffer_maxsize=16384,
    )
    def raw_topic(*names):
        return app.topic(*names, partitions=partitions, key_serializer="raw", value_serializer="raw")

    source = raw_topic(topics.TRANSACTIONS, topics.REPARTITION, topics.DISPOSITIONS)
    accounts = app.Table("accounts", default=None, partitions=partitions)
    models = app.Table("models", default=None, partitions=partitions)  # partition -> checkpoint
    decisions = DecisionLog(app.Table("decisions", default=None, partitions=partitions),
                            settings.worker.decisions_kept)
    stage_topics = {entity: raw_topic(topics.BY_ENTITY[entity]) for entity in scorer.stages}
    stage_tables = {entity: app.Table(f"{entity}_state", default=None, partitions=partitions)
                    for entity in scorer.stages}
    order = list(scorer.stages)

    def partition_models(partition: int) -> ModelSet:
        if partition not in scorer.models:
            blob = models.get(str(partition))
            if blob:
                scorer.models[partition] = ModelSet.loads(base64.b64decode(blob), scorer.config.models)
                log.info("partition %d: models restored (%d transactions seen)", partition,
                         scorer.models[partition].seen)
        return scorer.model_set(partition)

    def keep_models(out: Outbox, partition: int) -> None:
        out.changed(models, partition, str(partition), base64.b64encode(scorer.models[partition].dumps()).decode())

    async def checkpoint(partitions) -> None:
        """Checkpoint the models of ``partitions`` that this worker holds, now."""
        out = Outbox(app)
        for partition in sorted(set(partitions) & set(scorer.models)):
            keep_models(out, partition)
        if out.rows:
            await out.deliver()

    @app.on_partitions_revoked.connect
    async def hand_over_models(app, revoked, **kwargs):
        # Faust calls this once the batches in flight are acked and before the partitions move:
        # what the models learned since their last checkpoint goes with them, so a rebalance
        # changes no later decision. Another worker may advance them; take the checkpoint again
        # if they come back.
        partitions = {tp.partition for tp in revoked}
        await checkpoint(partitions)
        for partition in partitions:
            scorer.models.pop(partition, None)
        decisions.forget(partitions)

    @app.on_before_shutdown.connect
    async def leave_models(app, **kwargs):
        # A stop skips the revoke above; the streams are empty by now and the producer still runs.
        await checkpoint(list(scorer.models))

    def local_state(out: Outbox, entity: str, key: str) -> dict | None:
        """``key``'s state in ``entity``'s table if this worker owns its partition, else None.

        Faust assigns partition p of every topic of the same partition count to one worker, with
        the tables' changelog partitions p, so one worker alone owns them all and two own half
        each. A stage's partition owned here runs in the agent at hand: one Kafka hop (a produce,
        a fetch, a parse, a commit) fewer, and the same state, table and changelog as the
        stage's own agent, which processes in this event loop too. The assignment cannot change
        under a batch: Faust waits for in-flight events to be acked before a rebalance.
        """
        partition = topics.owning_partition(key.encode(), partitions)
        if not app.assignor.is_active(TP(topics.BY_ENTITY[entity], partition)):
            return None
        return entity_state(out, stage_tables[entity], partition, key)

    def account_signals(state: dict, tx) -> list[Signal]:
        """The account's own signals for ``tx``, evaluated once: a transaction replayed before
        its decision (a worker killed while it was in the entity stages) gets the signals its
        first pass put into the account's state, and is not counted twice."""
        pending = state.setdefault("pending", {})
        if tx.tx_id in pending:
            return [Signal(*item) for item in pending[tx.tx_id]]
        signals = scorer.account_signals(tx, state)
        pending[tx.tx_id] = [tuple(sig) for sig in signals]
        while len(pending) > PENDING_KEPT:  # one that never came back (dead-lettered on the way)
            del pending[next(iter(pending))]
        return list(signals)

    async def pass_on(out: Outbox, tx, value: bytes, carried: list, after: str | None = None) -> bool:
        """Take ``tx`` through its entity stages after ``after``, adding their signals to
        ``carried``: here for stages whose partition this worker owns, else by sending it to
        the next stage's topic. False when none is left (the account's stage is next)."""
        for entity in order[order.index(after) + 1 if after else 0:]:
            key = getattr(tx, ENTITY_FIELDS[entity])
            if key is None:  # not applicable, said on the way
                carried += scorer.entity_signals(entity, tx, {})
                continue
            state = local_state(out, entity, key)
            if state is None:
                await out.send(topics.BY_ENTITY[entity], key.encode(), value,
                               headers=[(topics.H_SIGNALS, encode_signals(carried))])
                return True
            carried += scorer.entity_signals(entity, tx, state)
        return False

    def learn_disposition(out: Outbox, message):
        """Teach the models a verdict on a decision this partition keeps; returns (tx, is_fraud)
        for the entity stages, or None when there is nothing more to learn. Raises
        InvalidRecord for a disposition that is not one, NotApplied for one of a decision not
        kept here: both are dead-lettered."""
        item = disposition_of(message.value)
        label, key = item["label"], item["decision_id"]
        decision = decisions.get(key)
        if decision is not None and item["account_id"] not in (None, decision["tx"]["account_id"]):
            raise NotApplied(f"{item['named']} is a decision of account {decision['tx']['account_id']}, "
                             f"not of {item['account_id']}")
        if decision is None:
            raise NotApplied(f"no decision {key} ({item['named']}) is kept in partition {message.partition}: older "
                             f"than its last {decisions.keep}, never scored, or keyed by another account than its own")
        if decision["label"] == label:
            log.info("disposition at %s/%d/%d of %s: already learned as %s", message.topic, message.partition,
                     message.offset, item["named"], label)
            return None
        is_fraud = label == "confirmed_fraud"
        partition_models(decision["partition"]).feedback(decision["features"], is_fraud, decision["tx"]["tx_id"])
        decisions.labelled(out, key, decision, label)
        return parse_transaction(orjson.dumps(decision["tx"])), is_fraud

    async def to_stages(out: Outbox, tx, is_fraud: bool) -> None:
        value, label = orjson.dumps(tx.model_dump(mode="json", exclude_none=True)), str(is_fraud).encode()
        for entity in order:
            key = getattr(tx, ENTITY_FIELDS[entity])
            if key is None:
                continue
            state = local_state(out, entity, key)
            if state is None:
                await out.send(topics.BY_ENTITY[entity], key.encode(), value, headers=[(topics.H_LABEL, label)])
            else:
                scorer.learn_label(entity, tx, state, is_fraud)

    @app.agent(source)
    async def score(stream):
        await app.maybe_start_producer()
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WAIT):
            out = Outbox(app)
            for event in events:
                try:
                    await score_one(out, event.message)
                except Exception as exc:  # noqa: BLE001 - one record must not cost the rest of the batch
                    await dead_letter(out, event.message, exc)
            # The partitions whose accounts were scored, not those of entity stages run here:
            # model_set would start a fresh model where the checkpoint was not yet restored.
            for partition in {partition for table, partition, _, _ in out.rows.values() if table is accounts}:
                if scorer.model_set(partition).due_for_checkpoint():
                    keep_models(out, partition)
            await out.deliver()  # before the batch's events are acked, when the next is taken

    async def score_one(out: Outbox, message) -> None:
        if message.topic == topics.DISPOSITIONS:
            learned = learn_disposition(out, message)
            if learned and order:
                await to_stages(out, *learned)
            return
        if message.topic == topics.TRANSACTIONS:
            forged = [name for name, _ in message.headers or () if name in topics.INTERNAL_HEADERS]
            if forged:  # the producer is misconfigured or tries to skip the entity stages
                raise InvalidRecord(f"header {forged[0]} is the worker's own, not accepted on {message.topic}")
        tx = parse(message.value)
        key = tx.account_id.encode()
        carried = signals_header(message)
        if not (message.key == key and topics.owning_partition(key, partitions) == message.partition):
            headers = [] if carried is None else [(topics.H_SIGNALS, encode_signals(carried))]
            await out.send(topics.REPARTITION, key, message.value, headers=headers)
            return
        state = accounts.get(tx.account_id) or {}
        out.changed(accounts, message.partition, tx.account_id, state)
        partition_models(message.partition)  # restores the partition's checkpoint on first use
        source = (message.partition, message.offset)
        repeated = tx.tx_id in state.get("recent", ())
        if not repeated and (earlier := decisions.published(decision_id(tx.account_id, tx.tx_id))) is not None:
            # Redelivered after more of the account's transactions than it remembers (a worker
            # killed before its offsets were committed): scored again, it would be scored
            # against a later history. It gets the answer it was published with.
            await publish(out, key, earlier)
            return
        if carried is None and order and not repeated:
            # The account's indicators first, here, in the order its transactions arrive; then
            # the entity stages, which may be in other workers, and a transaction that takes a
            # longer way must not overtake or be overtaken in the account's own history.
            carried = account_signals(state, tx)
            if await pass_on(out, tx, message.value, carried):
                return  # back on transactions.repartition with every signal
        if carried is None:
            record = scorer.score(tx, state, source)
        else:
            state.get("pending", {}).pop(tx.tx_id, None)
            record = scorer.decide(tx, state, carried, source)
        if not repeated:
            decisions.remember(out, message.partition, record, tx)
        await publish(out, key, record)

    async def publish(out: Outbox, key: bytes, record: dict) -> None:
        payload = orjson.dumps(record)
        await out.send(topics.SCORES, key, payload)
        if record["tier"]:
            await out.send(topics.ALERTS, key, payload)

    for entity in order:
        add_stage(app, scorer, entity, stage_topics[entity], stage_tables[entity], pass_on, parse)

    app.scorer = scorer
    return app


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


def ensure_worker_topics(settings: Settings, app: faust.App) -> None:
    """The pipeline's topics and the changelog topic of each of ``app``'s tables.

    Faust creates a table's changelog as its agents start and compares partition counts at
    once; read from metadata that has not seen the new topic yet, the count is 0 and the agent
    crashes with PartitionsMismatch, again at each restart (a stage table in 1 of 4 cold
    starts: its entity's transactions were never scored). Made here, they exist before Faust
    looks, compacted as Faust would make them.
    """
    from riskcockpit.ground.kafka import ensure_topics
    ensure_topics(settings.kafka.servers, settings.kafka.partitions, topics.ALL)
    ensure_topics(settings.kafka.servers, settings.kafka.partitions,
                  (*topics.COMPACTED, *(table.changelog_topic.get_topic_name() for table in app.tables.values())),
                  configs={"cleanup.policy": "compact"})


def publish_config(settings: Settings, scorer: Scorer) -> None:
    """The scoring config this worker runs, to ``risk.configs`` keyed by its hash: the store then
    keeps every config a decision names, and ``audit … --verify`` recomputes with it years later."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    record = {"config_hash": scorer.config_hash, "config": scorer.config.model_dump(mode="json"),
              "source": str(Path(settings.config_dir, SCORING_FILE).resolve()),
              "published_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    producer = KafkaProducer(bootstrap_servers=settings.kafka.servers, acks="all", **settings.kafka.client_configs())
    try:
        producer.send(topics.CONFIGS, key=scorer.config_hash.encode(), value=orjson.dumps(record)).get(timeout=30)
    finally:
        producer.close(timeout=5)


def run(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker until SIGTERM/SIGINT; several workers share the partitions."""
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = create_app(settings)
    ensure_worker_topics(settings, app)
    publish_config(settings, app.scorer)
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
                *(["--without-web"] if settings.worker.web_port is None else [])]
    app.main()
