"""Durations as people write them in YAML and on the command line: 500ms, 30s, 15m, 4h, 7d.

One grammar for every setting: a number with one of the units ms, s, m, h, d; a bare number is
seconds. Negative durations and booleans are refused. The indicators keep theirs in
milliseconds (:func:`parse_duration_ms`), the alerting in seconds (:func:`parse_duration`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_MILLISECONDS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_EXPECTED = "is not a duration such as 30s, 10m, 24h or 7d"


def _parts(value: object) -> tuple[float, str | None]:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} {_EXPECTED}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r}: a duration cannot be negative")
        return value, None
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} {_EXPECTED}")
    return float(match[1]), match[2]


def parse_duration(value: object) -> float:
    """Seconds from ``'15m'``; a bare number is seconds.

    >>> parse_duration("15m"), parse_duration("500ms"), parse_duration(2), parse_duration("0")
    (900.0, 0.5, 2.0, 0.0)
    >>> parse_duration(-1)
    Traceback (most recent call last):
    ...
    ValueError: -1: a duration cannot be negative
    """
    number, unit = _parts(value)
    return float(number) * _SECONDS[unit]


def parse_duration_ms(value: object) -> int:
    """Milliseconds from ``"10m"``; a bare number is seconds.

    >>> parse_duration_ms("10m"), parse_duration_ms("1.5h"), parse_duration_ms(30)
    (600000, 5400000, 30000)
    >>> parse_duration_ms("soon")
    Traceback (most recent call last):
    ...
    ValueError: 'soon' is not a duration such as 30s, 10m, 24h or 7d
    """
    number, unit = _parts(value)
    return int(number * _MILLISECONDS[unit])


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: ``format_duration(900) == '15m'``."""
    for unit in ("d", "h", "m", "s"):
        size = _SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == 0:
        return "0s"
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"
