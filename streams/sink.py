"""The sink: result topics → ClickHouse, in batches, offsets committed only after the insert.

If an insert fails while the store does not answer, the batch is retried (with backoff) before
anything new is read, so nothing is skipped; if the process dies, Kafka redelivers from the
last commit and the ReplacingMergeTree tables collapse the repeats (queries read ``FINAL``).
If an insert fails while the store answers, a row is to blame, not the store: the batch is
split until the rows that fail alone are found, and those are kept in the ``dlq`` table with
their bytes and the store's error, so one poison record never stops the tables filling.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer

from riskcockpit.ground import topics
from riskcockpit.ground.contract import decision_id
from riskcockpit.ground.kafka import KafkaSettings, client_configs, ensure_topics, subscribe
from riskcockpit.store.migrate import migrate
from riskcockpit.streams.settings import SinkSettings

log = logging.getLogger("riskcockpit.sink")

SCORE_COLUMNS = ("tx_id", "account_id", "ts", "amount", "currency", "channel", "direction", "country",
                 "merchant_id", "counterparty_id", "device_id", "score", "tier", "reasons", "model_score",
                 "fraud_probability", "features", "regime", "label_free_score", "config_hash", "scenario",
                 "source_partition", "source_offset", "scored_at")
ALERT_COLUMNS = ("alert_id", "tx_id", "account_id", "ts", "amount", "direction", "currency", "channel", "country",
                 "merchant_id", "device_id", "counterparty_id", "score", "tier", "reasons", "model_score",
                 "fraud_probability", "features", "regime", "label_free_score", "config_hash", "scenario", "scored_at")
DLQ_COLUMNS = ("source_topic", "source_partition", "source_offset", "key", "raw", "reason", "received_at")
ACTION_COLUMNS = ("action_id", "alert_id", "action", "disposition", "actor", "comment", "at")
SILENCE_COLUMNS = ("event_id", "silence_id", "version", "event", "matchers", "starts_at", "ends_at", "created_by",
                   "comment", "changed_by", "changed_at", "change_comment")
DELIVERY_COLUMNS = ("attempt_id", "notification_id", "receiver", "receiver_type", "kind", "group_key", "attempt",
                    "status_code", "latency_ms", "error", "outcome", "alert_ids", "attempted_at")
CONFIG_COLUMNS = ("config_hash", "config", "source", "published_at")
TABLES = {"scores": SCORE_COLUMNS, "alerts": ALERT_COLUMNS, "dlq": DLQ_COLUMNS, "actions": ACTION_COLUMNS,
          "silences": SILENCE_COLUMNS, "deliveries": DELIVERY_COLUMNS, "configs": CONFIG_COLUMNS}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _result_row(record: dict[str, Any], columns: tuple[str, ...]) -> list[Any]:
    row = dict({"fraud_probability": -1.0, "features": {}, "regime": "label-free", "label_free_score": -1.0},
               **record)
    row.update(alert_id=record.get("alert_id") or decision_id(record["account_id"], record["tx_id"]),
               ts=_time(record["ts"]), scored_at=_time(record["scored_at"]),
               reasons=json.dumps(record["reasons"], ensure_ascii=False),
               features=json.dumps(row["features"], separators=(",", ":")))
    return [row[c] for c in columns]


def _dlq_row(message) -> list[Any]:
    headers = {k: v.decode("utf-8", "replace") for k, v in (message.headers or [])}
    return [
        headers.get(topics.H_SOURCE_TOPIC, ""),
        int(headers.get(topics.H_SOURCE_PARTITION, -1)),
        int(headers.get(topics.H_SOURCE_OFFSET, -1)),
        (message.key or b"").decode("utf-8", "replace"),
        message.value or b"",
        headers.get(topics.H_REASON, ""),
        datetime.fromtimestamp(int(headers.get(topics.H_SOURCE_TIMESTAMP, message.timestamp)) / 1000, UTC),
    ]


def _action_row(record: dict[str, Any]) -> list[Any]:
    row = {"disposition": "", "comment": "", **record, "at": _time(record["at"])}
    return [row[c] for c in ACTION_COLUMNS]


def _silence_row(record: dict[str, Any]) -> list[Any]:
    row = {"change_comment": "", **record, "matchers": json.dumps(record["matchers"], ensure_ascii=False),
           "starts_at": _time(record["starts_at"]), "ends_at": _time(record["ends_at"]),
           "changed_at": _time(record["changed_at"])}
    return [row[c] for c in SILENCE_COLUMNS]


def _delivery_row(record: dict[str, Any]) -> list[Any]:
    row = {**record, "alert_ids": json.dumps(record.get("alert_ids") or [], ensure_ascii=False),
           "attempted_at": _time(record["attempted_at"])}
    return [row[c] for c in DELIVERY_COLUMNS]


def _config_row(record: dict[str, Any]) -> list[Any]:
    return [record["config_hash"], json.dumps(record["config"], sort_keys=True), record["source"],
            _time(record["published_at"])]


def _unreadable_row(message, reason: str) -> list[Any]:
    """A dlq row made of the message's own metadata and bytes only: always storable."""
    return [message.topic, message.partition, message.offset, (message.key or b"").decode("utf-8", "replace"),
            message.value or b"", reason[:4096], datetime.fromtimestamp(message.timestamp / 1000, UTC)]


class Rows(defaultdict):
    """Rows per table, with the message each row came from (``origins``, in the same order)."""

    def __init__(self):
        super().__init__(list)
        self.origins: dict[str, list] = defaultdict(list)

    def add(self, table: str, row: list[Any], message) -> None:
        self[table].append(row)
        self.origins[table].append(message)


def rows_by_table(messages) -> Rows:
    """Map consumed messages to rows per table; a malformed result record lands in the DLQ table."""
    rows = Rows()
    for message in messages:
        try:
            if message.topic in topics.DEAD_LETTERS:
                rows.add("dlq", _dlq_row(message), message)
            elif message.topic == topics.SCORES:
                rows.add("scores", _result_row(json.loads(message.value), SCORE_COLUMNS), message)
            elif message.topic == topics.ALERTS:
                rows.add("alerts", _result_row(json.loads(message.value), ALERT_COLUMNS), message)
            elif message.topic == topics.ACTIONS:
                rows.add("actions", _action_row(json.loads(message.value)), message)
            elif message.topic == topics.SILENCES:
                rows.add("silences", _silence_row(json.loads(message.value)), message)
            elif message.topic == topics.DELIVERIES:
                rows.add("deliveries", _delivery_row(json.loads(message.value)), message)
            elif message.topic == topics.CONFIGS:
                rows.add("configs", _config_row(json.loads(message.value)), message)
        except Exception as exc:  # noqa: BLE001 - never drop what we cannot read: keep it for the DLQ audit
            rows.add("dlq", _unreadable_row(message, f"sink could not read a {message.topic} record: {exc!r}"), message)
    return rows


class Sink:
    def __init__(self, config: SinkSettings, kafka: KafkaSettings, client: Client, database: str):
        self.config, self.kafka = config, kafka
        self.client = client
        self.db = database
        self.stopping = threading.Event()
        self.inserted = defaultdict(int)

    def write(self, rows: dict[str, list[list[Any]]]) -> None:
        """Insert each table's rows as they are (one insert per table)."""
        for table, batch in rows.items():
            if batch:
                self.client.insert(f"{self.db}.{table}", batch, column_names=list(TABLES[table]))
                self.inserted[table] += len(batch)

    def run(self) -> None:
        """Consume until stopped. A failure (a refused commit after a rebalance, a broker gone)
        restarts the consumer from the last commit instead of ending the sink: inserts are
        idempotent, so the redelivered batch does no harm, and a dead sink would be silent."""
        migrate(self.client, self.db)
        delay = 1.0
        while not self.stopping.is_set():
            try:
                self._consume()
            except Exception:  # noqa: BLE001 - anything that stops consumption must be survived
                if self.stopping.is_set():
                    return
                log.exception("sink consumer failed; restarting from the last commit in %.0fs", delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)

    def _consume(self) -> None:
        s = self.config
        # Subscribing to a topic nobody has made yet (no notifier, no worker so far) would have the
        # broker create it, with the default cleanup policy: make them first, compacted where needed.
        servers, partitions = self.kafka.servers, self.kafka.partitions
        ensure_topics(servers, partitions, tuple(t for t in topics.SINK_TOPICS if t not in topics.COMPACTED))
        ensure_topics(servers, partitions, topics.COMPACTED, configs={"cleanup.policy": "compact"})
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            **client_configs(),
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_size,
            fetch_max_wait_ms=min(s.max_wait_ms, 500),
        )
        subscribe(consumer, topics.SINK_TOPICS)  # topics made later still cause a rebalance when they appear
        log.info("sink consuming %s into %s", ", ".join(topics.SINK_TOPICS), self.db)
        try:
            while not self.stopping.is_set():
                batch, deadline = [], time.monotonic() + s.max_wait_ms / 1000
                while len(batch) < s.batch_size and time.monotonic() < deadline and not self.stopping.is_set():
                    polled = consumer.poll(timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)),
                                           max_records=s.batch_size - len(batch))
                    for records in polled.values():
                        batch.extend(records)
                if batch:
                    self._insert_until_done(rows_by_table(batch))
                    consumer.commit()
        finally:
            consumer.close(autocommit=False)

    def _insert_until_done(self, rows: Rows) -> None:
        delay = 0.5
        while True:
            try:
                self._write_isolating(rows)
                return
            except Exception as exc:  # a store outage must not lose or skip the batch
                if self.stopping.is_set():
                    raise
                log.warning("insert failed, retrying in %.1fs: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 30)

    def _answers(self) -> bool:
        try:
            self.client.command("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - whatever the reason, the store is not answering
            return False

    def _write_isolating(self, rows: Rows) -> None:
        """Write every table's rows; a row the store refuses while it answers goes to the dlq
        table instead. Raises while the store does not answer (the caller retries it all:
        what was inserted already collapses with its repeat)."""
        poison: list[list[Any]] = []
        for table, batch in rows.items():
            if batch:
                poison += self._insert_or_split(table, batch, rows.origins.get(table) or [None] * len(batch))
        if poison:
            self.write({"dlq": poison})

    def _insert_or_split(self, table: str, batch: list, origins: list) -> list[list[Any]]:
        try:
            self.write({table: batch})
            return []
        except Exception as exc:
            if not self._answers():
                raise
            if len(batch) == 1:
                if origins[0] is None:
                    raise
                log.error("%s row of %s/%d/%d refused by the store, kept in dlq: %s", table, origins[0].topic,
                          origins[0].partition, origins[0].offset, exc)
                return [_unreadable_row(origins[0], f"sink could not store a {origins[0].topic} record "
                                                    f"in {table}: {type(exc).__name__}: {exc}")]
        half = len(batch) // 2
        return (self._insert_or_split(table, batch[:half], origins[:half])
                + self._insert_or_split(table, batch[half:], origins[half:]))

    def stop(self) -> None:
        self.stopping.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="riskcockpit-sink", daemon=True)
        thread.start()
        return thread
