"""Alert notifications end to end on a real Kafka broker and a real HTTP receiver on loopback:
grouping, inhibition, silences (through the commands), escalation, an outage of the receiver,
the dead-letter topic, the deliveries audit in ClickHouse, and a SIGKILLed notifier process.

Each test has a broker of its own (the notifier reads whole topics)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from conftest import wait_for
from kafka import KafkaProducer

from riskcockpit.alerting import bus
from riskcockpit.alerting.config import parse
from riskcockpit.alerting.delivery import DeliveryService
from riskcockpit.alerting.notifier import NotifierService
from riskcockpit.alerting.signing import verify
from riskcockpit.alerting.testing import RecordingReceiver
from riskcockpit.cli import Context
from riskcockpit.cmd_alerting import silence
from riskcockpit.ground import topics

pytestmark = pytest.mark.integration  # a real broker, store or processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "whsec-kafka-4c1d8e2f9a"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def alert(aid: str, account: str, tier: int = 1, **more) -> dict:
    record = {"tx_id": aid, "account_id": account, "tier": tier, "score": 20.0 + 25 * tier, "amount": 250.0,
              "currency": "EUR", "channel": "card", "country": "NL", "scenario": "", "ts": now_iso(),
              "scored_at": now_iso(), "reasons": [{"indicator": "large_amount", "value": 250.0, "contribution": 35.0,
                                                   "reason": "amount above the account's usual"}]}
    record.update(more)
    return record


class Bus:
    def __init__(self, bootstrap: str):
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)

    def alerts(self, *records: dict) -> None:
        for record in records:
            self.producer.send(topics.ALERTS, key=record["account_id"].encode(), value=json.dumps(record).encode())
        self.producer.flush()

    def ack(self, alert_id: str, actor: str = "analyst") -> None:
        action = {"action_id": uuid.uuid4().hex, "alert_id": alert_id, "action": "acknowledge", "disposition": "",
                  "actor": actor, "comment": "", "at": now_iso()}
        self.producer.send(topics.ACTIONS, key=alert_id.encode(), value=json.dumps(action).encode()).get(30)

    def close(self) -> None:
        self.producer.close()


@pytest.fixture
def receiver():
    with RecordingReceiver() as rx:
        yield rx


@pytest.fixture
def services(fresh_kafka):
    started: list = []

    def start(config):
        ns = NotifierService(config, fresh_kafka.bootstrap, partitions=4)
        ds = DeliveryService(config, fresh_kafka.bootstrap, "http://cockpit.test", partitions=4,
                             environ={"HOOK_SECRET": SECRET})
        threads = [ns.start_thread(), ds.start_thread()]
        started.append((ns, ds, threads))
        assert ns.ready.wait(60) and ds.ready.wait(60)
        return ns, ds

    yield start
    for ns, ds, threads in started:
        ns.stop()
        ds.stop()
        for thread in threads:
            thread.join(30)
        assert ns.error is None and ds.error is None


def bodies(rx: RecordingReceiver, path: str = "/hook", account: str | None = None) -> list[dict]:
    out = []
    for request in rx.received(ok_only=True):
        body = request.json()
        if request.path == path and (account is None or body["group_labels"].get("account_id") == account):
            out.append(body)
    return out


def test_groups_inhibits_silences_and_escalates(fresh_kafka, receiver, services, env, monkeypatch):
    config = parse(f"""
route:
  receivers: [hook]
  group_by: [account_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['tier="3"', 'scenario="escalate"']
      group_wait: 0s
      escalation: [oncall]
    - matchers: ['tier="3"']
      group_wait: 0s
inhibit_rules:
  - source_matchers: ['tier="3"']
    target_matchers: ['tier=~"1|2"']
    equal: [account_id]
sla: {{tier3: 2s}}
receivers:
  - {{name: hook, type: webhook, url: "{receiver.url}", secret_env: HOOK_SECRET}}
  - {{name: oncall, type: webhook, url: "http://127.0.0.1:{receiver.port}/oncall", secret_env: HOOK_SECRET}}
""", "test.yaml")
    services(config)
    kafka = Bus(fresh_kafka.bootstrap)
    monkeypatch.setenv("RISKCOCKPIT_KAFKA", fresh_kafka.bootstrap)
    runner, obj = CliRunner(), Context(None, {})

    # escalation: re-notified to the escalation receiver once per SLA period until acknowledged
    kafka.alerts(alert("esc-1", "ESC", tier=3, scenario="escalate"))
    first = wait_for(lambda: bodies(receiver, account="ESC"), 10, 0.05, "the critical alert")
    assert first[0]["alert_ids"] == ["esc-1"] and first[0]["kind"] == "firing"
    escalations = wait_for(lambda: (lambda b: b if len(b) >= 2 else None)(bodies(receiver, "/oncall")), 10, 0.05,
                           "two escalations")
    periods = [b["periods"]["esc-1"] for b in escalations]
    # One escalation per SLA period, the first after one period. A tick that comes late (a loaded machine) sends
    # only the period now current, never a backlog, so the second may be period 3; the webhook's concurrent
    # requests may also let a late pair arrive out of order.
    assert min(periods) == 1 and max(periods) >= 2 and len(set(periods)) == len(periods), periods
    assert escalations[0]["kind"] == "escalation" and escalations[0]["title"].startswith("[CRITICAL] ESCALATION")
    kafka.ack("esc-1")
    acked_at = time.time()

    # a burst of 100 alerts on one account within group_wait: one notification listing them all
    kafka.alerts(*[alert(f"burst-{i}", "BURST") for i in range(100)])
    [grouped] = wait_for(lambda: bodies(receiver, account="BURST"), 10, 0.05, "the grouped notification")
    assert sorted(grouped["alert_ids"]) == sorted(f"burst-{i}" for i in range(100)) and len(grouped["alerts"]) == 100

    # inhibition: an open tier-3 alert mutes tier 1/2 of the same account until acknowledged
    kafka.alerts(alert("inh-crit", "INH", tier=3))
    wait_for(lambda: bodies(receiver, account="INH"), 10, 0.05, "the inhibiting alert")
    kafka.alerts(alert("inh-low-1", "INH"), alert("inh-low-2", "INH", tier=2), alert("other-low", "OTHER"))
    wait_for(lambda: bodies(receiver, account="OTHER"), 10, 0.05, "an uninhibited alert of another account")
    time.sleep(1.0)
    assert [b["alert_ids"] for b in bodies(receiver, account="INH")] == [["inh-crit"]]
    kafka.ack("inh-crit")
    time.sleep(0.5)
    kafka.alerts(alert("inh-low-3", "INH"))
    wait_for(lambda: len(bodies(receiver, account="INH")) == 2, 10, 0.05, "the alert after the acknowledgement")
    assert bodies(receiver, account="INH")[1]["alert_ids"] == ["inh-low-3"]

    # silences through the command: hold while active, expire by time or by hand, every change recorded.
    # Generous times: a notifier that a loaded machine holds up for a few seconds must still have read
    # the silence before the alert, and flushed the alert's group before the silence ends.
    added = runner.invoke(silence, ["add", 'account_id="SIL"', "--duration", "6s", "--author", "alice",
                                    "--comment", "known test account"], obj=obj)
    assert added.exit_code == 0, added.output
    silence_id, silenced_at = added.output.strip(), time.monotonic()
    listed = runner.invoke(silence, ["list"], obj=obj)
    assert silence_id in listed.output and "active" in listed.output and "by alice: known test account" in listed.output
    time.sleep(1.0)
    kafka.alerts(alert("sil-1", "SIL"))
    time.sleep(max(0.0, silenced_at + 6.2 - time.monotonic()))
    assert bodies(receiver, account="SIL") == []
    kafka.alerts(alert("sil-2", "SIL"))
    wait_for(lambda: bodies(receiver, account="SIL"), 10, 0.05, "an alert after the silence")
    assert [b["alert_ids"] for b in bodies(receiver, account="SIL")] == [["sil-2"]]

    long = runner.invoke(silence, ["add", "account_id=SIL2", "-d", "1h", "-a", "alice", "-c", "payroll run"], obj=obj)
    long_id = long.output.strip()
    time.sleep(1.0)
    kafka.alerts(alert("sil2-1", "SIL2"))
    time.sleep(2.0)
    assert bodies(receiver, account="SIL2") == []
    ended = runner.invoke(silence, ["expire", long_id[:8], "--author", "bob", "--comment", "payroll done"], obj=obj)
    assert ended.exit_code == 0 and f"{long_id} expired" in ended.output
    assert long_id not in runner.invoke(silence, ["list"], obj=obj).output
    history = json.loads(runner.invoke(silence, ["list", "--all", "--format", "json"], obj=obj).output)
    item = next(s for s in history if s["silence_id"] == long_id)
    assert (item["state"], item["created_by"], item["changed_by"], item["version"]) == ("expired", "alice", "bob", 2)
    time.sleep(0.5)
    kafka.alerts(alert("sil2-2", "SIL2"))
    wait_for(lambda: bodies(receiver, account="SIL2"), 10, 0.05, "an alert after the expired silence")
    assert [b["alert_ids"] for b in bodies(receiver, account="SIL2")] == [["sil2-2"]]

    # the acknowledged alert stopped escalating (its SLA is 2 s; several periods have passed); a
    # second allows for the acknowledgement to reach the notifier
    assert time.time() - acked_at > 4
    assert [r.at for r in receiver.received() if r.path == "/oncall" and r.at > acked_at + 1] == []
    for request in receiver.received():
        assert verify(SECRET, request.headers["X-Riskcockpit-Timestamp"], request.body,
                      request.headers["X-Riskcockpit-Signature"])
    kafka.close()


def test_outage_loses_nothing_dead_letters_and_audits(fresh_kafka, receiver, services, env, monkeypatch):
    from riskcockpit.audit import fetch
    from riskcockpit.settings import load_settings
    from riskcockpit.store import queries
    from riskcockpit.store.client import connect
    from riskcockpit.streams.sink import Sink

    monkeypatch.setenv("RISKCOCKPIT_KAFKA", fresh_kafka.bootstrap)
    settings = load_settings(**{"sink.max_wait_ms": 200})
    client = connect(settings.store)
    sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
    sink_thread = sink.start_thread()
    config = parse(f"""
route:
  receivers: [hook]
  group_by: [account_id]
  group_wait: 0s
  routes:
    - matchers: ['channel="broken"']
      receivers: [broken]
receivers:
  - name: hook
    type: webhook
    url: "{receiver.url}"
    secret_env: HOOK_SECRET
    timeout: 1s
    retry: {{max_attempts: 60, initial_backoff: 100ms, max_backoff: 300ms}}
  - name: broken
    type: webhook
    url: "http://127.0.0.1:{receiver.port}/broken"
    secret_env: HOOK_SECRET
""", "test.yaml")
    phase = {"status": 500}
    receiver.respond = lambda r: (400, {}, '{"error":"unknown schema"}') if r.path == "/broken" else \
        (phase["status"], {}, "{}")
    receiver.go_down()
    services(config)
    kafka = Bus(fresh_kafka.bootstrap)
    expected = {f"out-{i}" for i in range(20)}
    kafka.alerts(*[alert(aid, f"ACC{aid}", tier=3) for aid in sorted(expected)],
                 alert("dlq-1", "DLQ", channel="broken"))
    time.sleep(1.5)  # connection refused
    receiver.go_up()
    time.sleep(1.5)  # 500s
    phase["status"] = 200
    delivered = wait_for(lambda: (lambda b: b if len(b) >= 20 else None)(bodies(receiver)), 30, 0.1,
                         "all 20 notifications after the outage")
    time.sleep(1.0)
    delivered = bodies(receiver)
    # every alert arrived, each in exactly one notification; repeats only ever carry the same id
    ids_by_alert: dict[str, set[str]] = {}
    for body in delivered:
        for aid in body["alert_ids"]:
            ids_by_alert.setdefault(aid, set()).add(body["id"])
    assert set(ids_by_alert) == expected and all(len(ids) == 1 for ids in ids_by_alert.values())
    all_ids = {r.notification_id for r in receiver.received() if r.path == "/hook"}
    assert all_ids == {body["id"] for body in delivered}
    assert any(r.status == 500 for r in receiver.received())

    # the broken receiver: dead-lettered after one 400, with the job and the reason
    dead = wait_for(lambda: list(bus.read_until_end(fresh_kafka.bootstrap, topics.NOTIFICATIONS_DLQ)), 10, 0.2,
                    "a dead letter")
    assert [(d["receiver"], d["last_status"], d["job"]["alert_ids"]) for d in dead] == [("broken", 400, ["dlq-1"])]
    assert "unknown schema" in dead[0]["last_error"]

    # every attempt is in ClickHouse, and `riskcockpit audit deliveries` reads it
    db = settings.store.database
    wait_for(lambda: client.query(f"SELECT count() FROM {db}.deliveries FINAL WHERE outcome = 'delivered'")
             .result_rows[0][0] >= 20, 30, 0.5, "delivery rows in ClickHouse")
    rows = queries.history(client, db, "deliveries")
    assert {r["status_code"] for r in rows} >= {0, 500, 200, 400}
    assert {r["outcome"] for r in rows} == {"retry", "delivered", "dead_letter"}
    assert list(rows[0]) == list(queries.AUDIT_COLUMNS["deliveries"])
    first = next(r for r in rows if r["outcome"] == "delivered")
    assert first["receiver"] == "hook" and first["latency_ms"] > 0 and json.loads(first["alert_ids"])

    # every change to a silence is kept in ClickHouse, with who and when
    runner, obj = CliRunner(), Context(None, {})
    sid = runner.invoke(silence, ["add", "account_id=AUD", "-d", "1h", "-a", "alice", "-c", "audit me"],
                        obj=obj).output.strip()
    assert runner.invoke(silence, ["expire", sid, "-a", "bob"], obj=obj).exit_code == 0
    wait_for(lambda: client.query(f"SELECT count() FROM {db}.silences FINAL WHERE silence_id = '{sid}'")
             .result_rows[0][0] == 2, 30, 0.5, "both silence changes in ClickHouse")
    changes = client.query(f"SELECT version, event, created_by, changed_by, comment FROM {db}.silences FINAL "
                           f"WHERE silence_id = '{sid}' ORDER BY version").result_rows
    assert changes == [(1, "created", "alice", "alice", "audit me"), (2, "expired", "alice", "bob", "audit me")]
    sink.stop()
    sink_thread.join(10)
    audited = fetch(settings, "deliveries", None, None, None, None, 100_000)
    assert len(audited) == len(rows)
    kafka.close()


def test_a_killed_notifier_resumes_without_losing_or_renaming_notifications(fresh_kafka, receiver, tmp_path):
    config_file = tmp_path / "alerting.yaml"
    config_file.write_text(f"""
route:
  receivers: [hook]
  group_by: [account_id]
  group_wait: 4s
  routes:
    - matchers: ['tier="3"']
      group_wait: 0s
receivers:
  - name: hook
    type: webhook
    url: "{receiver.url}"
    secret_env: HOOK_SECRET
    retry: {{max_attempts: 100, initial_backoff: 100ms, max_backoff: 200ms}}
notifier: {{commit_interval: 200ms}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")}
    env.update(RISKCOCKPIT_KAFKA=fresh_kafka.bootstrap, RISKCOCKPIT_DATA_DIR=str(tmp_path / "data"),
               HOOK_SECRET=SECRET)
    script = ("import logging; logging.basicConfig(level=logging.INFO);"
              "from riskcockpit.cmd_alerting import notifier; notifier.main(prog_name='riskcockpit notifier')")
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"notifier-{len(procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-c", script, "--file", str(config_file)], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    kafka = Bus(fresh_kafka.bootstrap)
    try:
        receiver.respond = lambda r: (500, {}, "{}")
        first = start()
        kafka.alerts(*[alert(f"c{i}", f"C{i}", tier=3) for i in range(5)])
        kafka.alerts(alert("slow-0", "SLOW"), alert("slow-1", "SLOW"))
        wait_for(lambda: len({r.notification_id for r in receiver.received()}) >= 5, 60, 0.1,
                 "five notifications being retried")
        time.sleep(0.5)  # the notifier commits what it produced
        first.send_signal(signal.SIGKILL)  # mid-retry, and before the SLOW group's group_wait ended
        first.wait(10)
        seen_before = {r.notification_id for r in receiver.received()}
        kafka.alerts(alert("c5", "C5", tier=3), alert("c6", "C6", tier=3))  # while nobody listens
        receiver.respond = lambda r: (200, {}, "{}")
        second = start()
        expected = {f"c{i}" for i in range(7)} | {"slow-0", "slow-1"}
        wait_for(lambda: {a for b in bodies(receiver) for a in b["alert_ids"]} >= expected, 60, 0.1,
                 "every alert delivered after the restart")
        time.sleep(1.5)
        ok = bodies(receiver)
        ids_by_alert: dict[str, set[str]] = {}
        for body in ok:
            for aid in body["alert_ids"]:
                ids_by_alert.setdefault(aid, set()).add(body["id"])
        assert set(ids_by_alert) == expected
        assert all(len(ids) == 1 for ids in ids_by_alert.values()), ids_by_alert  # never announced under a new id
        assert {next(iter(ids_by_alert[f"c{i}"])) for i in range(5)} <= seen_before  # the jobs retried are the same
        assert len({b["id"] for b in ok}) == 8  # 7 critical alerts alone, the SLOW pair grouped
        assert sorted(next(b for b in ok if b["group_labels"] == {"account_id": "SLOW"})["alert_ids"]) == \
            ["slow-0", "slow-1"]
        # the restarted notifier read back what it had produced before the kill
        assert "5 earlier jobs known" in (tmp_path / "notifier-1.log").read_text()
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "notifier-1.log").read_text()[-3000:]
    finally:
        kafka.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_malformed_alert_is_dead_lettered_and_the_notifier_goes_on(fresh_kafka, receiver, services):
    config = parse(f"""
route: {{receivers: [hook], group_by: [account_id], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
receivers:
  - {{name: hook, type: webhook, url: "{receiver.url}", secret_env: HOOK_SECRET}}
""", "test.yaml")
    ns, _ = services(config)
    kafka = Bus(fresh_kafka.bootstrap)
    kafka.alerts(alert("before", "OK1"), {**alert("bad-tier", "BAD"), "tier": "abc"},
                 {**alert("no-tier", "BAD"), "tier": None}, alert("tier-nine", "BAD", tier=9))
    kafka.producer.send(topics.ALERTS, key=b"BAD", value=b"{not json").get(30)
    kafka.alerts(alert("after", "OK2"))
    wait_for(lambda: {a for b in bodies(receiver) for a in b["alert_ids"]} >= {"before", "after"}, 60, 0.1,
             "the valid alerts on both sides of the malformed ones")
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topics.ALERTS_DLQ, bootstrap_servers=fresh_kafka.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    dead = [(json.loads(m.value).get("tx_id") if m.value.startswith(b"{\"") else m.value, dict(m.headers))
            for m in consumer]
    consumer.close()
    assert sorted(str(d[0]) for d in dead) == sorted(["bad-tier", "no-tier", "tier-nine", str(b"{not json")])
    reasons = {str(d[0]): d[1][topics.H_REASON].decode() for d in dead}
    assert "tier: 'abc' is not 1, 2 or 3" in reasons["bad-tier"] and "tier: None" in reasons["no-tier"]
    assert all(d[1][topics.H_SOURCE_TOPIC] == topics.ALERTS.encode() for d in dead)
    assert ns.error is None and {a for b in bodies(receiver) for a in b["alert_ids"]} == {"before", "after"}
    kafka.close()
