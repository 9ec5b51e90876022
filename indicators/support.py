"""Shared machinery of the newer indicators: sorted event windows and reasons written on demand.

Thirty indicators run on every transaction, so the per-event bookkeeping must cost little.

- Windows: an entity's events stay sorted by event time. An in-order event is appended, a
  late one is inserted in its place, and a window is two bisections; ``prune_window`` in
  ``base`` instead rebuilds the list. Events are lists whose first item is the epoch-ms time,
  so state stays JSON.
- Arrival-order windows (the older indicators, pruned by ``base.prune_window``): ``push_event``
  keeps exactly the events ``prune_window`` keeps, and notes in ``state["s"]`` that they are in
  time order, which they are unless a late event arrived; ``recent`` then bisects rather than
  scans.
- Reasons: only hits reach an analyst, and formatting numbers ("12,345.67 moved ...") costs
  more than most indicators' arithmetic, so the full reason is a callable run only for a hit.
- Signals: building one costs more than most indicators' arithmetic. Constant ones are built
  once; ``Signals`` keeps those that repeat by key (the count of a short history); the others
  are built by ``new_signal((name, value, hit, reason))``, without the NamedTuple's Python-level
  ``__new__``.
- Params: ``Plain(params)`` copies the frozen params to a plain object. pydantic models define
  ``__getattr__``, so CPython cannot specialise reads of their attributes, and each
  ``self.params.window`` costs about three plain reads, on every transaction.

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
from itertools import pairwise
from operator import itemgetter

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import Params, Signal, new_signal  # noqa: F401  (Signal, new_signal: re-exported for the family modules)

_TIME = itemgetter(0)



class Signals(dict):
    """Signals that repeat, by key, each built on first use; as many as distinct keys.

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


def short_history(name: str, minimum: int) -> Signals:
    """By count: the signal of an entity with fewer than ``minimum`` transactions (not judged)."""
    return Signals(lambda n: Signal(name, None, False, f"history of {n} < {minimum}"))


def too_few(name: str, minimum: int) -> Signals:
    """By count: the signal of a window with fewer than ``minimum`` transactions (not judged)."""
    return Signals(lambda n: Signal(name, None, False, f"{n} transactions < {minimum}"))


class Plain:
    """The fields of frozen params as plain attributes (see the module docstring).

    >>> from riskcockpit.indicators.base import Params
    >>> Plain(type("P", (Params,), {"__annotations__": {"cap": int}, "cap": 5})()).cap
    5
    """

    def __init__(self, params):
        for name, value in vars(params).items():
            setattr(self, name, value)


# What ``state["s"]`` means, for the indicators' ``state_doc``.
IN_ORDER_DOC = ("`s`: 1 while they are also in time order (no late event among them), so the window is found by "
                "bisection rather than a scan")


def push_event(state: dict, events: list, event: list, window_ms: int, cap: int) -> None:
    """Append ``event`` (its time is the transaction's) and prune exactly like ``prune_window``:
    the same events are kept, in arrival order. ``state["s"]`` is set while they are also in
    time order, so that ``recent`` can bisect.

    >>> state, events = {}, []
    >>> for t in (1_000, 5_000, 3_000, 9_000):      # 3_000 arrives late
    ...     push_event(state, events, [t], window_ms=7_000, cap=10)
    ...     print([e[0] for e in events], "s" in state)
    [1000] True
    [1000, 5000] True
    [1000, 5000, 3000] False
    [5000, 3000, 9000] False
    >>> push_event(state, events, [12_000], window_ms=7_000, cap=10); [e[0] for e in events], "s" in state
    ([9000, 12000], True)
    """
    if not events:
        state["s"] = 1
    elif event[0] < events[-1][0] and "s" in state:
        del state["s"]  # a late event: windows are scanned until it has been pruned
    events.append(event)
    horizon = event[0] - window_ms
    if events[0][0] <= horizon or len(events) > cap:  # prune_window's condition to rebuild
        if "s" in state:  # in time order, the events it would drop are a prefix, then the cap
            del events[:bisect_right(events, horizon, key=_TIME)]
            del events[:-cap]
        else:
            events[:] = [e for e in events if e[0] > horizon][-cap:]
            if all(a[0] <= b[0] for a, b in pairwise(events)):
                state["s"] = 1


def recent(state: dict, events: list, now_ms: int, window_ms: int) -> list:
    """The events of ``push_event`` in ``(now - window, now]``, in arrival order: a late event
    is judged on its own past. May be ``events`` itself: do not modify the result."""
    horizon = now_ms - window_ms
    if "s" not in state:
        return [e for e in events if horizon < e[0] <= now_ms]
    if not events:
        return events
    lo = 0 if events[0][0] > horizon else bisect_right(events, horizon, key=_TIME)
    if events[-1][0] <= now_ms:
        return events[lo:] if lo else events
    return events[lo:bisect_right(events, now_ms, key=_TIME)]


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
    """Events in ``(now - window, now]``: a late event is judged on its own past, not its future.
    May be ``events`` itself: do not modify the result."""
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
    return len({e[1] for e in state.get("e", ()) if e[0] > horizon} | {tx.account_id})


def remember_account(state, tx, window: int, cap: int) -> None:
    events = state.setdefault("e", [])
    # One entry per account (its latest time): the window counts accounts, not transactions.
    events[:] = [e for e in events if e[1] != tx.account_id]
    add_event(events, [tx.ts_ms, tx.account_id], window, cap)
