"""A token bucket per receiver: chat robots ban senders that exceed their quota."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate  # tokens per second
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def try_take(self) -> float:
        """Take a token and return 0, or return how long until one is available."""
        with self._lock:
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate

    def take(self, stop: threading.Event | None = None) -> bool:
        """Block until a token is taken; False if ``stop`` was set meanwhile."""
        while True:
            wait = self.try_take()
            if wait == 0:
                return True
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)
