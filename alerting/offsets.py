"""Which input offsets are safe to commit when records finish out of order.

Kafka commits one offset per partition: "everything before this is done". The notifier holds
an alert until it has been notified (or needs no more escalation), the delivery loop holds a
job until it is delivered or dead-lettered; both finish records out of order, so the commit is
the lowest offset still held, or one past the highest seen when nothing is held.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Hashable


class OffsetTracker:
    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[Hashable, set[int]] = {}
        self._heaps: dict[Hashable, list[int]] = {}
        self._next: dict[Hashable, int] = {}
        self._committed: dict[Hashable, int] = {}

    def add(self, partition: Hashable, offset: int) -> None:
        with self._lock:
            self._held.setdefault(partition, set()).add(offset)
            heapq.heappush(self._heaps.setdefault(partition, []), offset)
            self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: Hashable, offset: int) -> None:
        with self._lock:
            held = self._held.get(partition)
            if held is not None:
                held.discard(offset)

    def held(self) -> int:
        with self._lock:
            return sum(len(h) for h in self._held.values())

    def committable(self) -> dict[Hashable, int]:
        """Per partition, the offset to commit now, only where it moved since the last call."""
        out = {}
        with self._lock:
            for partition, nxt in self._next.items():
                held, heap = self._held[partition], self._heaps[partition]
                while heap and heap[0] not in held:
                    heapq.heappop(heap)
                offset = heap[0] if heap else nxt
                if self._committed.get(partition) != offset:
                    out[partition] = offset
        return out

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        with self._lock:
            self._committed.update(offsets)

    def forget(self, partitions) -> None:
        """Partitions given away in a rebalance: their records are someone else's now."""
        with self._lock:
            for partition in partitions:
                for store in (self._held, self._heaps, self._next, self._committed):
                    store.pop(partition, None)
