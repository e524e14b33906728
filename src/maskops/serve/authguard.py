"""Failed-authentication limiting: after ``limit`` invalid keys from one client address within
``window_s`` seconds, that address gets 429 (with ``Retry-After``) on every authenticated route
until the oldest failure leaves the window.

A guessed key is one of 2^256 secrets, so guessing is hopeless anyway; this keeps a guesser (or a
misconfigured client hammering with a stale key) from costing key-store lookups and filling the
logs. Failures are logged with the client address and the count, never with the presented key.
Only invalid keys count: a request without a key (a page loaded before its key was typed) does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger("maskops.serve.auth")


class AuthGuard:
    """Sliding-window counts of failed authentications per client address.

    Args:
        limit: failures allowed per window; the next request from that address is refused (0 = off).
        window_s: the window in seconds.
        clock: monotonic clock (tests pass a fake one).
        max_clients: addresses tracked; the least recently seen are dropped beyond it.
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        if limit < 0 or window_s <= 0:
            raise ValueError(f"limit must be >= 0 and window_s > 0, got {limit}, {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def blocked_for(self, client: str) -> float:
        """Seconds until ``client`` may try again (0.0: it may now)."""
        if self.limit == 0:
            return 0.0
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.limit:
                return 0.0
            return max(times[-self.limit] + self.window_s - now, 0.001)

    def failed(self, client: str, reason: str) -> None:
        """Count (and log) one failed authentication from ``client``; ``reason`` must not hold the key."""
        now = self._clock()
        with self._lock:
            times = self._recent(client, now) or deque()
            self._failures.pop(client, None)
            times.append(now)
            self._failures[client] = times  # re-insert: dict order is the LRU order
            if len(self._failures) > self._max:
                self._failures.pop(next(iter(self._failures)))
            n = len(times)
        logger.warning(
            "failed authentication from %s: %s (%d in the last %.0f s)",
            client,
            reason,
            n,
            self.window_s,
            extra={"client": client, "auth_failures": n},
        )
