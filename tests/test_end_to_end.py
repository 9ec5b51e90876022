"""The product as a user meets it: real processes, real Kafka, the cockpit's own chdb store.

generator → Kafka → worker → (sink inside the cockpit) → ClickHouse → the cockpit's HTTP
callbacks and the audit command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests
from conftest import wait_for
from dash_client import LiveServer, call
from kafka import KafkaProducer

from riskcockpit.broker import free_port
from riskcockpit.ground import topics

pytestmark = pytest.mark.integration  # a real broker, store or processes


def cli(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | env
    return subprocess.run([sys.executable, "-m", "riskcockpit", *args], env=full, capture_output=True, text=True,
                          timeout=timeout)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def running(fresh_kafka, processes, tmp_path):
    port = free_port()
    env = {"RISKCOCKPIT_KAFKA": fresh_kafka.bootstrap, "RISKCOCKPIT_DATA_DIR": str(tmp_path / "stack"),
           "RISKCOCKPIT_COCKPIT__PORT": str(port), "RISKCOCKPIT_SINK__MAX_WAIT_MS": "200"}
    processes.start("worker", ["worker", "--loglevel", "warn"], env)
    processes.start("cockpit", ["cockpit"], env)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url), timeout=90, what="cockpit /healthz", processes=processes)
    return env, url, processes


def test_generated_frauds_reach_the_cockpit_in_all_three_tiers_and_the_audit(running):
    env, url, processes = running
    generated = cli(env, "generate", "--count", "12000", "--rate", "3000", "--seed", "5", "--accounts", "2000",
                    "--fraud-share", "0.05", "--quiet", timeout=180)
    assert generated.returncode == 0, generated.stderr[-2000:]

    server = LiveServer(url)

    def grid(tier: str) -> list[dict]:
        return call(server, "alerts-grid.rowData", {"tick.n_intervals": 1, "tier-filter.value": tier})[
            "alerts-grid"]["rowData"]

    counts = {}

    def every_tier() -> list[dict]:
        counts.update({t: len(grid(t)) for t in ("1", "2", "3")})
        return all(counts.values()) and grid("all")

    started = time.monotonic()
    try:
        rows = wait_for(every_tier, timeout=180, what="alerts of every tier in the cockpit grid",
                        processes=processes)
    except AssertionError as exc:
        raise AssertionError(f"alerts per tier in the grid: {counts}\n{exc}") from None
    print(f"every tier in the grid after {time.monotonic() - started:.0f} s: {counts}")
    for tier in ("1", "2", "3"):
        assert {str(r["tier"]) for r in grid(tier)} == {tier}
    assert any(r.get("scenario") for r in rows), "injected frauds should be among the alerts"
    kpis = requests.get(f"{url}/api/kpis", timeout=10).json()
    assert kpis["tx_per_s"] > 0 and all(kpis["alerts_60m"][t] > 0 for t in ("1", "2", "3"))

    # The audit CLI cannot open the cockpit's chdb path; it must answer through the cockpit.
    audit = cli(env, "audit", "alerts", "--tier", "3", "--format", "json")
    assert audit.returncode == 0, audit.stderr[-2000:]
    alerts = json.loads(audit.stdout)
    assert alerts and {a["tier"] for a in alerts} == {3}
    # Each stored decision recomputes from its reasons and the config it names.
    verified = cli(env, "audit", "alerts", "--verify", "--format", "json")
    assert verified.returncode == 0, [a for a in json.loads(verified.stdout) if a["recomputed"] != "ok"]
    assert {a["recomputed"] for a in json.loads(verified.stdout)} == {"ok"}
    assert " 0 differ, 0 name a config neither stored nor at hand (1 stored," in verified.stderr
    [config] = json.loads(cli(env, "audit", "configs").stdout)  # the one the worker published
    assert {a["config_hash"] for a in json.loads(verified.stdout)} == {config["config_hash"]}

    # A line as kcat sends it: only the required fields, no key.
    tx_id = f"kcat-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=env["RISKCOCKPIT_KAFKA"])
    producer.send(topics.TRANSACTIONS, value=json.dumps(
        {"tx_id": tx_id, "ts": datetime.now(UTC).isoformat(), "account_id": "walk-in", "amount": 42}).encode())
    producer.flush()
    producer.close()

    def scored() -> list[dict]:
        result = cli(env, "audit", "scores", "--account", "walk-in", "--format", "json")
        assert result.returncode == 0, result.stderr[-2000:]
        return [s for s in json.loads(result.stdout) if s["tx_id"] == tx_id]

    found = wait_for(scored, timeout=60, what="the kcat line in audit scores", processes=processes)
    assert found[0]["amount"] == 42

    csv_out = cli(env, "audit", "scores", "--account", "walk-in", "--format", "csv")
    assert csv_out.stdout.splitlines()[0].startswith("tx_id,account_id,ts,amount")


def test_audit_exits_non_zero_when_no_store_is_reachable(tmp_path):
    env = {"RISKCOCKPIT_DATA_DIR": str(tmp_path),
           "RISKCOCKPIT_CLICKHOUSE_URL": f"http://default:x@127.0.0.1:{free_port()}/riskcockpit"}
    result = cli(env, "audit", "alerts")
    assert result.returncode != 0
    assert "not reachable" in result.stderr and "127.0.0.1" in result.stderr


def test_audit_of_a_locked_store_without_cockpit_says_so(tmp_path):
    """The store is held (a process has it open) but no cockpit answers: a clear error, exit 1."""
    holder = subprocess.Popen([sys.executable, "-c",
                               "import clickhouse_connect,sys,time;"
                               "c = clickhouse_connect.get_client(interface='chdb', path=sys.argv[1]); c.query('SELECT 1');"
                               "print('open', flush=True); time.sleep(60)", str(tmp_path / "chdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        result = cli({"RISKCOCKPIT_DATA_DIR": str(tmp_path), "RISKCOCKPIT_COCKPIT__PORT": str(free_port())},
                     "audit", "dlq")
        assert result.returncode == 1
        assert "held" in result.stderr or "locked" in result.stderr
        assert "is the stack running?" in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_kafka_command_starts_reports_and_stops_the_broker(tmp_path):
    env = {"RISKCOCKPIT_DATA_DIR": str(tmp_path), "RISKCOCKPIT_KAFKA__PORT": str(free_port()),
           "RISKCOCKPIT_KAFKA__CONTROLLER_PORT": str(free_port()), "RISKCOCKPIT_KAFKA__HEAP": "256m"}
    try:
        started = cli(env, "kafka", "start")
        assert started.returncode == 0 and "running: pid" in started.stdout, started.stderr[-2000:]
        assert cli(env, "kafka", "status").returncode == 0
        stopped = cli(env, "kafka", "stop")
        assert stopped.stdout.strip() == "stopped"
        status = cli(env, "kafka", "status")
        assert status.returncode == 1 and status.stdout.startswith("stopped")
    finally:
        cli(env, "kafka", "stop")
    external = cli(env | {"RISKCOCKPIT_KAFKA": "elsewhere:9092"}, "kafka", "start")
    assert external.returncode != 0 and "not managed here" in external.stderr


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    """Kafka's storage tool reads ``-t -mzF…`` as a missing value: one broker start in 64 failed so."""
    from riskcockpit import broker

    dashed = uuid.UUID(bytes=bytes([0xFA]) + bytes(15))  # base64url "-g…"
    plain = uuid.UUID(bytes=bytes(range(16)))
    drawn = iter([dashed, dashed, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(drawn))
    assert broker.base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    assert broker.new_cluster_id() == broker.base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
