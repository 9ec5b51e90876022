"""Generator → Kafka → Faust worker → sink → ClickHouse, on a real broker and chdb.

Each test gets a broker of its own (it reads whole topics) and a database of its own in the
session's chdb store; the worker runs as a real ``riskcockpit worker`` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import crashed_agent, wait_for
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import CoordinatorNotAvailableError

from riskcockpit.ground import topics
from riskcockpit.ground.kafka import ensure_topics
from riskcockpit.indicators.scoring import ScoringConfig, load_scoring_config, recompute
from riskcockpit.settings import load_settings
from riskcockpit.store.client import connect
from riskcockpit.store.migrate import migrate
from riskcockpit.streams import checkpoints
from riskcockpit.streams.generator import SyntheticStream
from riskcockpit.streams.sink import Sink

pytestmark = pytest.mark.integration  # a real broker, store or processes


@pytest.fixture
def stack(fresh_kafka, env, processes, tmp_path, monkeypatch):
    """Settings on the fresh broker, a running in-process sink, and a way to start workers."""
    monkeypatch.setenv("RISKCOCKPIT_KAFKA", fresh_kafka.bootstrap)
    settings = load_settings(**{"sink.max_wait_ms": 200})
    ensure_topics(settings.kafka.servers, settings.kafka.partitions, topics.ALL)
    client = connect(settings.store)
    migrate(client, settings.store.database)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    thread = sink.start_thread()
    worker_env = {"RISKCOCKPIT_KAFKA": fresh_kafka.bootstrap, "RISKCOCKPIT_DATA_DIR": str(tmp_path / "worker")}

    class Stack:
        pass

    s = Stack()
    s.settings, s.client, s.db, s.sink, s.processes = settings, client, settings.store.database, sink, processes
    s.start_worker = lambda: processes.start("worker", ["worker", "--loglevel", "warn"], worker_env)
    s.count = lambda table, where="1": client.query(f"SELECT count() FROM {s.db}.{table} FINAL WHERE {where}").result_rows[0][0]
    yield s
    sink.stop()
    thread.join(10)


def produce(bootstrap, items):
    """items: (key, value bytes); returns the (partition, offset) of each, in order."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [producer.send(topics.TRANSACTIONS, key=key, value=value) for key, value in items]
    producer.flush()
    meta = [f.get(timeout=30) for f in futures]
    producer.close()
    return [(m.partition, m.offset) for m in meta]


def records(bootstrap: str, topic: str) -> list:
    """Every record of ``topic`` so far."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    found = list(consumer)
    consumer.close()
    return found


def generated(n, seed, start=None):
    start = start or datetime.now(UTC) - timedelta(hours=1)
    return [(r["account_id"].encode(), json.dumps(r).encode()) for r in SyntheticStream(seed=seed, start=start).take(n)]


MALFORMED = [
    (b"{not json", "not JSON"),
    (json.dumps({"tx_id": "m1", "ts": 1767225600000, "account_id": "A1"}).encode(), "amount: required field missing"),
    (json.dumps({"tx_id": "m2", "ts": 1767225600000, "account_id": "A1", "amount": 0}).encode(), "greater than 0"),
    (b'{"tx_id":"m3","ts":1767225600000,"account_id":"A1","amount":NaN}', "finite number"),
    (json.dumps({"tx_id": "m4", "ts": 1767225600, "account_id": "A1", "amount": 5}).encode(), "seconds given?"),
    (json.dumps({"tx_id": "m5", "ts": "2026-01-01T00:00:00", "account_id": "A1", "amount": 5}).encode(), "needs a zone"),
    (json.dumps({"tx_id": "m6", "ts": 1767225600000, "account_id": "A1", "amount": "5"}).encode(), "valid number"),
    (b"[1,2,3]", "not a JSON object"),
    (b"x" * 70_000, "oversized"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
]


def test_valid_records_scored_once_and_malformed_ones_in_the_dlq(stack):
    valid = generated(600, seed=21)
    # What kcat or kafka-console-producer sends: required fields only, no key at all.
    bare = json.dumps({"tx_id": "kcat-1", "ts": datetime.now(UTC).isoformat(), "account_id": "A000042",
                       "amount": 99.5}).encode()
    wrong_key = json.dumps({"tx_id": "wrong-key-1", "ts": int(time.time() * 1000), "account_id": "A000043",
                            "amount": 10}).encode()
    items, bad_positions = [], []
    for i, item in enumerate(valid):
        items.append(item)
        if i % 60 == 0 and i // 60 < len(MALFORMED):
            bad_positions.append(len(items))
            items.append((f"bad-{i}".encode(), MALFORMED[i // 60][0]))
    items += [(None, bare), (b"someone-else", wrong_key)]
    positions = produce(stack.settings.kafka.servers, items)
    stack.start_worker()

    expected_scores = len(valid) + 2
    wait_for(lambda: stack.count("scores") >= expected_scores and stack.count("dlq") >= len(MALFORMED),
             timeout=300, what="all scores and DLQ rows in ClickHouse", processes=stack.processes)
    time.sleep(2)  # let anything extra (duplicates, strays) arrive before counting exactly
    assert stack.count("scores") == expected_scores
    distinct = stack.client.query(f"SELECT uniqExact(tx_id) FROM {stack.db}.scores FINAL").result_rows[0][0]
    assert distinct == expected_scores
    assert stack.count("scores", "tx_id IN ('kcat-1', 'wrong-key-1')") == 2

    rows = stack.client.query(
        f"SELECT source_partition, source_offset, raw, reason FROM {stack.db}.dlq FINAL ORDER BY source_offset"
    ).result_rows
    assert len(rows) == len(MALFORMED)
    by_position = {(p, o): (raw, reason) for p, o, raw, reason in rows}
    for index, (payload, fragment) in zip(bad_positions, MALFORMED, strict=True):
        raw, reason = by_position[positions[index]]
        raw_bytes = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
        assert fragment in reason, reason
        if fragment not in ("not UTF-8",):
            assert raw_bytes == payload

    # An auditor's check, from the store alone: each stored decision recomputes from its reasons
    # and the config it names (the score column is Float32, hence the rounding).
    config = load_scoring_config(stack.settings.config_dir)
    stored = stack.client.query(f"SELECT reasons, config_hash, score, tier FROM {stack.db}.scores FINAL").result_rows
    assert len(stored) == expected_scores and any(tier for *_, tier in stored)
    for reasons, config_hash, score, tier in stored:
        assert recompute({"reasons": reasons, "config_hash": config_hash}, config) == (round(score, 2), tier), reasons
    # The worker published the config it ran; the store keeps it by its hash.
    [(config_hash, text)] = stack.client.query(f"SELECT config_hash, config FROM {stack.db}.configs FINAL").result_rows
    assert config_hash == config.hash == ScoringConfig.model_validate(json.loads(text)).hash


def test_six_poisons_among_one_accounts_transactions_cost_nothing(stack):
    """One account, so every record lands in one partition and the same batches: a record that
    broke its handling once made Faust ack the rest of its batch unscored. Each poison is
    dead-lettered with its reason; all 600 valid transactions are scored."""
    start = datetime.now(UTC) - timedelta(hours=2)
    valid = [json.dumps({"tx_id": f"one-{i}", "ts": (start + timedelta(seconds=10 * i)).isoformat(),
                         "account_id": "A-ONE", "amount": 20.0 + i % 7, "merchant_id": f"M{i % 5}"}).encode()
             for i in range(600)]
    good = {"tx_id": "poison", "ts": start.isoformat(), "account_id": "A-ONE", "amount": 5.0}
    poisons = [
        (b'{"tx_id": "p1", "account_id": "A-ONE", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", None,
         "nested deeper than"),
        (json.dumps({**good, "tx_id": "p2"}).encode().replace(b"5.0", b"5" * 5000), None, "a number of 5000 digits"),
        (json.dumps({**good, "tx_id": "p3", "ts": "0001-01-01T00:00:00+14:00"}).encode(), None, "does not fit a date"),
        (json.dumps({**good, "tx_id": "p4"}).encode(), [(topics.H_SIGNALS, b'[["no_such_indicator", 1, true, "x"]]')],
         "header x-riskcockpit-signals is the worker's own"),
        (json.dumps({**good, "tx_id": "p5"}).encode()[:-1] + b', "amount": 6.0}', None, "amount: key given more than once"),
        (json.dumps({**good, "tx_id": "p6\x00"}).encode(), None, "tx_id: control character in an id"),
    ]
    items = []
    for i, value in enumerate(valid):
        items.append((b"A-ONE", value, None))
        if i % 100 == 50:
            payload, headers, _ = poisons[i // 100]
            items.append((b"A-ONE", payload, headers))
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka.servers, acks="all", max_request_size=2 ** 20)
    for key, value, headers in items:
        producer.send(topics.TRANSACTIONS, key=key, value=value, headers=headers or [])
    producer.flush()
    producer.close()
    stack.start_worker()
    wait_for(lambda: stack.count("scores") >= 600 and stack.count("dlq") >= 6, timeout=300,
             what="600 scores and 6 DLQ rows", processes=stack.processes)
    time.sleep(2)
    assert stack.count("scores", "account_id = 'A-ONE'") == 600 == stack.count("scores")
    reasons = [r[0] for r in stack.client.query(f"SELECT reason FROM {stack.db}.dlq FINAL "
                                                 "ORDER BY source_offset").result_rows]
    assert len(reasons) == 6
    for reason, (_, _, fragment) in zip(reasons, poisons, strict=True):
        assert fragment in reason, reason
    assert crashed_agent(stack.processes.log("worker")) is None


def test_worker_killed_midstream_resumes_with_state_and_loses_nothing(stack):
    bootstrap = stack.settings.kafka.servers
    now = datetime.now(UTC)
    # Six quick payments of one account before the crash; the seventh, after, must still see them.
    burst = [(b"STATE-1", json.dumps({"tx_id": f"state-{i}", "ts": (now - timedelta(minutes=6 - i)).isoformat(),
                                       "account_id": "STATE-1", "amount": 20.0}).encode()) for i in range(6)]
    produce(bootstrap, burst)
    worker = stack.start_worker()
    wait_for(lambda: stack.count("scores", "account_id = 'STATE-1'") == 6, timeout=120, what="burst scored", processes=stack.processes)

    stream = generated(6000, seed=22, start=now - timedelta(minutes=30))
    done = threading.Event()
    sent = []

    def feed():
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        for i, (key, value) in enumerate(stream):
            sent.append(producer.send(topics.TRANSACTIONS, key=key, value=value))
            if i % 100 == 0:
                time.sleep(0.1)  # ~1,000 tx/s, so the kill lands mid-stream
        producer.flush()
        producer.close()
        done.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(lambda: stack.count("scores") > 1500, timeout=120, what="worker to be mid-stream", processes=stack.processes)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = stack.count("scores")
    assert killed_at < 6 + len(stream), "the kill came too late to test anything"
    stack.start_worker()
    feeder.join()
    failed = [f.exception for f in sent if f.failed()]
    assert not failed, f"the feeder could not deliver {len(failed)} transactions, first: {failed[0]!r}"
    after = (b"STATE-1", json.dumps({"tx_id": "state-after", "ts": now.isoformat(), "account_id": "STATE-1",
                                     "amount": 20.0}).encode())
    produce(bootstrap, [after])

    total = 6 + len(stream) + 1
    try:
        wait_for(lambda: stack.count("scores") >= total, timeout=240, what=f"{total} scores after the restart",
                 processes=stack.processes)
    except AssertionError as exc:  # lost by the worker, or not yet stored by the sink?
        def located(topic):  # (partition, offset, tx_id) of every record in ``topic``
            return [(m.partition, m.offset, json.loads(m.value)["tx_id"]) for m in records(bootstrap, topic)]

        in_topic = {tx_id for _, _, tx_id in located(topics.SCORES)}
        missing = {json.loads(v)["tx_id"] for _, v in [*burst, *stream, after]} - in_topic
        # Where the missing ones last were: the hop that lost them.
        seen = {topic: sorted(r for r in located(topic) if r[2] in missing)[:10]
                for topic in (topics.TRANSACTIONS, *topics.BY_ENTITY.values(), topics.REPARTITION)}
        raise AssertionError(f"{len(in_topic)} distinct tx_ids in {topics.SCORES}, {stack.count('scores')} stored; "
                             f"missing from the topic: {sorted(missing)[:20]} ({len(missing)}); "
                             f"where they were (partition, offset, tx_id): {seen}\n{exc}") from None
    time.sleep(2)
    assert stack.count("scores") == total
    assert stack.client.query(f"SELECT uniqExact(tx_id) FROM {stack.db}.scores FINAL").result_rows[0][0] == total
    seen = json.loads(stack.client.query(
        f"SELECT features FROM {stack.db}.scores FINAL WHERE tx_id = 'state-after'").result_rows[0][0])
    assert seen["count_velocity"] == 7, seen  # the six before the crash were restored

    consumer = KafkaConsumer(topics.SCORES, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    answers, delivered = {}, 0
    for m in consumer:
        record = json.loads(m.value)
        answers.setdefault((record["account_id"], record["tx_id"]), set()).add((record["score"], record["tier"]))
        delivered += 1
    consumer.close()
    assert delivered >= total  # redeliveries may repeat in the topic; the store shows each once
    # A redelivered transaction is answered as it was the first time, even after more of its
    # account's transactions than the account state remembers.
    two_ways = {key: answer for key, answer in answers.items() if len(answer) > 1}
    assert not two_ways, f"{len(two_ways)} transactions answered two ways, e.g. {list(two_ways.items())[:3]}"


def test_a_broker_outage_midstream_loses_nothing_and_answers_each_transaction_once(stack, fresh_kafka):
    """The broker stops under a running worker and sink, and starts again: the worker, whose
    delivery fails, exits without acking and is started again (as its supervisor would), the sink
    resumes by itself; every transaction is stored once and no transaction gets two answers."""
    bootstrap = stack.settings.kafka.servers
    stream = generated(4000, seed=23)
    produce(bootstrap, stream)
    worker = stack.start_worker()
    wait_for(lambda: stack.count("scores") > 800, timeout=180, what="worker to be mid-stream", processes=stack.processes)
    fresh_kafka.stop()
    time.sleep(15)
    fresh_kafka.start()
    deadline, restarts = time.monotonic() + 300, 0
    while stack.count("scores") < len(stream) and time.monotonic() < deadline:
        if worker.poll() is not None:
            worker, restarts = stack.start_worker(), restarts + 1
        time.sleep(1)
    assert stack.count("scores") == len(stream), (f"{stack.count('scores')} of {len(stream)} stored after the "
                                                  f"outage ({restarts} worker restarts)\n{stack.processes.tails()}")
    assert stack.client.query(f"SELECT uniqExact(tx_id) FROM {stack.db}.scores FINAL").result_rows[0][0] == len(stream)
    answers = {}
    for m in records(bootstrap, topics.SCORES):
        record = json.loads(m.value)
        answers.setdefault((record["account_id"], record["tx_id"]), set()).add((record["score"], record["tier"]))
    assert len(answers) == len(stream)
    two_ways = {key: answer for key, answer in answers.items() if len(answer) > 1}
    assert not two_ways, f"{len(two_ways)} transactions answered two ways, e.g. {list(two_ways.items())[:3]}"


def group_members(bootstrap: str, group: str = "riskcockpit") -> int:
    """Members of the workers' consumer group once it is stable (0 while it rebalances, or
    before the group has a coordinator)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
    except CoordinatorNotAvailableError:
        return 0
    finally:
        admin.close()
    return len(described["members"]) if described["group_state"] == "Stable" else 0


def test_entity_stages_keep_each_entitys_state_in_one_place_across_two_workers_and_survive_a_restart(stack):
    """Two workers share the partitions. Three accounts on different partitions meet at one
    device: its state lives with the worker that owns the device's partition, which runs the
    stage for its own accounts and gets the other worker's over ``transactions.by_device``.
    Two confirmed frauds at a merchant (dispositions, through Kafka) make it compromised, and
    the merchant's state comes back from its changelog when one worker restarts alone."""
    bootstrap = stack.settings.kafka.servers
    partitions = stack.settings.kafka.partitions
    now = datetime.now(UTC) - timedelta(minutes=30)

    def tx(i, account, **fields):
        return (account.encode(), json.dumps({"tx_id": f"ent-{i}", "ts": (now + timedelta(seconds=i)).isoformat(),
                                              "account_id": account, "amount": 120.0, **fields}).encode())

    # Accounts on three different partitions: whichever two of the four the device's owner
    # has, at least one account belongs to the other worker, and one to the owner.
    by_partition = {}
    for i in range(50):
        by_partition.setdefault(topics.owning_partition(f"DEV-{i}".encode(), partitions), f"DEV-{i}")
    accounts = list(by_partition.values())[:3]
    shared_device = [tx(i, account, device_id="D-SHARED") for i, account in enumerate(accounts)]
    at_merchant = [tx(10 + i, f"SHOP-{i}", merchant_id="M-BAD", direction="debit") for i in range(6)]
    workers = [stack.start_worker(), stack.start_worker()]
    wait_for(lambda: group_members(bootstrap) == 2, timeout=180, what="two workers in a stable group",
             processes=stack.processes)
    produce(bootstrap, shared_device + at_merchant)
    # Up to three hops (ingest, entity stage, account stage) on two cold workers: be patient.
    wait_for(lambda: stack.count("scores", "tx_id LIKE 'ent-%'") == 9, timeout=300, what="9 scores",
             processes=stack.processes)

    def reasons(tx_id):
        rows = stack.client.query(f"SELECT reasons, features FROM {stack.db}.scores FINAL WHERE tx_id = '{tx_id}'")
        stored, features = rows.result_rows[0]
        return {r["indicator"]: r for r in json.loads(stored)}, json.loads(features)

    # The device's stage may see the three accounts in any order; it counts the accounts it
    # has seen, so the values are 1, 2, 3 in its order: one state, whichever worker scored.
    shared = {f"ent-{i}": reasons(f"ent-{i}") for i in range(3)}
    assert sorted(features["device_shared"] for _, features in shared.values()) == [1.0, 2.0, 3.0]
    third = next(hits for hits, features in shared.values() if features["device_shared"] == 3)
    assert "device D-SHARED: 3 accounts" in third["device_shared"]["reason"]
    assert reasons("ent-10")[1]["device_shared"] is None
    assert shared["ent-0"][1]["merchant_compromise"] is None  # no merchant on that one: not applicable
    hopped = [json.loads(m.value)["tx_id"] for m in records(bootstrap, topics.BY_ENTITY["device"])]
    assert 1 <= len(hopped) <= 2, f"{hopped} went to the device's owner over Kafka"

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in (10, 11):  # the cockpit's disposition message; a merchant it claims is not believed
        producer.send(topics.DISPOSITIONS, key=f"SHOP-{i - 10}".encode(), value=json.dumps({
            "tx_id": f"ent-{i}", "account_id": f"SHOP-{i - 10}", "label": "confirmed_fraud",
            "tx": {"ts": now.isoformat(), "amount": 1.0, "merchant_id": "M-OTHER"}}).encode())
    producer.flush()
    producer.close()

    def verdicts_kept() -> list:
        """The confirmed frauds the merchant's latest changelog record remembers."""
        latest = {}
        for m in records(bootstrap, "riskcockpit-merchant_state-changelog"):
            latest[m.key] = json.loads(m.value)
        return latest.get(b'"M-BAD"', {}).get("ind", {}).get("merchant_compromise", {}).get("l", [])

    wait_for(lambda: sorted(verdicts_kept()) == ["ent-10", "ent-11"], timeout=60,
             what="the merchant's state with both verdicts in its changelog", processes=stack.processes)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(60)
    stack.start_worker()
    produce(bootstrap, [tx(20, "SHOP-9", merchant_id="M-BAD", direction="debit")])
    wait_for(lambda: stack.count("scores", "tx_id = 'ent-20'") == 1, timeout=120, what="the purchase after restart",
             processes=stack.processes)
    hit = reasons("ent-20")[0]["merchant_compromise"]
    assert hit["value"] == 2 and "merchant M-BAD: 2 confirmed frauds" in hit["reason"], hit


def test_dispositions_teach_the_worker_and_models_survive_a_restart(fresh_kafka, env, processes, tmp_path,
                                                                    monkeypatch):
    """One partition, so every disposition reaches the same model set; a checkpoint every 200.
    The verdicts come as a bank's label file through `riskcockpit labels`, naming decisions only:
    the worker teaches from its own record of them."""
    import shutil

    import yaml
    from click.testing import CliRunner

    from riskcockpit.cli import cli
    from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR

    config_dir = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config_dir)
    scoring = yaml.safe_load((config_dir / "indicators.yaml").read_text())
    scoring["models"]["checkpoint_every"] = 200
    scoring["models"]["supervised"]["min_labels"] = 2
    (config_dir / "indicators.yaml").write_text(yaml.safe_dump(scoring))
    for key, value in {"RISKCOCKPIT_KAFKA": fresh_kafka.bootstrap, "RISKCOCKPIT_KAFKA__PARTITIONS": "1",
                       "RISKCOCKPIT_CONFIG_DIR": str(config_dir)}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(**{"sink.max_wait_ms": 200})
    ensure_topics(settings.kafka.servers, 1, topics.ALL)
    client = connect(settings.store)
    migrate(client, settings.store.database)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    thread = sink.start_thread()
    db = settings.store.database
    worker_env = {"RISKCOCKPIT_KAFKA": fresh_kafka.bootstrap, "RISKCOCKPIT_KAFKA__PARTITIONS": "1",
                  "RISKCOCKPIT_CONFIG_DIR": str(config_dir), "RISKCOCKPIT_DATA_DIR": str(tmp_path / "w")}

    def scored(where="1"):
        return client.query(f"SELECT count() FROM {db}.scores FINAL WHERE {where}").result_rows[0][0]

    try:
        stream = generated(1000, seed=31)
        produce(settings.kafka.servers, stream[:600])
        worker = processes.start("worker", ["worker"], worker_env)
        # Cold worker, three entity hops, a loaded CI machine: as the entity-stage test, up to 300 s.
        wait_for(lambda: scored() >= 600, timeout=300, what="600 scores", processes=processes)
        latest = client.query(f"SELECT tx_id, account_id FROM {db}.scores FINAL ORDER BY source_offset DESC "
                              "LIMIT 6").result_rows
        mapping = tmp_path / "labels.yaml"
        mapping.write_text("columns: {tx_id: ref, account_id: card, label: outcome}\n")
        chargebacks = tmp_path / "chargebacks.csv"
        chargebacks.write_text("ref,card,outcome\n" + "".join(
            f"{tx_id},{account},{'fraud' if i % 2 else 'legit'}\n" for i, (tx_id, account) in enumerate(latest))
            + "never-scored,A-0,fraud\n")
        for _ in range(2):  # the second run of the same file teaches nothing again
            result = CliRunner().invoke(cli, ["labels", str(chargebacks), "--mapping", str(mapping), "--quiet"])
            assert result.exit_code == 0 and "published 7 labels (4 fraud)" in result.output, result.output
        # The batch that taught the models checkpoints them, before any transaction follows: a
        # worker killed now restores models that hold the labels its record of decisions marks.
        def last_checkpoint_labels():
            rows = records(settings.kafka.servers, "riskcockpit-models-changelog")
            return rows and checkpoints.decode(json.loads(rows[-1].value), scoring_config.models).labels
        scoring_config = load_scoring_config(config_dir)
        wait_for(lambda: last_checkpoint_labels() == {True: 3, False: 3}, timeout=60,
                 what="a checkpoint with the six labels", processes=processes)
        producer = KafkaProducer(bootstrap_servers=settings.kafka.servers, acks="all")
        producer.send(topics.DISPOSITIONS, key=b"x", value=b'{"tx_id": "nope", "account_id": "x", "label": "maybe"}')
        producer.flush()
        producer.close()
        produce(settings.kafka.servers, stream[600:900])  # passes a checkpoint after the dispositions
        wait_for(lambda: scored() >= 900, timeout=120, what="900 scores", processes=processes)
        taught = client.query(f"SELECT count() FROM {db}.scores FINAL WHERE fraud_probability >= 0").result_rows[0][0]
        assert taught > 0, "the supervised model never contributed after six dispositions"
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        processes.start("worker", ["worker"], worker_env)
        produce(settings.kafka.servers, stream[900:])
        # The restart first recovers five tables from their changelogs (120 s ran out once in CI).
        wait_for(lambda: scored() >= 1000, timeout=300, what="1000 scores", processes=processes)
        restarted_log = processes.log("worker").split("models restored")
        assert len(restarted_log) > 1, "the restarted worker did not restore its models"
        last = ", ".join(f"'{json.loads(value)['tx_id']}'" for _, value in stream[900:])
        # Still taught after the restart. (source_offset is the account stage's input, which is
        # transactions.repartition for a record that went through an entity stage.)
        assert scored(f"tx_id IN ({last}) AND fraud_probability >= 0") == 100
        first_run = processes.log("worker").split("models restored")[0]
        assert first_run.count("already learned as") == 6
        # What could not be applied is dead-lettered with the reason, once per record sent.
        wait_for(lambda: client.query(f"SELECT count() FROM {db}.dlq FINAL").result_rows[0][0] >= 3, timeout=60,
                 what="the dispositions not applied, in the dlq table")
        dead = sorted(client.query(f"SELECT source_topic, reason FROM {db}.dlq FINAL").result_rows)
        assert len(dead) == 3 and {topic for topic, _ in dead} == {topics.DISPOSITIONS}
        assert "label: 'maybe' is not confirmed_fraud or false_positive" in dead[0][1]
        assert all("(tx never-scored of account A-0) is kept in partition 0" in reason for _, reason in dead[1:])
        # One worker owns every partition, so it ran each entity stage itself: nothing hopped.
        for topic in topics.BY_ENTITY.values():
            assert records(settings.kafka.servers, topic) == [], f"records went through {topic}"
    finally:
        sink.stop()
        thread.join(10)


def test_worker_makes_its_tables_changelogs_compacted_and_co_partitioned_before_faust_starts(kafka, env,
                                                                                                 monkeypatch):
    """Left to Faust, a changelog made as the agents start was once read as having 0 partitions,
    and that stage's agent crashed at every restart."""
    from riskcockpit.streams.worker import create_app, ensure_worker_topics

    app_id = f"cl-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RISKCOCKPIT_KAFKA", kafka.bootstrap)
    monkeypatch.setenv("RISKCOCKPIT_WORKER__APP_ID", app_id)
    settings = load_settings()
    app = create_app(settings.worker, settings.kafka, settings.config_dir, settings.faust_dir)
    ensure_worker_topics(settings.kafka, app)

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        names = sorted(t for t in admin.list_topics() if t.startswith(app_id))
        assert names == sorted(f"{app_id}-{table}-changelog" for table in (
            "accounts", "models", "decisions", "merchant_state", "device_state", "counterparty_state"))
        assert {len(t["partitions"]) for t in admin.describe_topics(names)} == {settings.kafka.partitions}
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, configs=["cleanup.policy"])
                                            for n in names])["topic"]
        assert {n: described[n]["cleanup.policy"]["value"] for n in names} == dict.fromkeys(names, "compact")
    finally:
        admin.close()


def test_a_sink_alone_makes_the_topics_it_reads_compacted_where_kept_by_key(fresh_kafka, env, monkeypatch):
    """With no worker or notifier yet, subscribing would have the broker create risk.silences and
    risk.configs with the default policy (delete), and old silences and configs would expire."""
    monkeypatch.setenv("RISKCOCKPIT_KAFKA", fresh_kafka.bootstrap)
    settings = load_settings()
    client = connect(settings.store)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    thread = sink.start_thread()
    admin = KafkaAdminClient(bootstrap_servers=fresh_kafka.bootstrap)
    try:
        wait_for(lambda: set(topics.SINK_TOPICS) <= set(admin.list_topics()), timeout=60, what="the sink's topics")
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, configs=["cleanup.policy"])
                                            for n in topics.SINK_TOPICS])["topic"]
        # Only a topic's own settings are listed; none means the broker's default, delete.
        policies = {n: described[n].get("cleanup.policy", {}).get("value", "delete") for n in topics.SINK_TOPICS}
        assert policies == {n: "compact" if n in (topics.SILENCES, topics.CONFIGS) else "delete"
                            for n in topics.SINK_TOPICS}
    finally:
        admin.close()
        sink.stop()
        thread.join(10)


def test_a_decision_the_broker_refuses_stops_the_worker_and_is_scored_after_the_restart(stack, tmp_path):
    """risk.scores refuses every record (max.message.bytes below a decision's size): the worker
    must exit without committing, and a worker started once the topic accepts them again scores
    every transaction; none is skipped."""
    def scores_limit(limit: str) -> None:
        admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka.servers)
        try:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topics.SCORES,
                                                configs={"max.message.bytes": limit})])
        finally:
            admin.close()

    scores_limit("200")
    stream = generated(60, seed=41)
    produce(stack.settings.kafka.servers, stream)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | {
        "RISKCOCKPIT_KAFKA": stack.settings.kafka.servers, "RISKCOCKPIT_DATA_DIR": str(tmp_path / "refused")}
    log = tmp_path / "refused.log"
    with open(log, "wb") as out:
        refused = subprocess.Popen([sys.executable, "-m", "riskcockpit", "worker", "--loglevel", "warn"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        try:
            code = refused.wait(300)
        finally:
            if refused.poll() is None:
                refused.kill()
    output = log.read_text(errors="replace")
    assert code == 70, output[-3000:]
    assert "delivery failed" in output
    assert stack.count("scores") == 0

    scores_limit("1048588")  # Kafka's default
    stack.start_worker()
    wait_for(lambda: stack.count("scores") >= len(stream), timeout=120, what=f"{len(stream)} scores after the restart",
             processes=stack.processes)
    assert stack.count("scores") == len(stream)
