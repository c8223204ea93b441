"""Per-institution token buckets: one institution cannot crowd out the others."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``rate`` events per second per institution, with bursts up to ``burst`` events."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        # institution -> (tokens, time of last refill)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, institution_id: str, n: int) -> float:
        """Take ``n`` tokens and return 0, or take none and return the seconds to wait."""
        now = self._clock()
        tokens, last = self._buckets.get(institution_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= n:
            self._buckets[institution_id] = (tokens - n, now)
            return 0.0
        self._buckets[institution_id] = (tokens, now)
        return (n - tokens) / self._rate
