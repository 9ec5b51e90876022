"""When to try again: exponential backoff with jitter, and the receiver's own Retry-After."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from riskcockpit.alerting.config import RetryPolicy


def backoff_delay(failures: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Delay after the ``failures``-th failed attempt: half fixed, half random ("equal jitter").

    The fixed half keeps the delay growing; the random half spreads retries of many
    notifications to one recovering receiver so they do not arrive as one wave.
    """
    rng = rng or random
    ceiling = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** max(0, failures - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def next_delay(failures: int, policy: RetryPolicy, retry_after: float | None,
               rng: random.Random | None = None) -> float:
    delay = backoff_delay(failures, policy, rng)
    if retry_after is not None:
        # The receiver knows best when it can take more, but it cannot park a notification for ever.
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return delay
