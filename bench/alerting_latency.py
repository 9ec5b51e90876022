"""Latency of a critical alert: produced on ``risk.alerts`` → webhook request at the receiver.

Starts its own Kafka broker (the embedded one, on free ports, in a temporary folder), a
recording HTTP receiver on loopback, and the notifier and delivery loops in this process, with
``group_wait: 0s`` for tier 3. Each alert is on an account of its own (one notification each).
Prints percentiles; the target is p99 <= 1 s.

    python bench/alerting_latency.py [--count 300] [--rate 30]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaProducer  # noqa: E402

from riskcockpit.alerting.config import parse  # noqa: E402
from riskcockpit.alerting.delivery import DeliveryService  # noqa: E402
from riskcockpit.alerting.notifier import NotifierService  # noqa: E402
from riskcockpit.alerting.testing import RecordingReceiver  # noqa: E402
from riskcockpit.broker import EmbeddedBroker, free_port  # noqa: E402
from riskcockpit.streams import topics  # noqa: E402

SECRET = "bench-secret-0123456789"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def alert(aid: str) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return json.dumps({"tx_id": aid, "account_id": f"B-{aid}", "tier": 3, "score": 88.0, "amount": 4200.0,
                       "currency": "EUR", "channel": "transfer", "country": "NL", "ts": now, "scored_at": now,
                       "reasons": [{"indicator": "large_amount", "value": 4200.0, "contribution": 45.0,
                                    "reason": "amount far above the account's usual"}]}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="alerts measured")
    parser.add_argument("--rate", type=float, default=30.0, help="alerts per second")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    folder = Path(tempfile.mkdtemp(prefix="alerting-bench-"))
    broker = EmbeddedBroker(folder / "kafka", port=free_port(), controller_port=free_port(),
                            partitions=args.partitions, heap="512m")
    started = time.monotonic()
    broker.start()
    print(f"broker {broker.bootstrap} up in {time.monotonic() - started:.1f}s", flush=True)
    receiver = RecordingReceiver().start()
    config = parse(f"""
route:
  receivers: [hook]
  group_by: [account_id]
  group_wait: 30s
  routes:
    - matchers: ['tier="3"']
      group_wait: 0s
receivers:
  - name: hook
    type: webhook
    url: "{receiver.url}"
    secret_env: BENCH_SECRET
    rate_limit: {{requests: 10000, per: 1s, burst: 10000}}
""", "bench")
    notifier = NotifierService(config, broker.bootstrap, args.partitions)
    delivery = DeliveryService(config, broker.bootstrap, "http://127.0.0.1:8050", args.partitions,
                               environ={"BENCH_SECRET": SECRET})
    threads = [notifier.start_thread(), delivery.start_thread()]
    try:
        notifier.ready.wait(60)
        delivery.ready.wait(60)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)

        def send(aid: str) -> float:
            at = time.time()
            producer.send(topics.ALERTS, key=f"B-{aid}".encode(), value=alert(aid))
            return at

        for i in range(10):  # warm-up: group joins, connections, first metadata
            send(f"warm-{i}")
        receiver.wait_for(10, 60)
        sent: dict[str, float] = {}
        interval = 1 / args.rate
        next_at = time.monotonic()
        for i in range(args.count):
            next_at += interval
            sent[f"m-{i}"] = send(f"m-{i}")
            time.sleep(max(0.0, next_at - time.monotonic()))
        producer.flush()
        receiver.wait_for(10 + args.count, 60)
        arrived = {}
        for request in receiver.received(ok_only=True):
            for aid in request.json()["alert_ids"]:
                arrived.setdefault(aid, request.at)
        latencies = [(arrived[aid] - at) * 1000 for aid, at in sent.items()]
        print(f"{len(latencies)} tier-3 alerts at {args.rate:g}/s, {args.partitions} partitions, group_wait 0s")
        print(f"alert produced -> webhook request received: p50 {percentile(latencies, 50):.0f} ms, "
              f"p90 {percentile(latencies, 90):.0f} ms, p99 {percentile(latencies, 99):.0f} ms, "
              f"max {max(latencies):.0f} ms, mean {statistics.mean(latencies):.0f} ms")
        producer.close()
    finally:
        notifier.stop()
        delivery.stop()
        for thread in threads:
            thread.join(30)
        receiver.stop()
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
