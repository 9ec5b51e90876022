"""The backtest's scoring, staged as the worker stages it, with partitions spread over processes.

The worker runs the indicators kept per merchant, device and counterparty in stages keyed by
those entities, then re-keys each transaction to its account's partition (Kafka's murmur2 of
the account id), where that partition's own models score it. Offline, the same in two passes:

1. :func:`entity_pass`: the entity stages, over the whole file in event-time order, here.
   Each label reaches them (``Scorer.learn_label``) ``delay`` after its transaction.
2. :func:`account_pass`: the account stage, each partition's transactions in event-time order
   with that partition's :class:`indicators.models.ModelSet`, which learns each label
   (``Scorer.feedback``) ``delay`` after its transaction. Partitions share nothing, so they
   are spread over forked processes and the answer depends on ``partitions``, never on
   ``processes``: a backtest reproduces a worker over a topic of that many partitions.

A repeated ``tx_id`` passes the entity stages once; its repeats carry the first pass's signals
to the account stage, which answers them from its dedup memory.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import orjson

from indicators.base import ENTITY_FIELDS, Signal
from indicators.scoring import Scorer
from streams.contract import Transaction
from streams.topics import owning_partition

# (transaction, label or None); a label is None also on a repeated tx_id: it is fed back once.
Item = tuple[Transaction, bool | None]


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def partition_of(items: list[Item], partitions: int) -> list[int]:
    """Each transaction's partition: where Kafka's default partitioner puts its account."""
    cache: dict[str, int] = {}
    out = []
    for tx, _ in items:
        p = cache.get(tx.account_id)
        if p is None:
            p = cache[tx.account_id] = owning_partition(tx.account_id.encode(), partitions) if partitions > 1 else 0
        out.append(p)
    return out


def entity_pass(scorer: Scorer, items: list[Item], first: list[int], delay: int,
                progress: Callable[[int], None] | None = None) -> list[list[Signal]]:
    """The entity stages' signals of every transaction (``first[i]``: where its tx_id first came)."""
    carried: list[list[Signal]] = []
    if not scorer.stages:
        return [[] for _ in items]
    states: dict[str, dict[str, dict]] = {entity: {} for entity in scorer.stages}
    keys = [(entity, ENTITY_FIELDS[entity]) for entity in scorer.stages]
    pending: deque[tuple[int, Transaction, bool]] = deque()  # one constant delay: due in queue order
    for i, (tx, label) in enumerate(items):
        now = tx.ts_ms
        while pending and pending[0][0] <= now:
            _, labelled, is_fraud = pending.popleft()
            for entity, name in keys:
                key = getattr(labelled, name)
                if key is not None:
                    scorer.learn_label(entity, labelled, states[entity].setdefault(key, {}), is_fraud)
        if first[i] != i:
            carried.append(carried[first[i]])
            continue
        signals: list[Signal] = []
        for entity, name in keys:
            key = getattr(tx, name)
            signals += scorer.entity_signals(entity, tx, {} if key is None else states[entity].setdefault(key, {}))
        carried.append(signals)
        if label is not None:
            pending.append((now + delay, tx, label))
        if progress is not None and i % 5000 == 4999:
            progress(i + 1)
    return carried


@dataclass
class Shard:
    """What one process's account stage produced, for the transactions at ``positions``."""

    positions: list[int]
    score: list[float] = field(default_factory=list)
    tier: list[int] = field(default_factory=list)
    model_score: list[float | None] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    values: list[list[float | None]] = field(default_factory=list)  # per transaction, one per indicator
    fed_back: int = 0
    core_seconds: float = 0.0


def account_pass(scorer: Scorer, items: list[Item], positions: list[int], owner: list[int],
                 carried: list[list[Signal]], delay: int, done: Callable[[int], None] | None = None) -> Shard:
    """Score the transactions at ``positions`` (event-time order) with their accounts' state and
    their partitions' models."""
    shard = Shard(positions)
    names = [ind.name for ind, _ in scorer.indicators]
    states: dict[str, dict] = {}
    pending: dict[int, deque[tuple[int, dict, bool]]] = {}  # per partition, due in queue order
    clock, core = time.perf_counter, 0.0
    for n, i in enumerate(positions, 1):
        tx, label = items[i]
        partition, now = owner[i], tx.ts_ms
        queue = pending.setdefault(partition, deque())
        while queue and queue[0][0] <= now:
            _, record, is_fraud = queue.popleft()
            scorer.feedback(record, is_fraud)
            shard.fed_back += 1
        t0 = clock()
        record = scorer.score(tx, states.setdefault(tx.account_id, {}), (partition, i), carried[i])
        core += clock() - t0
        if label is not None:
            queue.append((now + delay, record, label))
        shard.score.append(float(record["score"]))
        shard.tier.append(int(record["tier"]))
        shard.model_score.append(record.get("model_score"))
        shard.reasons.append(orjson.dumps(record["reasons"]).decode())  # compact UTF-8, as json.dumps would
        features = record["features"]
        shard.values.append([None if (v := features.get(name)) is None else float(v) for name in names])
        if done is not None and n % 1000 == 0:
            done(n)
    shard.core_seconds = core
    return shard


# What forked processes inherit instead of receiving it pickled: (scorer, items, owner, carried, delay).
_JOB: tuple[Any, ...] | None = None
_DONE: Any = None  # shared counters, one per process, for the progress bar


def _account_pass_in_child(slot: int, positions: list[int]) -> Shard:
    scorer, items, owner, carried, delay = _JOB

    def done(n: int) -> None:
        _DONE[slot] = n

    return account_pass(scorer, items, positions, owner, carried, delay, done)


def score_staged(scorer: Scorer, items: list[Item], delay: int, owner: list[int], processes: int = 1,
                 progress: Callable[[int, str], None] | None = None,
                 seconds: dict[str, float] | None = None) -> list[Shard]:
    """Both passes over ``items`` (event-time order), ``owner[i]`` being the partition of
    ``items[i]`` (:func:`partition_of`); shards cover every position once. The wall time of
    each pass goes into ``seconds``."""
    global _JOB, _DONE
    seconds = {} if seconds is None else seconds
    started = time.perf_counter()
    first_at: dict[str, int] = {}
    first = [first_at.setdefault(tx.tx_id, i) for i, (tx, _) in enumerate(items)]
    stage_progress = None if progress is None else (lambda n: progress(n, "entity stages"))
    carried = entity_pass(scorer, items, first, delay, stage_progress)
    account_started = time.perf_counter()
    seconds["entity stages"] = account_started - started
    # Partitions go to processes round-robin, so each process keeps whole partitions.
    present = sorted(set(owner))
    groups: list[list[int]] = [[] for _ in range(max(1, min(processes, len(present))))]
    slot = {p: k % len(groups) for k, p in enumerate(present)}
    for i, p in enumerate(owner):
        groups[slot[p]].append(i)
    label = "account stage"
    if len(groups) == 1:
        report = None if progress is None else (lambda n: progress(n, label))
        shards = [account_pass(scorer, items, groups[0], owner, carried, delay, report)]
        seconds["account stage"] = time.perf_counter() - account_started
        return shards
    context = multiprocessing.get_context("fork")  # children inherit the transactions: nothing pickled
    _JOB, _DONE = (scorer, items, owner, carried, delay), context.Array("q", len(groups), lock=False)
    try:
        with ProcessPoolExecutor(len(groups), mp_context=context) as pool:
            futures = [pool.submit(_account_pass_in_child, slot, g) for slot, g in enumerate(groups)]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()  # a process's error stops the run here, with its traceback
                if progress is not None:
                    progress(sum(_DONE), f"{label} on {len(groups)} processes")
            shards = [f.result() for f in futures]
        seconds["account stage"] = time.perf_counter() - account_started
        return shards
    finally:
        _JOB = _DONE = None
