"""People's actions through the real broker: what the audit stores and what the models learn."""

import json
import uuid

import pytest
from kafka import KafkaConsumer

from riskcockpit.ground import topics
from riskcockpit.streams.actions import ActionPublisher

pytestmark = pytest.mark.integration  # a real broker, store or processes


def read_back(bootstrap: str, topic: str, marker: str) -> list[dict]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=4000)
    found = [(m.key, json.loads(m.value)) for m in consumer if marker in m.value.decode()]
    consumer.close()
    return found


def test_disposition_goes_to_the_audit_and_to_the_models(kafka):
    alert_id = f"tx-{uuid.uuid4().hex[:8]}"
    publisher = ActionPublisher(kafka.bootstrap)
    publisher.publish({"action_id": uuid.uuid4().hex, "alert_id": alert_id, "action": "disposition",
                       "disposition": "confirmed_fraud", "actor": "bob", "comment": "", "at": "2026-11-22T01:00:00Z",
                       "account_id": "A77"})
    publisher.close()
    [(key, stored)] = read_back(kafka.bootstrap, topics.ACTIONS, alert_id)
    assert key == alert_id.encode() and "account_id" not in stored and stored["disposition"] == "confirmed_fraud"
    [(key, taught)] = read_back(kafka.bootstrap, topics.DISPOSITIONS, alert_id)
    # The verdict only: the worker teaches from its own record of the decision.
    assert key == b"A77" and taught["label"] == "confirmed_fraud" and taught["actor"] == "bob"
    assert "features" not in taught and "tx" not in taught


def test_acknowledgement_does_not_teach_the_models(kafka):
    alert_id = f"tx-{uuid.uuid4().hex[:8]}"
    publisher = ActionPublisher(kafka.bootstrap)
    publisher.publish({"action_id": uuid.uuid4().hex, "alert_id": alert_id, "action": "acknowledge",
                       "actor": "ann", "at": "2026-11-22T01:00:00Z"})
    publisher.close()
    assert len(read_back(kafka.bootstrap, topics.ACTIONS, alert_id)) == 1
    assert read_back(kafka.bootstrap, topics.DISPOSITIONS, alert_id) == []


@pytest.mark.parametrize("action, message", [
    ({"action": "disposition", "disposition": "maybe", "account_id": "A"}, "is not confirmed_fraud"),
    ({"action": "disposition", "disposition": "false_positive"}, "lacks account_id"),
    ({"action": "acknowledge", "actor": ""}, "lacks actor"),
])
def test_incomplete_actions_are_refused_before_sending(action, message):
    base = {"action_id": "a", "alert_id": "x", "actor": "ann", "at": "2026-11-22T01:00:00Z"}
    with pytest.raises(ValueError, match=message):
        ActionPublisher("127.0.0.1:1").publish(base | action)
