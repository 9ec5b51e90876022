"""How the worker's agents take their records: in batches, each record on its own, everything a
batch sends delivered before its records are acked.

An agent takes whatever arrived while its last batch was handled, up to ``BATCH_MAX`` events,
and sends what it produces through one :class:`Outbox`, so a batch goes out in a few produce
requests and a table row it changed is written to the changelog once, with its final value.
Faust acks a batch once the agent asks for the next one; :func:`agent` delivers the outbox
before that, so delivery is at-least-once, and after a crash Faust replays from the last
committed offset.

One record never costs another: whatever goes wrong while one record is handled (a record
that breaks the contract, a disposition of a decision not kept here, a bug) sends that record
to its dead-letter topic with the reason and its source offset, and the batch goes on. An
exception escaping the loop would make Faust commit the batch's remaining records unhandled.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import faust
from faust.serializers import codecs

from riskcockpit.ground import topics
from riskcockpit.ground.contract import InvalidRecord

log = logging.getLogger("riskcockpit.worker")
# A lone event waits at most BATCH_WAIT seconds for company.
BATCH_MAX = 500
BATCH_WAIT = 0.005


class NotApplied(Exception):
    """A record the worker understood but cannot apply (a disposition of an unknown decision)."""


class Outbox:
    """What one batch of events sends: each table row the batch changed, to the table's
    changelog once, with its final value; then its records.

    The rows go first, and the records only once the broker has the rows: a decision is
    published only when the account state that remembers it is stored, so a worker killed
    between the two, replaying the batch, answers each transaction with the decision it
    published, never with a second one.

    Not ``Topic.send``: it yields to the event loop three times per record (a guard around
    "is the producer started?"), and aiokafka's sender, finding the loop free, sent about one
    produce request per record. Not ``table[key] = value`` either: that needs the event being
    processed, which a batch has not, and queues the changelog record in Faust's buffer, whose
    flush before a commit gives up after 0.1 s without progress.
    """

    def __init__(self, app: faust.App):
        self.app = app
        self.records: list[tuple] = []
        self.rows: dict[tuple[str, str], tuple] = {}

    def send(self, topic: str, key: bytes | None, value: bytes, headers=None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition, headers))

    def changed(self, table, partition: int, key: str, value) -> None:
        """``table[key] = value``, written to the changelog's ``partition`` when the batch is delivered."""
        table.data[key] = value
        self.rows[(table.name, key)] = (table, partition, key, value)

    def deleted(self, table, partition: int, key: str) -> None:
        """``del table[key]``: a tombstone in the changelog, so recovery forgets it too."""
        table.data.pop(key, None)
        self.rows[(table.name, key)] = (table, partition, key, None)

    def partitions_changed(self, table) -> set[int]:
        return {partition for changed, partition, _, _ in self.rows.values() if changed is table}

    async def _send_all(self, records) -> None:
        send = self.app.producer.send
        await asyncio.gather(*[await send(topic, key, value, partition, None, headers)
                               for topic, key, value, partition, headers in records])

    async def deliver(self) -> None:
        """Send the changed rows, then the records, and wait until everything is delivered. A
        failed delivery ends the process at once: the batch's events must not be acked (Faust
        would commit them), so that a restart replays them."""
        rows = [(table.changelog_topic.get_topic_name(), codecs.dumps(table.key_serializer, key),
                 None if value is None else codecs.dumps(table.value_serializer, value), partition, None)
                for table, partition, key, value in self.rows.values()]
        if not rows and not self.records:
            return
        try:
            await self._send_all(rows)
            await self._send_all(self.records)
        except Exception:  # noqa: BLE001 - any failed delivery loses a decision unless we stop here
            log.critical("delivery failed; exiting without acking the batch, a restart replays it", exc_info=True)
            logging.shutdown()
            os._exit(70)


def dead_letter(out: Outbox, message, exc: Exception) -> None:
    """``message`` to its dead-letter topic, as it was, with what went wrong and where it came from."""
    if isinstance(exc, InvalidRecord | NotApplied):
        reason = str(exc)
    else:  # not the record's fault alone: the operator needs the traceback
        reason = f"{type(exc).__name__}: {exc}"
        log.error("record at %s/%d/%d dead-lettered: %s", message.topic, message.partition, message.offset, reason,
                  exc_info=exc)
    out.send(topics.dead_letter_topic(message.topic), message.key, message.value,
             headers=topics.dlq_headers(message.topic, message.partition, message.offset,
                                        int(message.timestamp * 1000), reason))


Handle = Callable[[Outbox, object], None]


def agent(app: faust.App, handle: Handle, after: Callable[[Outbox], None] | None = None):
    """A Faust agent that calls ``handle(out, message)`` for each record, dead-letters a record
    whose handling raises, calls ``after(out)`` at the end of each batch, and delivers ``out``
    before the batch is acked."""

    async def take(stream):
        await app.maybe_start_producer()
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WAIT):
            out = Outbox(app)
            for event in events:
                try:
                    handle(out, event.message)
                except Exception as exc:  # noqa: BLE001 - one record must not cost the rest of the batch
                    dead_letter(out, event.message, exc)
            if after is not None:
                after(out)
            await out.deliver()  # before the batch's events are acked, when the next is taken

    return take
