"""Durations as people write them in YAML and on the command line: 500ms, 30s, 15m, 4h, 7d."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``'15m'``; a bare number is seconds.

    >>> parse_duration("15m"), parse_duration("500ms"), parse_duration(2)
    (900.0, 0.5, 2.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration such as 30s, 10m, 24h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match[1]) * _UNITS[match[2]]
        if value.strip() == "0":
            return 0.0
    raise ValueError(f"{value!r} is not a duration such as 30s, 10m, 24h or 7d")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: ``format_duration(900) == '15m'``."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == 0:
        return "0s"
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"
