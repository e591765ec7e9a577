"""Per-application rate limit: one token bucket per key, in the worker's memory.

A bucket holds up to ``burst`` calls and refills at ``rate`` calls per second; a call finding it
empty is told how long to wait (``Retry-After``). The limit applies per worker process: with N
workers an application gets at most N times the rate (docs/security.md).
"""

from __future__ import annotations

import threading
import time

_MAX_KEYS = 10_000  # beyond this, full (idle) buckets are forgotten: keys can come from unauthenticated input


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, time of last update]
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one call from ``key``'s bucket: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_KEYS:
                    self._forget_idle(now)
                bucket = self._buckets[key] = [self.burst, now]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full = [k for k, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
