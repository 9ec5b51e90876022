"""The sink's mapping from topic records to table rows, and its idempotent inserts into chdb."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from conftest import wait_for
from kafka.consumer.fetcher import ConsumerRecord

from riskcockpit.ground import topics
from riskcockpit.store.migrate import migrate
from riskcockpit.streams.sink import Sink, rows_by_table

pytestmark = pytest.mark.integration  # a real broker, store or processes


def message(topic, value, key=b"k", offset=0, headers=None):
    return ConsumerRecord(topic=topic, partition=0, leader_epoch=0, offset=offset, timestamp=1_767_225_600_000,
                          timestamp_type=0, key=key, value=value, headers=headers or [], checksum=None,
                          serialized_key_size=1, serialized_value_size=len(value or b""), serialized_header_size=0)


ACK = {"action_id": "a1", "alert_id": "T-1", "action": "acknowledge", "disposition": "", "actor": "ann",
       "comment": "on it", "at": "2026-11-22T01:00:00.000+00:00"}


def test_actions_become_action_rows_not_dlq_rows():
    rows = rows_by_table([message(topics.ACTIONS, json.dumps(ACK).encode())])
    assert "dlq" not in rows
    [row] = rows["actions"]
    assert row[:6] == ["a1", "T-1", "acknowledge", "", "ann", "on it"]
    assert row[6] == datetime(2026, 11, 22, 1, tzinfo=UTC)


def test_unreadable_result_record_is_kept_in_the_dlq_table():
    rows = rows_by_table([message(topics.SCORES, b"{broken", offset=7)])
    [row] = rows["dlq"]
    assert row[:3] == [topics.SCORES, 0, 7] and row[4] == b"{broken" and "could not read" in row[5]


def test_redelivered_action_is_stored_once(settings):
    from riskcockpit.store.client import connect

    client = connect(settings.store)
    migrate(client, settings.store.database)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    batch = rows_by_table([message(topics.ACTIONS, json.dumps(ACK).encode())])
    sink.write(batch)
    sink.write(batch)
    db = settings.store.database
    assert client.query(f"SELECT count() FROM {db}.actions FINAL").result_rows[0][0] == 1
    assert client.query(f"SELECT count() FROM {db}.actions").result_rows[0][0] <= 2


def test_sink_restarts_its_consumer_after_a_failure(settings):
    from riskcockpit.store.client import connect

    calls = []

    class FailingOnce(Sink):
        def _consume(self):
            calls.append(len(calls))
            if len(calls) == 1:
                raise RuntimeError("commit refused: the group rebalanced")
            self.stop()

    FailingOnce(settings.sink, settings.kafka, connect(settings.store), settings.store.database).run()
    assert calls == [0, 1]


def score_record(tx_id: str, **changes) -> dict:
    record = {"tx_id": tx_id, "account_id": "A1", "ts": "2026-11-22T01:00:00+00:00", "amount": 10.0,
              "currency": "CNY", "channel": "card", "direction": "debit", "country": "CN", "merchant_id": "",
              "counterparty_id": "", "device_id": "", "score": 12.0, "tier": 0, "reasons": [], "model_score": 0.0,
              "config_hash": "h", "scenario": "", "source_partition": 0, "source_offset": 0,
              "scored_at": "2026-11-22T01:00:01+00:00"}
    return {**record, **changes}


def test_a_row_the_store_refuses_goes_to_the_dlq_table_and_the_rest_is_stored(settings):
    """A poison row is not a store outage: retried forever, it would stop every table filling."""
    from riskcockpit.store.client import connect

    client = connect(settings.store)
    migrate(client, settings.store.database)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    messages = [message(topics.SCORES, json.dumps(score_record(f"t{i}")).encode(), offset=i) for i in range(9)]
    messages[5] = message(topics.SCORES, json.dumps(score_record("t5", amount="lots")).encode(), offset=5)
    done = threading.Thread(target=sink._insert_until_done, args=(rows_by_table(messages),), daemon=True)
    done.start()
    done.join(60)
    assert not done.is_alive(), "the sink is still retrying a row the store refuses"
    db = settings.store.database
    stored = client.query(f"SELECT tx_id FROM {db}.scores FINAL ORDER BY tx_id").result_rows
    assert [r[0] for r in stored] == [f"t{i}" for i in range(9) if i != 5]
    [(offset, reason, raw)] = client.query(f"SELECT source_offset, reason, raw FROM {db}.dlq FINAL").result_rows
    assert offset == 5 and "could not store a risk.scores record in scores" in reason and b"lots" in raw.encode()


class Outage:
    """The store's client with an outage in between: while ``down``, every call fails as a
    connection refused would (inserts and the health check alike)."""

    def __init__(self, client):
        self.client, self.down, self.refused = client, threading.Event(), 0

    def __getattr__(self, name):
        real = getattr(self.client, name)
        if name not in ("insert", "command", "query"):
            return real

        def call(*args, **kwargs):
            if self.down.is_set():
                self.refused += 1
                raise ConnectionRefusedError("store unreachable")
            return real(*args, **kwargs)
        return call


def test_a_store_outage_commits_nothing_past_what_was_stored_and_the_sink_resumes(fresh_kafka, env,
                                                                                    monkeypatch):
    """Nothing is stored while the store is down, no row is taken for poison then, and once it
    is back every record is stored exactly once, by the same sink, without a restart."""
    from kafka import KafkaAdminClient, KafkaProducer

    from riskcockpit.settings import load_settings
    from riskcockpit.store.client import connect

    monkeypatch.setenv("RISKCOCKPIT_KAFKA", fresh_kafka.bootstrap)
    settings = load_settings(**{"sink.max_wait_ms": 200})
    client = Outage(connect(settings.store))
    migrate(client.client, settings.store.database)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    thread = sink.start_thread()
    producer = KafkaProducer(bootstrap_servers=fresh_kafka.bootstrap, acks="all")
    db = settings.store.database

    def stored() -> int:
        return client.client.query(f"SELECT count() FROM {db}.scores FINAL").result_rows[0][0]

    def committed() -> int:
        admin = KafkaAdminClient(bootstrap_servers=fresh_kafka.bootstrap)
        try:
            offsets = admin.list_group_offsets(settings.sink.group_id).get(settings.sink.group_id, {})
            return sum(o.offset for tp, o in offsets.items() if tp.topic == topics.SCORES)
        finally:
            admin.close()

    try:
        for i in range(100):
            producer.send(topics.SCORES, key=b"A1", value=json.dumps(score_record(f"o{i}")).encode())
        producer.flush()
        wait_for(lambda: stored() == 100, 60, what="the first 100 rows")
        client.down.set()
        for i in range(100, 300):
            producer.send(topics.SCORES, key=b"A1", value=json.dumps(score_record(f"o{i}")).encode())
        producer.flush()
        time.sleep(8)  # the outage: the sink retries with backoff
        assert client.refused >= 2 and stored() == 100 and committed() == 100
        client.down.clear()
        wait_for(lambda: stored() == 300, 90, what="all 300 rows after the outage")
        wait_for(lambda: committed() == 300, 30, what="the offsets committed after the insert")
        assert client.client.query(f"SELECT count() FROM {db}.dlq FINAL").result_rows[0][0] == 0
    finally:
        producer.close()
        sink.stop()
        thread.join(30)
