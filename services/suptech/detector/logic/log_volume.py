"""Robust z-score of an access's volume (records, bytes) against one habit, in a flat array."""

from __future__ import annotations

from array import array
from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots, constructor_settings, set_slots

__all__ = ["LogVolume"]

# Scales a mean absolute deviation to a standard deviation for normal data.
_MAD_TO_SIGMA = 1.2533
_FEATURES = ("records", "bytes")


class LogVolume(PackedSlots, base.AnomalyDetector):
    """Largest upward z-score of ``log1p`` records and bytes against an exponentially weighted
    baseline: :class:`~suptech.detector.logic.robust_zscore.RobustZScore` for the two volume
    features of a data access, its state in one array of four doubles (a million actors hold
    two habits each).

    The baseline is an exponentially weighted mean and mean absolute deviation per feature; the
    update clips each residual at ``clip`` deviations, so an outlier that slips through moves the
    baseline by a bounded amount. Early on the weight is ``1/n`` (a plain mean).

    Parameters
    ----------
    alpha
        Weight of a new observation once warmed up (about ``1/alpha`` observations of memory).
    clip
        Residuals are clipped at this many deviations when learning (from the fourth on).
    floor
        Smallest deviation per feature, so a constant history does not make every change
        infinite.

    Examples
    --------
    >>> import math
    >>> det = LogVolume(alpha=0.05)
    >>> for r in [10, 11, 9, 10, 12, 10, 9, 11]:
    ...     det.learn_one({"records": math.log1p(r), "bytes": math.log1p(500 * r)})
    >>> det.score_one({"records": math.log1p(11), "bytes": math.log1p(5_500)}) < 1.0
    True
    >>> det.score_one({"records": math.log1p(5_000), "bytes": math.log1p(2.5e6)}) > 6.0
    True
    >>> round(math.expm1(det.baseline("records")))
    10
    """

    __slots__ = ("alpha", "clip", "floor", "n", "_st")

    def __init__(self, alpha: float = 0.02, clip: float = 3.0, floor: float = 0.5) -> None:
        self.alpha = alpha
        self.clip = clip
        self.floor = floor
        #: Observations learned.
        self.n = 0
        # mean and mean absolute deviation of records, then of bytes
        self._st = array("d", bytes(32))

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots(self, state, _SETTINGS)

    def learn(self, records: float, bytes_: float) -> None:
        """:meth:`learn_one` without the dict: the family calls it for every data access."""
        st = self._st
        self.n = n = self.n + 1
        if n == 1:
            st[0] = records
            st[2] = bytes_
            return
        w = 1.0 / n
        if w < self.alpha:
            w = self.alpha
        # The two features unrolled: this runs for every data access.
        m, d = st[0], st[1]
        r = records - m
        if n > 3:
            lim = d * _MAD_TO_SIGMA
            lim = self.clip * (lim if lim > self.floor else self.floor)
            r = lim if r > lim else -lim if r < -lim else r
        st[0] = m + w * r
        st[1] = d + w * ((r if r >= 0.0 else -r) - d)
        m, d = st[2], st[3]
        r = bytes_ - m
        if n > 3:
            lim = d * _MAD_TO_SIGMA
            lim = self.clip * (lim if lim > self.floor else self.floor)
            r = lim if r > lim else -lim if r < -lim else r
        st[2] = m + w * r
        st[3] = d + w * ((r if r >= 0.0 else -r) - d)

    def score(self, records: float, bytes_: float) -> float:
        """:meth:`score_one` without the dict."""
        if not self.n:
            return 0.0
        st = self._st
        floor = self.floor
        s = st[1] * _MAD_TO_SIGMA
        z1 = (records - st[0]) / (s if s > floor else floor)
        s = st[3] * _MAD_TO_SIGMA
        z2 = (bytes_ - st[2]) / (s if s > floor else floor)
        best = z1 if z1 > z2 else z2
        return best if best > 0.0 else 0.0

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.learn(float(x.get("records", 0.0)), float(x.get("bytes", 0.0)))

    def score_one(self, x: dict[Any, Any]) -> float:
        return self.score(float(x.get("records", 0.0)), float(x.get("bytes", 0.0)))

    def baseline(self, feature: str) -> float:
        """Learned normal level of ``feature`` (``records`` or ``bytes``, log1p scale)."""
        return self._st[2 * _FEATURES.index(feature)] if feature in _FEATURES else 0.0

    def contributions(self, x: dict[Any, Any]) -> dict[str, float]:
        """Upward z-score per feature, for explanations."""
        out = {}
        st = self._st
        for i, k in enumerate(_FEATURES):
            if k in x and self.n:
                sd = max(st[2 * i + 1] * _MAD_TO_SIGMA, self.floor)
                out[k] = max(0.0, (float(x[k]) - st[2 * i]) / sd)
        return out


# Constructor settings: shared between restored instances (slot_state.py).
_SETTINGS = constructor_settings(LogVolume)
