"""Which events were already processed: per (institution, event id), over a horizon of event time.

Event ids are made by each institution's client, so two institutions may use the same one: the
key is the pair. An id is remembered by the caller once its event was processed; an event that
failed is not, so putting it back (``suptech-ops deadletters --replay``) processes it. Ids are
kept in hour buckets of their event time and forgotten once the watermark is ``horizon_ns`` past
their bucket; ``capacity`` bounds memory besides (the oldest buckets go first).
"""

from __future__ import annotations

from collections import deque

from suptech.detector.logic.config import HOUR_NS

__all__ = ["SeenEvents"]

_BUCKET_NS = HOUR_NS


class SeenEvents:
    """Processed (institution, event id) pairs.

    >>> seen = SeenEvents(horizon_ns=2 * 3600 * 10**9, capacity=100)
    >>> seen.add("bank-a", "evt-1", 0)
    >>> ("bank-a", "evt-1") in seen, ("bank-b", "evt-1") in seen
    (True, False)
    >>> seen.forget_before(4 * 3600 * 10**9)
    1
    >>> ("bank-a", "evt-1") in seen
    False
    """

    def __init__(self, horizon_ns: int, capacity: int) -> None:
        if horizon_ns <= 0 or capacity <= 0:
            raise ValueError("horizon_ns and capacity must be positive")
        self.horizon_ns = horizon_ns
        self.capacity = capacity
        # key -> bucket of its event time; bucket -> keys added in it (a key re-added later
        # moves to its newer bucket: the stale entry is skipped when the old bucket goes).
        self._bucket_of: dict[tuple[str, str], int] = {}
        self._buckets: dict[int, deque[tuple[str, str]]] = {}
        self.forgotten = 0

    def __contains__(self, key: object) -> bool:
        return key in self._bucket_of

    def __len__(self) -> int:
        return len(self._bucket_of)

    def clear(self) -> None:
        self._bucket_of.clear()
        self._buckets.clear()

    def add(self, institution_id: str, event_id: str, event_time_ns: int) -> None:
        self.add_key((institution_id, event_id), event_time_ns)

    def add_key(self, key: tuple[str, str], event_time_ns: int) -> None:
        """:meth:`add` of the pair ``key`` (the engine made it to ask whether it was seen)."""
        bucket = event_time_ns // _BUCKET_NS
        if self._bucket_of.get(key, bucket - 1) >= bucket:
            return
        self._bucket_of[key] = bucket
        keys = self._buckets.get(bucket)
        if keys is None:
            keys = self._buckets[bucket] = deque()
        keys.append(key)
        while len(self._bucket_of) > self.capacity:
            self._drop_oldest_key()

    def forget_before(self, watermark_ns: int) -> int:
        """Forget ids whose event time is more than the horizon behind ``watermark_ns``."""
        cutoff = (watermark_ns - self.horizon_ns) // _BUCKET_NS
        dropped = 0
        for bucket in [b for b in self._buckets if b < cutoff]:
            dropped += self._drop(bucket)
        return dropped

    def _drop(self, bucket: int) -> int:
        dropped = 0
        for key in self._buckets.pop(bucket):
            if self._bucket_of.get(key) == bucket:
                del self._bucket_of[key]
                dropped += 1
        self.forgotten += dropped
        return dropped

    def _drop_oldest_key(self) -> None:
        oldest = min(self._buckets)
        keys = self._buckets[oldest]
        key = keys.popleft()
        if not keys:
            del self._buckets[oldest]
        if self._bucket_of.get(key) == oldest:
            del self._bucket_of[key]
            self.forgotten += 1
