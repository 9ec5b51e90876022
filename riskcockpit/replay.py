"""Replay: a file of historical transactions into topic ``transactions``, in event-time order.

The file is read, mapped and validated exactly as the backtest does (:mod:`riskcockpit.backtest.history`);
valid transactions are produced as contract JSON keyed by account, so the worker scores what the
backtest scored. Malformed rows are reported and skipped. Pace: ``max`` (as fast as the broker
takes them), ``realtime`` (sleep by the event-time gaps) or ``Nx`` (N times faster than real time,
``10x``, ``0.5x``); the schedule is absolute, so small sleeps do not add up to drift.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator

from riskcockpit.backtest.history import Loaded
from riskcockpit.ground.contract import Transaction

_SPEED = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*x\s*$", re.IGNORECASE)


def parse_speed(value: str) -> float | None:
    """``max`` → None (no pacing), ``realtime`` → 1.0, ``10x`` → 10.0.

    >>> parse_speed("max"), parse_speed("realtime"), parse_speed("2.5x")
    (None, 1.0, 2.5)
    """
    text = str(value).strip().lower()
    if text == "max":
        return None
    if text == "realtime":
        return 1.0
    match = _SPEED.match(text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{value!r} is not a speed: max, realtime or Nx (N times real time, e.g. 10x)")
    return float(match[1])


def contract_json(tx: Transaction) -> dict:
    """The transaction as the contract's JSON object (UTC time, no empty optional fields)."""
    return tx.model_dump(mode="json", exclude_none=True)


def paced(items: Iterable[tuple[int, dict]], factor: float | None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Iterator[dict]:
    """Yield each ``(event ms, record)``'s record when its event-time offset, divided by ``factor``, has passed."""
    start = first = None
    for ms, record in items:
        if factor is not None:
            if first is None:
                start, first = clock(), ms
            wait = start + (ms - first) / 1000 / factor - clock()
            if wait > 0:
                sleep(wait)
        yield record


def replay(loaded: Loaded, bootstrap: str, speed: str = "max", show_progress: bool = True,
           topic: str | None = None) -> int:
    """Produce ``loaded``'s valid transactions; returns how many were sent."""
    from riskcockpit.ground import topics
    from riskcockpit.streams.producer import produce

    factor = parse_speed(speed)
    items = ((tx.ts_ms, contract_json(tx)) for _, tx, _ in loaded.items)
    return produce(bootstrap, paced(items, factor), total=len(loaded.items), topic=topic or topics.TRANSACTIONS,
                   show_progress=show_progress, description=f"replaying {loaded.path.name} ({speed})")
