"""Token-bucket rate limiting, one bucket per API key (or per client address without auth)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Buckets of ``burst`` tokens refilled at ``rate`` tokens per second.

    Args:
        rate: default refill per second (a per-key rate may override it in ``take``).
        burst: bucket capacity.
        clock: monotonic clock (tests pass a fake one).
        max_buckets: buckets kept; the least recently used are dropped beyond it.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 10_000,
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"rate must be >= 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_buckets
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: float | None = None) -> float:
        """Take one token for ``key``.

        Returns:
            0.0 when allowed, else the seconds until a token is available (for ``Retry-After``).
        """
        r = self.rate if rate is None else rate
        if r <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            b = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
            b.tokens = min(float(self.burst), b.tokens + (now - b.updated) * r)
            b.updated = now
            self._buckets[key] = b  # re-insert: dict order is the LRU order
            if len(self._buckets) > self._max:
                self._buckets.pop(next(iter(self._buckets)))
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / r


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1 (``Retry-After`` takes integers)."""
    return str(max(1, math.ceil(seconds)))
