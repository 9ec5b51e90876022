"""The sink's mapping from topic records to table rows, and its idempotent inserts into chdb."""

import json
import threading
from datetime import UTC, datetime

from kafka.consumer.fetcher import ConsumerRecord

from store.migrate import migrate
from streams import topics
from streams.sink import Sink, rows_by_table


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
    from store.client import connect

    client = connect(settings)
    migrate(client, settings.store.database)
    sink = Sink(settings, client)
    batch = rows_by_table([message(topics.ACTIONS, json.dumps(ACK).encode())])
    sink.write(batch)
    sink.write(batch)
    db = settings.store.database
    assert client.query(f"SELECT count() FROM {db}.actions FINAL").result_rows[0][0] == 1
    assert client.query(f"SELECT count() FROM {db}.actions").result_rows[0][0] <= 2


def test_sink_restarts_its_consumer_after_a_failure(settings):
    from store.client import connect

    calls = []

    class FailingOnce(Sink):
        def _consume(self):
            calls.append(len(calls))
            if len(calls) == 1:
                raise RuntimeError("commit refused: the group rebalanced")
            self.stop()

    FailingOnce(settings, connect(settings)).run()
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
    from store.client import connect

    client = connect(settings)
    migrate(client, settings.store.database)
    sink = Sink(settings, client)
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
