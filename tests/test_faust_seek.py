"""streams.faust_seek on a real broker: a partition with nothing committed goes back to its
beginning, where aiokafka's own seek_to_committed leaves it after the records a starting Faust
worker fetched and discarded (the cause of lost transactions after a crash)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from riskcockpit.broker import ensure_topics
from streams.faust_seek import seek_to_committed
from streams.producer import producer


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
