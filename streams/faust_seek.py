"""Faust's "seek back to the committed offsets", made to work where nothing is committed yet.

Faust 0.15.3 discards records it fetched while its flow was stopped and counts on a seek to
the committed offsets to fetch them again. A starting worker resumes its stream partitions,
then awaits that seek, then resumes the flow: whatever the consumer thread fetched in between
is discarded. aiokafka's ``seek_to_committed`` leaves a partition where it is when its
committed offset is missing or 0, so on a partition nothing was committed for yet those
records were lost for good. A worker started after one that crashed before its first commit
scored none, or a part, of the backlog (1 start in 4 here; the CI failure of 2026-11-22), and
so would the first worker over any topic that already holds records.

Such a partition goes back to its beginning, which is where ``auto_offset_reset="earliest"``
(Faust's default, and ours) starts a group that has committed nothing. Changelog partitions
are left alone: table recovery positions them itself.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread


async def seek_to_committed(consumer: Any, is_changelog=lambda topic: False) -> dict:
    """aiokafka's ``consumer.seek_to_committed()``, but a partition whose committed offset is
    missing or 0 goes to its beginning instead of staying where it is. Returns the committed
    offsets, as aiokafka does."""
    committed = await consumer.seek_to_committed()
    unset = [tp for tp, offset in committed.items() if not offset and not is_changelog(tp.topic)]
    if unset:
        await consumer.seek_to_beginning(*unset)
    return committed


async def _thread_seek_to_committed(self: AIOKafkaConsumerThread) -> dict:
    changelogs = self.app.tables.changelog_topics
    return await self.call_thread(seek_to_committed, self._ensure_consumer(), changelogs.__contains__)


def install() -> None:
    """Every Faust app of this process seeks with :func:`seek_to_committed`."""
    AIOKafkaConsumerThread.seek_to_committed = _thread_seek_to_committed
