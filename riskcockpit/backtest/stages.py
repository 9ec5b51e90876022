"""The backtest's scoring: the worker's pipeline, staged as the worker stages it, with partitions spread over processes.

The worker takes each transaction through the stages of :class:`riskcockpit.indicators.pipeline.Pipeline`:
the entity stages keyed by merchant, device and counterparty, and the account stage in its
account's partition (Kafka's murmur2 of the account id), whose own models decide. Offline the
same pipeline runs in two passes, each with a store that keeps its half of the states:

1. :func:`entity_pass`: the entity stages, over the whole file in event-time order, in this
   process. Each label reaches them (``Pipeline.learn``) at its delivery time ``due[i]``.
2. :func:`account_pass`: the account stage, each partition's transactions in event-time order
   with that partition's :class:`riskcockpit.indicators.models.ModelSet`, which learns each label
   at its delivery time. Partitions share nothing, so they are spread over forked processes
   and the answer depends on ``partitions``, never on ``processes``: a backtest reproduces a
   worker over a topic of that many partitions. The entity pass streams each process its
   transactions' signals as it goes, so the two passes overlap.

Nothing can overtake an account's transaction here, so its account's indicators run at its
decision (``Pipeline.entities_first``), not before the entity stages as in the worker: the
signals are the same. A repeated ``tx_id`` passes the entity stages once; its repeats carry
the first pass's signals to the account stage, which answers them from its dedup memory.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from riskcockpit.ground.contract import Transaction
from riskcockpit.ground.topics import owning_partition
from riskcockpit.indicators.base import Signal
from riskcockpit.indicators.pipeline import ACCOUNT, Dicts, Pipeline, Trip
from riskcockpit.indicators.scoring import Scorer

# (transaction, label or None); a label is None also on a repeated tx_id: it is fed back once.
Item = tuple[Transaction, bool | None]
# due[i]: when the label of items[i] is delivered (epoch ms, never before its transaction), or None.
Due = list[int | None]


class ProcessFailed(RuntimeError):
    """A forked process of the account stage raised or died; nothing was written."""


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


def entity_pass(pipeline: Pipeline, items: list[Item], due: Due,
                kept: dict[str, dict[str, dict]] | None = None) -> Iterator[list[Signal]]:
    """The entity stages' signals of each transaction in turn, as the account stage needs them.

    With ``kept`` (a backfill), the labels still pending at the end are learned too, and
    ``kept`` receives every entity's final state: entity → key → state."""
    store = Dicts(kept=pipeline.stages)  # the accounts are kept by the account stage
    start = pipeline.entities_first()  # the pipeline copies a trip's signals: one serves every transaction
    pending: list[tuple[int, int, Transaction, bool]] = []  # heap: (due, position, …)
    first: dict[str, list[Signal]] = {}  # tx_id → its signals, for repeats
    for i, (tx, label) in enumerate(items):
        now = tx.ts_ms
        while pending and pending[0][0] <= now:
            _, _, labelled, is_fraud = heapq.heappop(pending)
            pipeline.learn(labelled, is_fraud, store)
        if tx.tx_id in first:
            yield first[tx.tx_id]
            continue
        signals = first[tx.tx_id] = pipeline.score(tx, store, trip=start).signals
        if label is not None:
            heapq.heappush(pending, (due[i], i, tx, label))
        yield signals
    if kept is not None:
        while pending:
            _, _, labelled, is_fraud = heapq.heappop(pending)
            pipeline.learn(labelled, is_fraud, store)
        kept.update(store.states)


@dataclass
class Shard:
    """What one process's account stage produced: a table of the transactions at ``positions``,
    built there, so the columns are assembled in parallel and cross processes as Arrow buffers."""

    positions: list[int]
    table: Any  # pyarrow.Table: risk_score, tier, model_score, reasons, ind_<name> per indicator
    fed_back: int
    core_seconds: float
    # With keep_state (a backfill): each account's final state, and each partition's models.
    states: dict[str, dict] | None = None
    models: dict[int, Any] | None = None


def account_pass(pipeline: Pipeline, items: list[Item], positions: list[int], owner: list[int],
                 carried: Iterable[list[Signal]], due: Due, done: Callable[[int], None] | None = None,
                 keep_state: bool = False) -> Shard:
    """Score the transactions at ``positions`` (event-time order) with their accounts' state and
    their partitions' models; ``carried`` yields their entity stages' signals in the same order.
    With ``keep_state``, the labels still pending at the end are learned too (history's labels
    are all known), and the shard carries the final states and models."""
    import pyarrow as pa

    names = [ind.name for ind, _ in pipeline.scorer.indicators]
    scores, tiers, model_scores, reasons, values = [], [], [], [], []
    label_free, probabilities, regimes = [], [], []
    store = Dicts(kept=(ACCOUNT,))  # the entities are kept by the entity pass
    pending: dict[int, list[tuple[int, int, dict, bool]]] = {}  # per partition, a heap: (due, position, …)
    clock, core, fed_back = time.perf_counter, 0.0, 0
    for n, (i, signals) in enumerate(zip(positions, carried, strict=True), 1):
        tx, label = items[i]
        partition, now = owner[i], tx.ts_ms
        queue = pending.setdefault(partition, [])
        while queue and queue[0][0] <= now:
            _, j, record, is_fraud = heapq.heappop(queue)
            pipeline.learn(items[j][0], is_fraud, store, record, stages=())  # the entity pass teaches the entities
            fed_back += 1
        t0 = clock()
        record = pipeline.score(tx, store, (partition, i), Trip(ACCOUNT, tx.account_id, signals, False)).record
        core += clock() - t0
        if label is not None:
            heapq.heappush(queue, (due[i], i, record, label))
        scores.append(record["score"])
        tiers.append(record["tier"])
        model_scores.append(record.get("model_score"))
        label_free.append(record.get("label_free_score", record["score"]))
        probabilities.append(record.get("fraud_probability", -1.0))
        regimes.append(record.get("regime", "label-free"))
        reasons.append(orjson.dumps(record["reasons"]).decode())  # compact UTF-8, as json.dumps would
        features = record["features"]
        values.append([features.get(name) for name in names])
        if done is not None and n % 1000 == 0:
            done(n)
    columns = {"risk_score": pa.array(scores, pa.float64()), "tier": pa.array(tiers, pa.int8()),
               "model_score": pa.array(model_scores, pa.float64()), "reasons": pa.array(reasons, pa.string()),
               "label_free_score": pa.array(label_free, pa.float64()),
               "fraud_probability": pa.array(probabilities, pa.float64()),
               "regime": pa.array(regimes, pa.dictionary(pa.int8(), pa.string()))}
    by_indicator = list(zip(*values, strict=True)) if values else [() for _ in names]
    for name, column in zip(names, by_indicator, strict=True):
        columns[f"ind_{name}"] = pa.array(column, pa.float64())
    shard = Shard(positions, pa.table(columns), fed_back, core)
    if keep_state:
        for queue in pending.values():
            while queue:
                _, j, record, is_fraud = heapq.heappop(queue)
                pipeline.learn(items[j][0], is_fraud, store, record, stages=())
                shard.fed_back += 1
        shard.states = store.states[ACCOUNT]
        shard.models = {p: pipeline.scorer.model_set(p) for p in {owner[i] for i in positions}}
    return shard


# What forked processes inherit instead of receiving it pickled: (pipeline, items, owner, due, keep_state), and
# shared counters, one per process, for the progress bar.
_JOB: tuple[Any, ...] | None = None
_DONE: Any = None
_CHUNK = 512  # transactions' signals per message to a process: fewer, larger pickles


def _account_pass_in_child(slot: int, positions: list[int], inbox, outbox) -> None:
    pipeline, items, owner, due, keep_state = _JOB

    def done(n: int) -> None:
        _DONE[slot] = n

    try:
        carried = (signals for chunk in iter(inbox.get, None) for signals in chunk)
        outbox.put((slot, account_pass(pipeline, items, positions, owner, carried, due, done, keep_state)))
    except Exception:  # the parent reports it, with this traceback
        outbox.put((slot, traceback.format_exc()))


def score_staged(scorer: Scorer, items: list[Item], due: Due, owner: list[int], processes: int = 1,
                 progress: Callable[[int, str], None] | None = None,
                 entity_states: dict[str, dict[str, dict]] | None = None) -> list[Shard]:
    """Both passes over ``items`` (event-time order), ``owner[i]`` being the partition of
    ``items[i]`` (:func:`partition_of`); shards cover every position once.

    On one process the passes interleave, the account stage pulling each transaction's entity
    signals as it goes. On several, this process runs the entity stages and streams each
    process the signals of its transactions while they score: the passes overlap.

    With ``entity_states`` (a backfill), it receives the entity stages' final states, and each
    shard carries its accounts' states and partitions' models (:func:`account_pass`).
    """
    keep_state = entity_states is not None
    pipeline = Pipeline(scorer)
    global _JOB, _DONE
    # Partitions go to processes round-robin, so each process keeps whole partitions.
    present = sorted(set(owner))
    groups: list[list[int]] = [[] for _ in range(max(1, min(processes, len(present))))]
    slot_of_partition = {p: k % len(groups) for k, p in enumerate(present)}
    slot_of = [slot_of_partition[p] for p in owner]
    for i, slot in enumerate(slot_of):
        groups[slot].append(i)
    if len(groups) == 1:
        report = None if progress is None else (lambda n: progress(n, "scoring"))
        return [account_pass(pipeline, items, groups[0], owner, entity_pass(pipeline, items, due, entity_states), due,
                             report, keep_state)]

    context = multiprocessing.get_context("fork")  # children inherit the transactions: nothing pickled
    _JOB, _DONE = (pipeline, items, owner, due, keep_state), context.Array("q", len(groups), lock=False)
    # Queues: put() never blocks (a feeder thread writes), so no process waits on a slower one.
    inboxes, outbox = [context.Queue() for _ in groups], context.Queue()
    children = [context.Process(target=_account_pass_in_child, args=(slot, positions, inboxes[slot], outbox),
                                daemon=True, name=f"riskcockpit-backtest-{slot}")
                for slot, positions in enumerate(groups)]
    label = f"account stage on {len(groups)} processes"
    try:
        for child in children:
            child.start()
        buffers: list[list[list[Signal]]] = [[] for _ in groups]
        for i, signals in enumerate(entity_pass(pipeline, items, due, entity_states)):
            slot = slot_of[i]
            buffers[slot].append(signals)
            if len(buffers[slot]) == _CHUNK:
                inboxes[slot].put(buffers[slot])
                buffers[slot] = []
            if progress is not None and i % 5000 == 0:
                progress(sum(_DONE), label)
        for slot, inbox in enumerate(inboxes):
            inbox.put(buffers[slot])
            inbox.put(None)
        shards: dict[int, Shard] = {}
        while len(shards) < len(groups):
            if progress is not None:
                progress(sum(_DONE), label)
            try:
                slot, payload = outbox.get(timeout=0.25)
            except queue.Empty:
                dead = [c for c in children if c.exitcode not in (None, 0)]
                if dead and outbox.empty():
                    raise ProcessFailed(f"backtest process {dead[0].name} died (exit code {dead[0].exitcode}), "
                                       "e.g. out of memory; nothing was written") from None
                continue
            if isinstance(payload, str):
                raise ProcessFailed(f"backtest process {children[slot].name} failed; nothing was written:\n{payload}")
            shards[slot] = payload
        return [shards[slot] for slot in range(len(groups))]
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()
        for inbox in inboxes:  # after a failure, unread signals must not hold this process at exit
            inbox.cancel_join_thread()
            inbox.close()
        _JOB = _DONE = None
