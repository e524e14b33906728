"""Rate limiting, one budget per API key (or per client address without auth).

- ``RateLimiter``: an in-memory token bucket (``rate`` per second, ``burst`` capacity) in one process
  (the embedded default).
- ``SqlRateLimiter``: a fixed-window counter in the shared database (``rate_limit_windows``), used when
  the keys live there (PostgreSQL, see ``maskops.serve.keys``), so the limit holds across every
  replica: one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` per request, for the (identity,
  window) row. The window is 1 s (``ceil(1 / rate)`` s below 1 request/s) and takes
  ``max(1, floor(rate * window))`` requests; ``burst`` does not apply. Like any fixed window it may let
  up to twice the budget through across a window boundary; within one window it is exact.
  Rows older than a minute are deleted about once a minute by each replica.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from maskops.serve.keys import KeyStore
    from maskops.serve.settings import ServeSettings

logger = logging.getLogger(__name__)


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


_UPSERT = (
    "INSERT INTO rate_limit_windows (ident, window_start, count) VALUES (:ident, :start, 1) "
    "ON CONFLICT (ident, window_start) DO UPDATE SET count = rate_limit_windows.count + 1 "
    "RETURNING count"
)
_KEEP_S = 60


def window_for(rate: float) -> tuple[int, int]:
    """``(window seconds, requests allowed per window)`` of the shared limiter for ``rate`` per second."""
    window = 1 if rate >= 1 else math.ceil(1.0 / rate)
    return window, max(1, math.floor(rate * window + 1e-9))


class SqlRateLimiter(RateLimiter):
    """A fixed-window counter per identity in the shared database (see the module docstring).

    Args:
        engine: returns the migrated engine (``SqlKeyStore.engine``), called on each request.
        rate: default requests per second (a per-key rate may override it in ``take``).
        burst: kept for the interface; a fixed window has no burst.
        clock: wall clock in seconds (every replica must agree on the window: ``time.time``).
    """

    def __init__(
        self,
        engine: Callable[[], Engine],
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(rate, burst, clock)
        self._engine = engine
        self._next_prune = 0.0

    def take(self, key: str, rate: float | None = None) -> float:
        """Count one request for ``key``; 0.0 when allowed, else the seconds to the next window.

        A database error lets the request through (logged): limiting is not authentication, and
        the key check in front of it already needs the database.
        """
        r = self.rate if rate is None else rate
        if r <= 0:
            return 0.0
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        window, allowed = window_for(r)
        now = self._clock()
        start = int(now // window * window)
        try:
            with self._engine().begin() as conn:
                count = int(conn.execute(text(_UPSERT), {"ident": key[:160], "start": start}).scalar_one())
                if now >= self._next_prune:
                    self._next_prune = now + _KEEP_S
                    conn.execute(
                        text("DELETE FROM rate_limit_windows WHERE window_start < :old"),
                        {"old": int(now) - _KEEP_S},
                    )
        except SQLAlchemyError as exc:
            logger.warning("rate limit not applied (shared counter unavailable): %s", exc)
            return 0.0
        if count <= allowed:
            return 0.0
        return max(start + window - now, 1e-3)


def make_rate_limiter(settings: ServeSettings, keys: KeyStore) -> RateLimiter:
    """The shared limiter when the keys live in the shared database, else the in-memory one."""
    from maskops.serve.keys import SqlKeyStore

    if isinstance(keys, SqlKeyStore):
        return SqlRateLimiter(keys.engine, settings.rate_limit_per_s, settings.rate_limit_burst)
    return RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1 (``Retry-After`` takes integers)."""
    return str(max(1, math.ceil(seconds)))
