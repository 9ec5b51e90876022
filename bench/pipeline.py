"""End-to-end numbers on one machine: broker and worker start-up, transactions/s through Kafka
and one worker next to a pass-through Faust agent on the same broker, and the latency of each at
fixed offered rates: what Faust alone gives on this machine, beside what the worker gives.

    python bench/pipeline.py [--count 30000] [--rates 500,1500,3000] [--seconds 15]

Printed, not asserted: these machines are noisy; compare the ratio, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from riskcockpit.broker import EmbeddedBroker, free_port
from riskcockpit.ground import topics
from riskcockpit.ground.kafka import ensure_topics
from riskcockpit.streams.generator import SyntheticStream, pace

HERE = Path(__file__).resolve().parent


def output_times(bootstrap: str, topic: str, expected: int, timeout: float) -> list[tuple[int, str]]:
    """(timestamp ms, tx_id) of ``expected`` records of ``topic``. By tx_id: a record that went
    through an entity stage names the repartition topic as its source, not ``transactions``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    seen, deadline = [], time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        for message in consumer:
            seen.append((message.timestamp, json.loads(message.value).get("tx_id", "")))
            if len(seen) >= expected:
                break
    consumer.close()
    return seen


def rate(times: list[tuple[int, str]]) -> float:
    stamps = sorted(t[0] for t in times)
    # Skip the first and last 5 %: start-up and the tail say nothing about steady throughput.
    lo, hi = stamps[len(stamps) // 20], stamps[-len(stamps) // 20 - 1]
    return (len(stamps) * 0.9) / max((hi - lo) / 1000, 1e-9)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def changelog_bytes(log_dirs: Path) -> int:
    """Bytes the broker holds in the tables' changelog topics (before any compaction ran)."""
    return sum(f.stat().st_size for f in log_dirs.glob("*-changelog-*/*.log"))


def spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rates", default="500,1500,3000")
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rc-bench-"))
    broker = EmbeddedBroker(work / "kafka", port=free_port(), controller_port=free_port(), partitions=4)
    t0 = time.monotonic()
    broker.start()
    print(f"broker start-up                 {time.monotonic() - t0:8.1f} s")
    bootstrap = broker.bootstrap
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | {
        "RISKCOCKPIT_KAFKA": bootstrap, "RISKCOCKPIT_DATA_DIR": str(work / "data")}
    procs = []
    try:
        # Decision latency is from the broker's append of the transaction to its append of the
        # decision: what the producer's own batching adds is the bank's to choose, not ours.
        ensure_topics(bootstrap, 4, (topics.TRANSACTIONS, topics.SCORES, "bench.passthrough"),
                      configs={"message.timestamp.type": "LogAppendTime"})
        ensure_topics(bootstrap, 4, topics.ALL)
        start = datetime.now(UTC) - timedelta(hours=2)
        stream = SyntheticStream(seed=1, accounts=20_000, rate=20, start=start, fraud_share=0.01)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
        for record in stream.take(args.count):
            producer.send(topics.TRANSACTIONS, key=record["account_id"].encode(), value=json.dumps(record).encode())
        producer.flush()
        print(f"backlog produced                {args.count:8d} tx")

        def cpu_per_tx(pid: int, topic: str, count: int) -> tuple[float, float, float]:
            """Throughput through ``topic``, and µs of CPU per transaction of process ``pid`` and
            of the broker, from the first output record (start-up excluded) to the last."""
            output_times(bootstrap, topic, 1, 300)
            before = cpu_seconds(pid), cpu_seconds(broker.pid())
            throughput = rate(output_times(bootstrap, topic, count, 900))
            used = [(cpu_seconds(p) - b) / count * 1e6 for p, b in zip((pid, broker.pid()), before, strict=True)]
            return throughput, *used

        # One iterator for every rate: each ``iter`` of a stream starts it again, with the same tx_ids,
        # and a rate's latencies then matched the earlier rates' outputs too.
        live = iter(SyntheticStream(seed=2, accounts=20_000, rate=20, fraud_share=0.01))
        offered_rates = [float(r) for r in args.rates.split(",")]

        def latencies(topic: str, already: int) -> int:
            """Decision latency at each offered rate, printed; returns how many records ``topic``
            holds after, ``already`` before."""
            for offered in offered_rates:
                sent_at = {}
                for record in pace(live, offered, args.seconds):
                    sent_at[record["tx_id"]] = producer.send(
                        topics.TRANSACTIONS, key=record["account_id"].encode(), value=json.dumps(record).encode())
                producer.flush()
                sources = {tx_id: future.get(30).timestamp for tx_id, future in sent_at.items()}
                outputs = output_times(bootstrap, topic, already + len(sent_at), 600)
                waits = sorted(ts - sources[tx_id] for ts, tx_id in outputs if tx_id in sources)
                already += len(sent_at)
                if waits:
                    p50 = statistics.median(waits)
                    p99 = waits[int(len(waits) * 0.99) - 1]
                    print(f"  latency @ {offered:5.0f} tx/s offered   p50 {p50:6.0f} ms   p99 {p99:6.0f} ms   "
                          f"({len(waits)} tx over {args.seconds:.0f} s)")
            return already

        # The pass-through agent first, over the backlog and at the offered rates; the worker
        # then scores every transaction the agent copied, and takes the same rates again.
        procs.append(spawn([sys.executable, str(HERE / "passthrough.py")], env))
        passthrough, cpu, broker_cpu = cpu_per_tx(procs[-1].pid, "bench.passthrough", args.count)
        print(f"pass-through Faust agent        {passthrough:8.0f} tx/s   CPU µs/tx: agent {cpu:5.0f}, "
              f"broker {broker_cpu:5.0f}")
        total = latencies("bench.passthrough", args.count)
        os.killpg(procs[-1].pid, signal.SIGTERM)
        procs[-1].wait()

        t0 = time.monotonic()
        procs.append(spawn([sys.executable, "-m", "riskcockpit", "worker", "--loglevel", "warn"], env))
        output_times(bootstrap, topics.SCORES, 1, 300)  # blocks until the first score
        print(f"worker start-up to first score  {time.monotonic() - t0:8.1f} s")
        worker, cpu, broker_cpu = cpu_per_tx(procs[-1].pid, topics.SCORES, total)
        print(f"riskcockpit worker (1 process)  {worker:8.0f} tx/s   CPU µs/tx: worker {cpu:5.0f}, "
              f"broker {broker_cpu:5.0f}   = {worker / passthrough:.0%} of pass-through")
        print(f"changelog bytes per transaction {changelog_bytes(work / 'kafka' / 'logs') / total:8.0f}")
        latencies(topics.SCORES, total)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        broker.stop()


if __name__ == "__main__":
    main()
