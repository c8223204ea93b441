"""Records returned per query by an interface, hour by hour, against its own reference."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots

__all__ = ["RecordsPerQuery"]


class RecordsPerQuery(PackedSlots, base.AnomalyDetector):
    """z-score of this hour's mean ``log1p(records)`` per query against the entity's reference.

    A partner interface that suddenly returns many times more records per query at its usual
    query rate (a broken filter, a caller paging through customers) moves no rate and, query by
    query, stays within the spread of ordinary answers; the mean of an hour's queries does not:
    its standard error is the per-query deviation over the square root of the count. The
    reference is an exponentially weighted mean and variance of ``log1p(records)`` per query;
    callers learn only queries they did not flag. ``x`` is ``{"hour": h, "records": n}`` (``h``
    the absolute hour of the event); :meth:`score_one` is the z of the hour's mean with ``x`` in
    it (0 until ``warmup`` queries and ``min_queries`` in the hour).

    Parameters
    ----------
    alpha
        Weight of a new query in the reference once warmed up.
    warmup
        Queries learned before the score is not 0.
    min_queries
        Queries in the hour before its mean is judged.
    floor
        Smallest per-query deviation of ``log1p(records)``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> det = RecordsPerQuery()
    >>> for i in range(400):
    ...     det.learn_one({"hour": i // 8, "records": int(rng.lognormvariate(1.3, 0.6))})
    >>> ordinary = [int(rng.lognormvariate(1.3, 0.6)) for _ in range(8)]
    >>> inflated = [int(8 * rng.lognormvariate(1.3, 0.6)) for _ in range(8)]
    >>> def hour(h, values):
    ...     for v in values[:-1]:
    ...         det.add(h, v)
    ...     return det.score_one({"hour": h, "records": values[-1]})
    >>> hour(100, ordinary) < 3.0 < 6.0 < hour(101, inflated)
    True
    """

    __slots__ = ("alpha", "warmup", "min_queries", "floor", "_st")

    def __init__(
        self, alpha: float = 0.01, warmup: int = 50, min_queries: int = 5, floor: float = 0.2
    ) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.min_queries = min_queries
        self.floor = floor
        # queries learned, reference mean, reference variance, current hour, its queries,
        # their sum of log1p(records)
        self._st = array("d", [0.0, 0.0, 0.0, -1.0, 0.0, 0.0])

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def n(self) -> int:
        """Queries learned into the reference."""
        return int(self._st[0])

    def reference(self) -> float:
        """Reference records per query (the exponentiated mean of ``log1p``)."""
        return math.expm1(self._st[1])

    def hour_mean(self) -> float:
        """Records per query in the current hour (same scale as :meth:`reference`)."""
        st = self._st
        return math.expm1(st[5] / st[4]) if st[4] else 0.0

    def add(self, hour: int, records: int) -> None:
        """Count a query in its hour (without learning it into the reference)."""
        st = self._st
        if hour != st[3]:
            if hour < st[3]:
                return
            st[3] = float(hour)
            st[4] = st[5] = 0.0
        st[4] += 1.0
        st[5] += math.log1p(records)

    def z(self) -> float:
        """z of the current hour's mean against the reference (0 while too few queries)."""
        st = self._st
        if st[0] < self.warmup or st[4] < self.min_queries:
            return 0.0
        sd = math.sqrt(st[2])
        if sd < self.floor:
            sd = self.floor
        return (st[5] / st[4] - st[1]) / sd * math.sqrt(st[4])

    def learn(self, records: int) -> None:
        """Learn one query into the reference."""
        st = self._st
        v = math.log1p(records)
        n = st[0] + 1.0
        st[0] = n
        w = 1.0 / n
        if w < self.alpha:
            w = self.alpha
        r = v - st[1]
        st[1] += w * r
        st[2] = (1.0 - w) * (st[2] + w * r * r)

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.add(int(x["hour"]), int(x["records"]))
        self.learn(int(x["records"]))

    def score_one(self, x: dict[Any, Any]) -> float:
        st = self._st
        saved = st[3], st[4], st[5]
        self.add(int(x["hour"]), int(x["records"]))
        z = self.z()
        st[3], st[4], st[5] = saved
        return z
