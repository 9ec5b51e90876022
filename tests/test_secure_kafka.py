"""The pipeline against a secured broker (`riskcockpit kafka start --secure`): SASL/SCRAM, a
principal per component, ACLs. The worker and the sink run as real processes, each as its own
principal; an unauthenticated client and a component writing a topic it does not own are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_for
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from riskcockpit.broker import EmbeddedBroker, free_port
from riskcockpit.ground import topics
from riskcockpit.streams.generator import SyntheticStream

pytestmark = pytest.mark.integration  # a real broker, store or processes


@pytest.fixture
def secure_broker(tmp_path_factory):
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka-secure"), port=free_port(), controller_port=free_port(),
                            partitions=4, heap="512m", secure=True)
    broker.start()
    yield broker
    broker.stop()


def scores_of(broker: EmbeddedBroker) -> list[dict]:
    consumer = KafkaConsumer(topics.SCORES, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, **broker.client_configs("operator"))
    found = [json.loads(m.value) for m in consumer]
    consumer.close()
    return found


def test_the_pipeline_runs_on_a_secured_broker_and_refuses_who_may_not(secure_broker, processes, tmp_path):
    broker = secure_broker
    with pytest.raises(KafkaTimeoutError):  # no credentials: the SASL listener never lets it in
        KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=4000).send(topics.TRANSACTIONS, b"{}").get(5)

    def env(principal: str) -> dict[str, str]:
        return {"RISKCOCKPIT_KAFKA": broker.bootstrap, "RISKCOCKPIT_DATA_DIR": str(tmp_path / principal),
                **broker.environment(principal)}

    processes.start("worker", ["worker", "--loglevel", "warn"], env("worker"))
    processes.start("sink", ["sink"], env("sink"))
    records = list(SyntheticStream(seed=5, start=datetime.now(UTC) - timedelta(hours=1)).take(200))
    ingest = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", **broker.client_configs("ingest"))
    for record in records:
        ingest.send(topics.TRANSACTIONS, key=record["account_id"].encode(), value=json.dumps(record).encode())
    ingest.flush()
    # A producer of transactions may not write decisions, nor a worker the analysts' actions.
    with pytest.raises(TopicAuthorizationFailedError):
        ingest.send(topics.SCORES, b'{"tx_id": "forged"}').get(10)
    ingest.close()
    worker = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", **broker.client_configs("worker"))
    with pytest.raises(TopicAuthorizationFailedError):
        worker.send(topics.ACTIONS, b'{"action": "acknowledge"}').get(10)
    worker.close()

    wait_for(lambda: len(scores_of(broker)) >= 200, timeout=300, what="200 scores from the worker on SASL",
             processes=processes)
    assert {s["tx_id"] for s in scores_of(broker)} == {r["tx_id"] for r in records}
    # The sink commits its offsets only after the insert: all 200 are in its store.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, **broker.client_configs("operator"))

    def sunk() -> int:
        offsets = admin.list_group_offsets("riskcockpit-sink").get("riskcockpit-sink", {})
        return sum(o.offset for tp, o in offsets.items() if tp.topic == topics.SCORES)

    try:
        wait_for(lambda: sunk() >= 200, timeout=120, what="the sink's committed offsets", processes=processes)
    finally:
        admin.close()
    processes.assert_alive()
    assert "TopicAuthorizationFailed" not in processes.log("worker") + processes.log("sink")


def test_the_container_broker_takes_its_passwords_from_the_environment_and_stops_on_sigterm(processes, tmp_path):
    """What docker/compose.yaml's kafka service runs: in the foreground, on every interface,
    advertised under another name, with the passwords the deployment hands each component."""
    port, controller = free_port(), free_port()
    passwords = {principal: f"{principal}-pw-{port}" for principal in ("operator", "ingest", "worker", "sink",
                                                                        "cockpit", "notifier")}
    proc = processes.start("kafka", ["kafka", "start", "--secure", "--foreground"], {
        "RISKCOCKPIT_DATA_DIR": str(tmp_path / "data"), "RISKCOCKPIT_KAFKA__HOST": "0.0.0.0",
        "RISKCOCKPIT_KAFKA__ADVERTISED_HOST": "localhost", "RISKCOCKPIT_KAFKA__PORT": str(port),
        "RISKCOCKPIT_KAFKA__CONTROLLER_PORT": str(controller), "RISKCOCKPIT_KAFKA__HEAP": "512m",
        **{f"RISKCOCKPIT_KAFKA_PASSWORD_{p.upper()}": pw for p, pw in passwords.items()}})
    bootstrap = f"localhost:{port}"

    def as_ingest(password: str) -> dict:
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "ingest", "sasl_plain_password": password}

    wait_for(lambda: "ready: running" in processes.output(0), timeout=120,
             what="the foreground broker, its topics and ACLs", processes=processes)
    ingest = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **as_ingest(passwords["ingest"]))
    ingest.send(topics.TRANSACTIONS, b'{"tx_id": "t"}').get(10)
    ingest.close()
    with pytest.raises(KafkaTimeoutError):  # another password: not let in
        KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=4000, **as_ingest("guessed")).send(
            topics.TRANSACTIONS, b"{}").get(5)
    proc.terminate()
    proc.wait(60)
    assert not EmbeddedBroker(tmp_path / "x", port=port).answers()
    assert (tmp_path / "data" / "kafka" / "credentials.json").stat().st_mode & 0o077 == 0
