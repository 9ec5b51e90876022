"""Crash and outage drills on the real broker and workers: what a kill, a broker outage or both
cost, against the same stream run uninterrupted beside it.

    python bench/drills.py [--count 200000] [--kills 5] [--broker-outage 30] [--workers 2]
                           [--config-dir DIR] [--out FILE]

``--kills 0 --broker-outage 0`` compares two uninterrupted runs: what differs then is what the
order of events between workers changes, the floor under any drill's difference.
``--config-dir`` runs the workers on another config (e.g. ``models.checkpoint_every: 1``).

Two workers share the partitions in each run. The uninterrupted run scores the stream once.
The drill run scores the same stream while one of the two workers, picked at random, is
SIGKILLed ``--kills`` times at random moments (and started again at once, as a supervisor
would), and the broker is stopped for ``--broker-outage`` seconds midway (a worker whose
delivery fails then exits without acking, and is started again). Then, from the topics:
transactions never scored (lost), extra score records (redeliveries: at-least-once), decisions
answered differently for the same transaction (a redelivery must get its first decision), and
how the drill's alert set differs from the uninterrupted run's. Printed, not asserted.
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
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fuzz import Tail
from kafka import KafkaProducer

from riskcockpit.broker import EmbeddedBroker, free_port
from riskcockpit.ground import topics
from riskcockpit.ground.kafka import ensure_topics
from riskcockpit.streams.generator import SyntheticStream

REPO = Path(__file__).resolve().parents[1]


class Run:
    """A broker of its own and ``workers`` workers, scoring ``records``."""

    def __init__(self, name: str, records: list[dict], workers: int = 2, config_dir: Path | None = None):
        self.work = Path(tempfile.mkdtemp(prefix=f"rc-drill-{name}-"))
        self.broker = EmbeddedBroker(self.work / "kafka", port=free_port(), controller_port=free_port(), partitions=4)
        self.records, self.workers, self.started = records, [None] * workers, 0
        self.decisions: dict[tuple[str, str], set] = defaultdict(set)
        self.score_records = 0
        self.config = {} if config_dir is None else {"RISKCOCKPIT_CONFIG_DIR": str(config_dir.resolve())}

    def start_worker(self, i: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | {
            "RISKCOCKPIT_KAFKA": self.broker.bootstrap, "RISKCOCKPIT_DATA_DIR": str(self.work / f"w{i}")} | self.config
        log = open(self.work / f"worker-{self.started}.log", "wb")
        self.workers[i] = subprocess.Popen([sys.executable, "-m", "riskcockpit", "worker", "--loglevel", "warn"],
                                           env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                           start_new_session=True)
        self.started += 1

    def __enter__(self) -> Run:
        self.broker.start()
        ensure_topics(self.broker.bootstrap, 4, topics.ALL)
        producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=20, batch_size=512 * 1024,
                                 acks="all")
        for record in self.records:
            producer.send(topics.TRANSACTIONS, key=record["account_id"].encode(), value=json.dumps(record).encode())
        producer.close()
        for i in range(len(self.workers)):
            self.start_worker(i)
        self.scores = Tail(self.broker.bootstrap, topics.SCORES)
        return self

    def poll(self, seconds: float) -> int:
        """Read the scores that arrived; the number of transactions scored so far."""
        for m in self.scores.new(seconds):
            record = json.loads(m.value)
            self.decisions[(record["account_id"], record["tx_id"])].add((record["score"], record["tier"]))
            self.score_records += 1
        return len(self.decisions)

    def restart_dead(self) -> int:
        restarted = 0
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                self.start_worker(i)
                restarted += 1
        return restarted

    def __exit__(self, *exc) -> None:
        self.scores.close()
        for worker in self.workers:
            if worker and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(60)
        self.broker.stop()


def uninterrupted(records: list[dict], workers: int, config_dir: Path | None) -> tuple[Run, float]:
    with Run("calm", records, workers, config_dir) as run:
        t0 = time.monotonic()
        while run.poll(2.0) < len(records):
            pass
        run.poll(5.0)
        return run, time.monotonic() - t0


def drilled(records: list[dict], workers: int, config_dir: Path | None, kills: int, outage: float,
            rng: random.Random) -> tuple[Run, float, int]:
    with Run("drill", records, workers, config_dir) as run:
        t0, exits = time.monotonic(), 0
        # Kill moments spread over the first two thirds of the stream, the outage in the middle.
        marks = sorted(rng.uniform(0.05, 0.66) for _ in range(kills))
        outage_at, outage_done = 0.5, outage <= 0
        while run.poll(1.0) < len(records):
            done = len(run.decisions) / len(records)
            if marks and done >= marks[0]:
                marks.pop(0)
                victim = rng.randrange(len(run.workers))
                os.killpg(run.workers[victim].pid, signal.SIGKILL)
                run.workers[victim].wait()
                run.start_worker(victim)
                print(f"  SIGKILL worker {victim} at {done:.0%} scored", flush=True)
            if not outage_done and done >= outage_at:
                outage_done = True
                run.broker.stop()
                print(f"  broker stopped at {done:.0%} scored, for {outage:.0f} s", flush=True)
                time.sleep(outage)
                run.broker.start()
                print("  broker started again", flush=True)
            exits += run.restart_dead()
            if time.monotonic() - t0 > 3600:
                break
        run.poll(10.0)
        return run, time.monotonic() - t0, exits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config-dir", type=Path, default=None, help="the workers' config folder (default: ours)")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--broker-outage", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = datetime.now(UTC) - timedelta(hours=20)
    records = list(SyntheticStream(seed=args.seed, accounts=20_000, rate=args.count / (19 * 3600), start=start,
                                   fraud_share=0.01).take(args.count))
    lines = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    calm, calm_s = uninterrupted(records, args.workers, args.config_dir)
    say(f"uninterrupted: {len(calm.decisions):,} of {len(records):,} scored in {calm_s:.0f} s, "
        f"{calm.score_records - len(calm.decisions):,} extra score records")
    drill, drill_s, exits = drilled(records, args.workers, args.config_dir, args.kills, args.broker_outage, rng)
    wanted = {(r["account_id"], r["tx_id"]) for r in records}
    lost = len(wanted - set(drill.decisions))
    changed = sum(1 for answers in drill.decisions.values() if len(answers) > 1)
    alerts = {key for key, answers in calm.decisions.items() if any(tier for _, tier in answers)}
    drill_alerts = {key for key, answers in drill.decisions.items() if any(tier for _, tier in answers)}
    tiers_differ = sum(1 for key in wanted & set(drill.decisions) & set(calm.decisions)
                       if {t for _, t in drill.decisions[key]} != {t for _, t in calm.decisions[key]})
    say(f"drill ({args.kills} SIGKILLs of one of {args.workers} workers, broker stopped {args.broker_outage:.0f} s): "
        f"{len(drill.decisions):,} of {len(records):,} scored in {drill_s:.0f} s; "
        f"{exits} worker exits after the outage, restarted")
    say(f"  lost (never scored)                         {lost:10,}")
    say(f"  extra score records (redeliveries)          {drill.score_records - len(drill.decisions):10,}")
    say(f"  a transaction answered two ways             {changed:10,}")
    say(f"  alerts: {len(alerts):,} uninterrupted, {len(drill_alerts):,} drilled; only uninterrupted "
        f"{len(alerts - drill_alerts):,}, only drilled {len(drill_alerts - alerts):,}; tiers differ on {tiers_differ:,}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# bench/drills.py --count {args.count} --kills {args.kills} --broker-outage "
                            f"{args.broker_outage:g} --seed {args.seed}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
                            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
