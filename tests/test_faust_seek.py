"""streams.faust_seek on a real broker, the two ways a starting Faust worker lost records:

- a partition with nothing committed goes back to its beginning, where aiokafka's own
  seek_to_committed leaves it after the records the worker fetched and discarded;
- records handed over before the seek to the committed offsets, and emptied out of the agents'
  queues when the flow resumes, are fetched and processed again, not dropped as already read.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from riskcockpit.ground.kafka import ensure_topics
from riskcockpit.streams.faust_seek import seek_to_committed
from riskcockpit.streams.producer import producer

pytestmark = pytest.mark.integration  # a real broker, store or processes


def positions_after_seek(bootstrap: str, topic: str, commit: dict[int, int], seek) -> dict[int, int]:
    """Consume ``topic`` to its end in a new group that committed ``commit`` (partition → offset),
    then ``seek(consumer)``; the position of each partition after it."""
    async def run():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"seek-{uuid.uuid4().hex[:8]}",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(2)]
            consumer.assign(tps)
            if commit:
                await consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in commit.items()})
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                await consumer.getmany(timeout_ms=500)
            await seek(consumer)
            return {tp.partition: await consumer.position(tp) for tp in tps}
        finally:
            await consumer.stop()
    return asyncio.run(run())


def test_a_partition_with_nothing_committed_goes_back_to_its_beginning(kafka):
    topic = f"seek-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka.bootstrap, 2, (topic,))
    send = producer(kafka.bootstrap)
    for i in range(10):
        send.send(topic, value=b"x", partition=i % 2)
    send.flush()
    send.close()

    # What Faust relied on: aiokafka keeps the position past the discarded records.
    assert positions_after_seek(kafka.bootstrap, topic, {}, lambda c: c.seek_to_committed()) == {0: 5, 1: 5}
    assert positions_after_seek(kafka.bootstrap, topic, {}, seek_to_committed) == {0: 0, 1: 0}
    # Committed offsets are honoured; 0 is a committed offset aiokafka also ignored.
    assert positions_after_seek(kafka.bootstrap, topic, {0: 3, 1: 0}, seek_to_committed) == {0: 3, 1: 0}
    # Changelog partitions are table recovery's to position, never rewound here.
    assert positions_after_seek(kafka.bootstrap, topic, {}, lambda c: seek_to_committed(c, {topic}.__contains__)) \
        == {0: 5, 1: 5}


def processed_offsets(bootstrap: str, tmp_path, patched: bool) -> list[int]:
    """The offsets a Faust agent processed of 400 records when its worker seeks back to its
    committed offset part-way through handing a fetched batch over (tests/seek_race_app.py)."""
    topic = f"race-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, 1, (topic,))
    send = producer(bootstrap)
    for _ in range(400):
        send.send(topic, value=b"x" * 50)
    send.flush()
    send.close()
    out = tmp_path / f"{topic}.json"
    app = Path(__file__).with_name("seek_race_app.py")
    run = subprocess.run([sys.executable, str(app), bootstrap, topic, str(out), *([] if patched else ["--unpatched"])],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(app.parents[1])}, capture_output=True,
                         text=True, timeout=180)
    assert out.exists(), f"the race app wrote nothing (exit {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_records_handed_over_before_a_seek_are_fetched_again_after_it(kafka, tmp_path):
    # Faust alone: the queued records are emptied out, and their second fetch is dropped as read.
    lost = set(range(400)) - set(processed_offsets(kafka.bootstrap, tmp_path, patched=False))
    assert lost, "Faust no longer loses records handed over before its seek: streams/faust_seek.py may go"
    # With streams.faust_seek, every record is processed (some twice: delivery is at least once).
    assert set(processed_offsets(kafka.bootstrap, tmp_path, patched=True)) == set(range(400))
