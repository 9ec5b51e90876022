"""Aggregation groups: alerts of one route and receiver sharing the ``group_by`` labels.

Timers follow Alertmanager: a new group waits ``group_wait`` before its first notification, so
a burst arrives as one message; later alerts are sent at most every ``group_interval``; while
notified alerts stay open and nothing new arrives the group repeats every ``repeat_interval``.

Unlike Alertmanager's alerts, ours are events: a firing notification lists the alerts that are
new since the last one (and says how many are open in the group), a repeat lists every open
notified alert. Alerts muted at flush time (silence, inhibition) are dropped from the group's
to-do list and not announced later.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from riskcockpit.alerting.routing import Route


@dataclass
class Flush:
    kind: str  # firing | repeat
    alert_ids: list[str]


@dataclass
class Group:
    route: Route
    receiver: str
    key: str
    labels: dict[str, str]
    created: float
    members: dict[str, None] = field(default_factory=dict)  # open alerts, arrival order
    new: dict[str, None] = field(default_factory=dict)
    notified: set[str] = field(default_factory=set)
    next_flush: float | None = None
    last_flush: float | None = None
    last_sent: float | None = None

    def add(self, alert_id: str, now: float, already_sent: bool = False) -> None:
        self.members[alert_id] = None
        if already_sent:
            self.notified.add(alert_id)
            self.last_sent = self.last_sent or now
            self._schedule(self.last_sent + self.route.repeat_interval)
            return
        self.new[alert_id] = None
        if self.last_flush is None:
            self._schedule(self.created + self.route.group_wait)
        else:
            self._schedule(max(now, self.last_flush + self.route.group_interval))

    def _schedule(self, when: float) -> None:
        self.next_flush = when if self.next_flush is None else min(self.next_flush, when)

    def remove(self, alert_id: str) -> None:
        self.members.pop(alert_id, None)
        self.new.pop(alert_id, None)
        self.notified.discard(alert_id)

    def evict_oldest(self, keep: int) -> list[str]:
        """Bound memory: forget the oldest already-handled members beyond ``keep``."""
        evicted = []
        for alert_id in list(self.members):
            if len(self.members) <= keep:
                break
            if alert_id not in self.new:
                self.remove(alert_id)
                evicted.append(alert_id)
        return evicted

    def flush(self, now: float, muted: Callable[[str], bool]) -> tuple[Flush | None, list[str]]:
        """What to send now, and the new alerts this flush dealt with (sent or muted)."""
        handled = [a for a in self.new if a in self.members]
        self.new.clear()
        self.last_flush = now
        self.next_flush = None
        sendable = [a for a in handled if not muted(a)]
        result = None
        if sendable:
            result = Flush("firing", sendable)
        elif self.last_sent is not None and now - self.last_sent >= self.route.repeat_interval:
            still = [a for a in self.members if a in self.notified and not muted(a)]
            if still:
                result = Flush("repeat", still)
        if result is not None:
            self.notified.update(result.alert_ids)
            self.last_sent = now
        for alert_id in handled:
            if alert_id not in self.notified:
                self.members.pop(alert_id, None)  # muted: nothing left to do for it here
        if self.last_sent is not None and any(a in self.notified for a in self.members):
            # A repeat that was due but muted is looked at again a group_interval later.
            self._schedule(max(self.last_sent + self.route.repeat_interval, now + self.route.group_interval))
        return result, handled

    @property
    def empty(self) -> bool:
        return not self.members


class Grouper:
    def __init__(self):
        self.groups: dict[tuple[str, str], Group] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = itertools.count()

    def add(self, route: Route, receiver: str, labels: dict[str, str], alert_id: str, now: float,
            already_sent: bool = False) -> Group:
        key = route.group_key(labels)
        group = self.groups.get((receiver, key))
        if group is None:
            group = Group(route, receiver, key, route.group_labels(labels), created=now)
            self.groups[(receiver, key)] = group
        before = group.next_flush
        group.add(alert_id, now, already_sent)
        if group.next_flush is not None and group.next_flush != before:
            heapq.heappush(self._heap, (group.next_flush, next(self._seq), (receiver, key)))
        return group

    def remove(self, receiver: str, key: str, alert_id: str) -> None:
        group = self.groups.get((receiver, key))
        if group is not None:
            group.remove(alert_id)
            if group.empty:
                del self.groups[(receiver, key)]

    def due(self, now: float) -> list[Group]:
        found = []
        while self._heap and self._heap[0][0] <= now:
            when, _, gid = heapq.heappop(self._heap)
            group = self.groups.get(gid)
            if group is not None and group.next_flush == when and group not in found:
                found.append(group)
        return found

    def reschedule(self, group: Group) -> None:
        gid = (group.receiver, group.key)
        if group.empty:
            self.groups.pop(gid, None)
        elif group.next_flush is not None:
            heapq.heappush(self._heap, (group.next_flush, next(self._seq), gid))

    def next_due(self) -> float | None:
        while self._heap:
            when, _, gid = self._heap[0]
            group = self.groups.get(gid)
            if group is not None and group.next_flush == when:
                return when
            heapq.heappop(self._heap)
        return None
