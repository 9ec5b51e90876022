"""Mutated records through the real broker and a real worker: is any valid one lost or scored
twice, is every malformed one dead-lettered, does the worker survive?

    python bench/fuzz.py [--mutated 100000] [--valid 50000] [--seed 7] [--out bench/results/fuzz-….txt]

Valid transactions (the generator's, each with a tx_id of its own) are sent with mutated
copies among them: byte flips, truncation, type swaps, huge and deeply nested values, duplicate
keys, control characters, extreme timestamps, forged internal headers, tombstones. Whether a
record *should* be scored is what the contract says of it here, in this process (a byte flip
inside a merchant's name leaves a valid record). Then every record sent is accounted for from
the topics themselves: a valid one by its score on ``risk.scores`` (by account and tx_id, as the
worker answers a redelivery with its earlier decision), a malformed one by its source offset
in ``transactions.dlq``. Printed, not asserted; the target is 0 lost, 0 crashes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from rich.progress import Progress

from riskcockpit.broker import EmbeddedBroker, free_port
from riskcockpit.ground import topics
from riskcockpit.ground.contract import InvalidRecord, parse_transaction
from riskcockpit.ground.kafka import ensure_topics
from riskcockpit.streams.generator import SyntheticStream

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("tx_id", "ts", "account_id", "amount", "merchant_id", "device_id", "counterparty_id", "channel", "country",
          "currency", "mcc", "lat", "lon", "ip", "direction", "status", "attributes")
ODD_VALUES = [None, True, False, 0, -1, "", "x" * 300, [], {}, [1, [2, [3]]], {"a": {"b": None}}, 1e308, -1e308,
              2 ** 70, "NaN", "1e999", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "\u0000", "\ud800",
              "2026-13-45T99:99:99Z", "A\u0085B", "北京", 1.5, "12.5"]


def mutate(rng: random.Random, record: dict) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """One mutated copy of ``record``: its bytes (None for a tombstone) and its headers."""
    kind = rng.choice(("flip", "cut", "swap", "huge", "nest", "duplicate", "control", "time", "drop", "header",
                       "bytes"))
    body, headers = dict(record), []
    if kind == "swap":
        body[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
    elif kind == "huge":
        field = rng.choice(("amount", "ts", "lat"))
        digits = rng.choice((21, 400, 5000))
        raw = json.dumps({**body, field: 1}).encode()
        return raw.replace(f'"{field}": 1'.encode(), f'"{field}": {"9" * digits}'.encode()), headers
    elif kind == "nest":
        depth = rng.choice((9, 50, 500, 20_000))
        return (json.dumps(body).encode()[:-1] + b', "attributes": {"deep": ' + b"[" * depth + b"]" * depth + b"}}",
                headers)
    elif kind == "duplicate":
        field = rng.choice(("amount", "account_id", "tx_id", "ts"))
        return json.dumps(body).encode()[:-1] + f', "{field}": {json.dumps(body.get(field, 1))}}}'.encode(), headers
    elif kind == "control":
        field = rng.choice(("tx_id", "account_id", "merchant_id", "device_id"))
        value = str(body.get(field) or "id")
        at = rng.randrange(len(value) + 1)
        body[field] = value[:at] + chr(rng.choice([*range(32), 127, 0x85, 0x9F, 0x2028])) + value[at:]
    elif kind == "time":
        body["ts"] = rng.choice((0, -1, 1, 10 ** 13 * 9, 1.5e300, "0001-01-01T00:00:00+14:00", "1970-01-01T00:00:00Z",
                                 (datetime.now(UTC) + timedelta(days=3)).isoformat(), "2026-02-30T00:00:00Z"))
    elif kind == "drop":
        body.pop(rng.choice(("tx_id", "ts", "account_id", "amount")))
    elif kind == "header":
        name = rng.choice((topics.H_SIGNALS, topics.H_LABEL))
        headers = [(name, rng.choice((b'[["no_such_indicator", 1, true, "forged"]]', b"True", b"\xff")))]
    elif kind == "bytes":
        return rng.choice((None, b"", b"\xff\xfe\x00", b"null", b"[]", b'"text"', b"0", b"{}")), headers
    raw = bytearray(json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass"))
    if kind == "flip":
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif kind == "cut":
        del raw[rng.randrange(len(raw)):]
    return bytes(raw), headers


def should_score(value: bytes | None, headers) -> tuple[str, str] | None:
    """(account_id, tx_id) if the contract accepts the record, else None."""
    if any(name in topics.INTERNAL_HEADERS for name, _ in headers):
        return None
    try:
        tx = parse_transaction(value)
    except InvalidRecord:
        return None
    return tx.account_id, tx.tx_id


class Tail:
    """Everything a topic holds, read from its beginning and then as it grows."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.consumer.assign([TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or []])
        self.consumer.seek_to_beginning()

    def new(self, seconds: float) -> list:
        found, until = [], time.monotonic() + seconds
        while time.monotonic() < until:
            for records in self.consumer.poll(timeout_ms=200, max_records=10_000).values():
                found += records
        return found

    def close(self) -> None:
        self.consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutated", type=int, default=100_000)
    parser.add_argument("--valid", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="rc-fuzz-"))
    broker = EmbeddedBroker(work / "kafka", port=free_port(), controller_port=free_port(), partitions=4)
    broker.start()
    bootstrap = broker.bootstrap
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | {
        "RISKCOCKPIT_KAFKA": bootstrap, "RISKCOCKPIT_DATA_DIR": str(work / "data")}
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    worker = None
    try:
        ensure_topics(bootstrap, 4, topics.ALL)
        start = datetime.now(UTC) - timedelta(hours=6)
        stream = SyntheticStream(seed=args.seed, accounts=5_000, rate=args.valid / (5.5 * 3600), start=start)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024,
                                 max_request_size=4 * 2 ** 20, acks="all")
        sent = []  # (future, expected (account, tx_id) or None, kind)
        every = max(1, (args.valid + args.mutated) // max(1, args.valid))
        produced = Counter()
        with Progress() as progress:
            task = progress.add_task("producing", total=args.valid + args.mutated)
            records = iter(stream)
            valid_left, mutated_left = args.valid, args.mutated
            while valid_left or mutated_left:
                record = next(records)
                record["tx_id"] = f"fz-{rng.getrandbits(64):016x}"  # unique, and no flip makes another's
                items = []
                if valid_left:
                    items.append((json.dumps(record).encode(), []))
                    valid_left -= 1
                for _ in range(min(mutated_left, every - 1 if valid_left else mutated_left)):
                    items.append(mutate(rng, record))
                    mutated_left -= 1
                for value, headers in items:
                    expected = should_score(value, headers)
                    produced["valid" if expected else "malformed"] += 1
                    key = record["account_id"].encode() if rng.random() < 0.95 else rng.choice((None, b"other"))
                    if key is None and value is None:
                        key = b"other"  # Kafka takes no record without either
                    sent.append((producer.send(topics.TRANSACTIONS, key=key, value=value, headers=headers), expected))
                progress.advance(task, len(items))
            producer.flush()
        positions = [(future.get(60), expected) for future, expected in sent]
        producer.close()
        say(f"sent {len(positions):,} records to {topics.TRANSACTIONS}: {produced['valid']:,} the contract accepts "
            f"(valid, and mutated copies that stayed valid), {produced['malformed']:,} it refuses")

        log = open(work / "worker.log", "wb")
        t0 = time.monotonic()
        worker = subprocess.Popen([sys.executable, "-m", "riskcockpit", "worker", "--loglevel", "warn"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        wanted_scores = sum(1 for _, e in positions if e)
        wanted_dead = len(positions) - wanted_scores
        scores: Counter = Counter()
        dead: set = set()
        tails = Tail(bootstrap, topics.SCORES), Tail(bootstrap, topics.DLQ)
        settled_at = None
        with Progress() as progress:
            task = progress.add_task("scored or dead-lettered", total=len(positions))
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline and worker.poll() is None:
                new_scores, new_dead = tails[0].new(1.0), tails[1].new(0.2)
                scores.update((r["account_id"], r["tx_id"]) for r in (json.loads(m.value) for m in new_scores))
                for m in new_dead:
                    h = dict(m.headers)
                    dead.add((h[topics.H_SOURCE_TOPIC].decode(), int(h[topics.H_SOURCE_PARTITION]),
                              int(h[topics.H_SOURCE_OFFSET])))
                scored = sum(scores.values())
                progress.update(task, completed=min(scored, wanted_scores) + min(len(dead), wanted_dead))
                if scored >= wanted_scores and len(dead) >= wanted_dead:
                    settled_at = settled_at or time.monotonic()
                    if time.monotonic() - settled_at > 10:  # a second score or a stray arrives before counting
                        break
        for tail in tails:
            tail.close()
        elapsed = (settled_at or time.monotonic()) - t0
        # A mutated copy that stayed valid and kept its original's account and tx_id is a
        # redelivery: answered with the same decision, one score record per record sent.
        expected = Counter(e for _, e in positions if e)
        once = sum(n for key, n in expected.items() if scores.get(key, 0) == n)
        twice = sum(scores[key] - n for key, n in expected.items() if scores.get(key, 0) > n)
        lost_valid = sum(n - scores.get(key, 0) for key, n in expected.items() if scores.get(key, 0) < n)
        wrongly_scored = sum(n for key, n in scores.items() if key not in expected)
        dead_lettered = sum(1 for meta, e in positions if not e and (topics.TRANSACTIONS, meta.partition, meta.offset)
                            in dead)
        lost_malformed = wanted_dead - dead_lettered
        alive = worker.poll() is None
        log.flush()
        output = (work / "worker.log").read_text(errors="replace")
        crashes = output.count("Crashed reason=")
        say(f"valid, scored exactly once        {once:10,} of {wanted_scores:,}")
        say(f"valid, extra scores               {twice:10,}")
        say(f"malformed, in {topics.DLQ}  {dead_lettered:10,} of {wanted_dead:,}")
        say(f"lost (neither)                    {lost_valid + lost_malformed:10,}   "
            f"({lost_valid:,} valid, {lost_malformed:,} malformed)")
        say(f"scored though the contract refuses {wrongly_scored:9,}")
        say(f"worker agent crashes (restarts)   {crashes:10,}   process {'alive' if alive else 'DEAD'}; "
            f"{elapsed:.0f} s from start to the last record accounted for")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(f"# bench/fuzz.py --mutated {args.mutated} --valid {args.valid} --seed {args.seed}, "
                                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n" + "\n".join(lines) + "\n")
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        broker.stop()


if __name__ == "__main__":
    main()
