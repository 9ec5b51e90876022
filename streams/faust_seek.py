"""Faust's "seek back to the committed offsets", made to lose nothing.

Faust 0.15.3 starts a worker's streams like this: it resumes the stream partitions, awaits a
seek of every partition to its committed offset, then resumes the flow, which empties the
agents' queues. Records fetched before the seek and still queued are dropped there, and the
seek is what brings them back. Two things in Faust stop it from doing so:

1. aiokafka's ``seek_to_committed`` leaves a partition where it is when its committed offset
   is missing or 0, after the records fetched and dropped. A worker started after one that
   crashed before its first commit scored none, or a part, of the backlog (1 start in 4 here;
   the CI failure of 2026-11-22). Such a partition now goes back to its beginning, which is
   where ``auto_offset_reset="earliest"`` (Faust's default, and ours) starts a group that has
   committed nothing. Changelog partitions are left alone: table recovery positions them itself.

2. The seek resets each partition's "last offset read", below which the consumer takes a record
   for a duplicate and drops it unseen. A batch fetched before the seek went on being handed to
   the agents after it, which moved "last offset read" past the committed offset again: the
   records' second fetch was dropped, the distance was booked as a gap (Faust commits a gap as
   processed), and whatever was still queued when the flow resumed was lost. In CI on
   2026-12-02 a worker restarted after a kill lost 2 of 6,007 transactions; a stress run of
   kills here showed such gaps and drops at most restarts. Now the flow stops when the seek
   starts (Faust resumes it after emptying the queues); in the consumer thread a fetch and a
   seek take turns, and each fetch notes how many seeks came before it, which is what tells a
   stale batch (the thread runs both on one event loop, so a fetch issued before a seek could
   collect records after it); a stale batch hands nothing over; and the offsets the seek set
   are put back once the consumer has booked the last record it was handed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_faust_perform_seek = Consumer.perform_seek
_faust_getmany = Consumer.getmany
_faust_fetch_records = AIOKafkaConsumerThread._fetch_records


async def seek_to_committed(consumer: Any, is_changelog=lambda topic: False) -> dict:
    """aiokafka's ``consumer.seek_to_committed()``, but a partition whose committed offset is
    missing or 0 goes to its beginning instead of staying where it is. Returns the committed
    offsets, as aiokafka does."""
    committed = await consumer.seek_to_committed()
    unset = [tp for tp, offset in committed.items() if not offset and not is_changelog(tp.topic)]
    if unset:
        await consumer.seek_to_beginning(*unset)
    return committed


def _fetch_lock(thread: AIOKafkaConsumerThread) -> asyncio.Lock:
    """Taken by a fetch and by a seek in the consumer thread, which runs both on one event loop
    and would otherwise let a fetch collect records on both sides of a seek."""
    if getattr(thread, "_riskcockpit_lock", None) is None:
        thread._riskcockpit_lock = asyncio.Lock()
    return thread._riskcockpit_lock


async def _seek_in_thread(thread: AIOKafkaConsumerThread) -> dict:
    async with _fetch_lock(thread):
        committed = await seek_to_committed(thread._ensure_consumer(), thread.app.tables.changelog_topics.__contains__)
        thread._riskcockpit_seeks = getattr(thread, "_riskcockpit_seeks", 0) + 1
    return committed


async def _thread_seek_to_committed(self: AIOKafkaConsumerThread) -> dict:
    return await self.call_thread(_seek_in_thread, self)


async def _fetch_records(self: AIOKafkaConsumerThread, *args, **kwargs):
    """Faust's fetch, in the consumer thread, noting how many seeks came before it."""
    async with _fetch_lock(self):
        records = await _faust_fetch_records(self, *args, **kwargs)
        self.consumer._riskcockpit_fetched_after = getattr(self, "_riskcockpit_seeks", 0)
    return records


async def perform_seek(self: Consumer) -> None:
    """Faust's seek, with the flow stopped first (Faust resumes it once the agents' queues are
    emptied), and the "last offset read" it set kept for :func:`getmany`."""
    self.stop_flow()  # nothing is handed over between the seek and that resume
    await _faust_perform_seek(self)
    # No await since Faust set them: these are the seek's offsets, not a record's.
    self._riskcockpit_sought = {tp: self._read_offset.get(tp) for tp in self.assignment()}
    self._riskcockpit_seeks = getattr(self, "_riskcockpit_seeks", 0) + 1


async def getmany(self: Consumer, timeout: float):
    """Faust's ``getmany``, handing over nothing of a batch fetched before a seek."""
    thread = self._thread
    records = _faust_getmany(self, timeout)
    seeks = fetched_after = None
    try:
        async for tp, message in records:
            if seeks is None:  # the batch is fetched: what it was fetched after is known now
                seeks = getattr(self, "_riskcockpit_seeks", 0)
                fetched_after = self._riskcockpit_fetched_after
            if getattr(thread, "_riskcockpit_seeks", 0) != fetched_after:
                break
            yield tp, message
    finally:
        await records.aclose()
        if seeks is not None and getattr(self, "_riskcockpit_seeks", 0) != seeks:
            # The consumer may have booked the last record handed over after the seek reset
            # its partition: put the seek's offsets back, or the re-fetched records are dropped.
            self._read_offset.update(self._riskcockpit_sought)


def install() -> None:
    """Every Faust app of this process seeks and fetches with these."""
    AIOKafkaConsumerThread.seek_to_committed = _thread_seek_to_committed
    AIOKafkaConsumerThread._fetch_records = _fetch_records
    Consumer.perform_seek = perform_seek
    Consumer.getmany = getmany
