"""The sink's mapping from topic records to table rows, and its idempotent inserts into chdb."""

import json
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
