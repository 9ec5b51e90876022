"""Shared machinery of the newer indicators: sorted event windows and reasons written on demand.

Thirty indicators run on every transaction, so the per-event bookkeeping must cost little.

- Windows: an entity's events (lists whose first item is the epoch-ms time, so state stays
  JSON) stay sorted by event time in ``state["w"]``. An in-order event is appended, a late one
  is inserted in its place, and a window is two bisections (``add_event``, ``in_window``).
- Reasons: only hits reach an analyst, and formatting numbers ("12,345.67 moved ...") costs
  more than most indicators' arithmetic, so the full reason is a callable run only for a hit.
- Signals: building one costs more than most indicators' arithmetic. An indicator builds
  every signal with ``Indicator.signal``: constant ones once, in ``__init__``; those that
  repeat by a key (the count of a short history) once per key, kept in ``Signals``.

>>> state = {}
>>> for t in (1_000, 5_000, 3_000, 9_000):      # 3_000 arrives late
...     add_event(state, [t, "x"], window_ms=7_000, cap=10)
>>> [e[0] for e in state["w"]]                  # 1_000 fell out of 9_000's window
[3000, 5000, 9000]
>>> [e[0] for e in in_window(state, 5_000, 7_000)]   # a late event sees only its own past
[3000, 5000]
"""

from __future__ import annotations

from bisect import bisect_right, insort
from operator import itemgetter

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import Params

_TIME = itemgetter(0)



class Signals(dict):
    """Signals that repeat, by key, each built on first use; as many as distinct keys.

    >>> from riskcockpit.indicators.base import Signal
    >>> short = Signals(lambda n: Signal("x", None, False, f"history of {n} < 5"))
    >>> short[2].reason, short[2] is short[2]
    ('history of 2 < 5', True)
    """

    def __init__(self, build):
        super().__init__()
        self.build = build

    def __missing__(self, key):
        signal = self[key] = self.build(key)
        return signal


def short_history(indicator, minimum: int) -> Signals:
    """By count: ``indicator``'s signal of an entity with fewer than ``minimum`` transactions (not judged)."""
    return Signals(lambda n: indicator.signal(None, False, f"history of {n} < {minimum}"))


def too_few(indicator, minimum: int) -> Signals:
    """By count: ``indicator``'s signal of a window with fewer than ``minimum`` transactions (not judged)."""
    return Signals(lambda n: indicator.signal(None, False, f"{n} transactions < {minimum}"))


def window_events(state: dict) -> list:
    """The entity's window of events, ``state["w"]``, in time order, made on first use.

    An earlier release kept windows at ``state["e"]``, some in arrival order: such a window is
    sorted into ``w`` once, so an upgraded worker's state keeps its history.

    >>> window_events({"e": [[5_000, "b"], [3_000, "a"]], "s": 1})
    [[3000, 'a'], [5000, 'b']]
    """
    events = state.get("w")
    if events is None:
        old = state.pop("e", None)
        state.pop("s", None)
        events = state["w"] = sorted(old, key=_TIME) if old else []
    return events


def add_event(state: dict, event: list, window_ms: int, cap: int) -> None:
    """Insert ``event`` (its first item the epoch-ms time) into the entity's window in time
    order, drop what the newest event's window no longer covers, and keep at most ``cap``
    events (the newest)."""
    events = state.get("w")
    if events is None:
        events = window_events(state)
    if not events or event[0] >= events[-1][0]:
        events.append(event)
    else:
        insort(events, event, key=_TIME)
    # Pruning is relative to the newest event, not to this one: a late event must not make
    # the entity forget what it did since.
    if events[0][0] <= events[-1][0] - window_ms or len(events) > cap:
        cut = max(bisect_right(events, events[-1][0] - window_ms, key=_TIME), len(events) - cap)
        del events[:cut]


def in_window(state: dict, now_ms: int, window_ms: int) -> list:
    """The entity's events in ``(now - window, now]``, in time order: a late event is judged on
    its own past, not its future. May be the window itself: do not modify the result."""
    events = state.get("w")
    if events is None:
        if "e" not in state:
            return []
        events = window_events(state)
    if not events:
        return events
    lo = 0 if events[0][0] > now_ms - window_ms else bisect_right(events, now_ms - window_ms, key=_TIME)
    if events[-1][0] <= now_ms:
        return events[lo:] if lo else events
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


# What several accounts do at one entity (a device, a beneficiary): kept per entity, in its stage.
class SharedParams(Params):
    window: DurationMs = Field(86_400_000, description="sliding window")
    accounts: int = Field(3, ge=2, description="hit at this many distinct accounts in the window, this one included")
    cap: int = Field(50, ge=2, description="accounts kept per entity (bounds state)")


def distinct_accounts(state, tx, window: int) -> int:
    horizon = tx.ts_ms - window
    return len({e[1] for e in state.get("w") or window_events(state) if e[0] > horizon} | {tx.account_id})


def remember_account(state, tx, window: int, cap: int) -> None:
    events = window_events(state)
    # One entry per account (its latest time): the window counts accounts, not transactions.
    events[:] = [e for e in events if e[1] != tx.account_id]
    add_event(state, [tx.ts_ms, tx.account_id], window, cap)
