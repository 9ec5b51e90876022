"""Shared machinery of the newer indicators: sorted event windows and reasons written on demand.

Thirty indicators run on every transaction, so the per-event bookkeeping must cost little.

- Windows: an entity's events stay sorted by event time. An in-order event is appended, a
  late one is inserted in its place, and a window is two bisections; ``prune_window`` in
  ``base`` instead rebuilds the list. Events are lists whose first item is the epoch-ms time,
  so state stays JSON.
- Reasons: only hits reach an analyst, and formatting numbers ("12,345.67 moved ...") costs
  more than most indicators' arithmetic, so the full reason is a callable run only for a hit.

>>> events = []
>>> for t in (1_000, 5_000, 3_000, 9_000):      # 3_000 arrives late
...     add_event(events, [t, "x"], window_ms=7_000, cap=10)
>>> [e[0] for e in events]                      # 1_000 fell out of 9_000's window
[3000, 5000, 9000]
>>> [e[0] for e in in_window(events, 5_000, 7_000)]   # a late event sees only its own past
[3000, 5000]
"""

from __future__ import annotations

from bisect import bisect_right, insort
from operator import itemgetter


_TIME = itemgetter(0)


def add_event(events: list, event: list, window_ms: int, cap: int) -> None:
    """Insert ``event`` in time order, drop what the newest event's window no longer covers,
    and keep at most ``cap`` events (the newest), in place."""
    if not events or event[0] >= events[-1][0]:
        events.append(event)
    else:
        insort(events, event, key=_TIME)
    # Pruning is relative to the newest event, not to this one: a late event must not make
    # the entity forget what it did since.
    if events[0][0] <= events[-1][0] - window_ms or len(events) > cap:
        cut = max(bisect_right(events, events[-1][0] - window_ms, key=_TIME), len(events) - cap)
        del events[:cut]


def in_window(events: list, now_ms: int, window_ms: int) -> list:
    """Events in ``(now - window, now]``: a late event is judged on its own past, not its future."""
    if not events:
        return events
    lo = 0 if events[0][0] > now_ms - window_ms else bisect_right(events, now_ms - window_ms, key=_TIME)
    if events[-1][0] <= now_ms:
        return events[lo:]
    return events[lo:bisect_right(events, now_ms, key=_TIME)]


def tally(state: dict, value: str, max_count: int, max_values: int) -> None:
    """Count ``value`` in the entity's profile ``state["c"]``, its total in ``state["n"]``.

    Bounded twice: past ``max_values`` distinct values the rarest is forgotten, and past
    ``max_count`` in total every count is halved, so old habits fade and new ones can win.

    >>> state = {}
    >>> for v in "aaabc":
    ...     tally(state, v, max_count=4, max_values=2)
    >>> state                                   # b, the rarest, made room for c
    {'c': {'a': 3, 'c': 1}, 'n': 4}
    >>> tally(state, "a", max_count=4, max_values=2)
    >>> state                                   # past 4 in total: halved, c faded out
    {'c': {'a': 2}, 'n': 2}
    """
    counts = state.setdefault("c", {})
    n = state.get("n", 0)
    if value not in counts and len(counts) >= max_values:
        n -= counts.pop(min(counts, key=counts.get))
    counts[value] = counts.get(value, 0) + 1
    n += 1
    if n > max_count:
        for key in list(counts):
            counts[key] //= 2
            if not counts[key]:
                del counts[key]
        n = sum(counts.values())
    state["n"] = n
