"""One-sided CUSUM for slow drifts: small excesses that add up over many periods."""

from __future__ import annotations

from typing import Any

from river import base

__all__ = ["CusumDrift"]

_MAD_TO_SIGMA = 1.2533


class CusumDrift(base.AnomalyDetector):
    """Cumulative sum of standardised excess of ``x[feature]`` over its learned normal level.

    Each observation adds ``(x - mean) / sigma - k`` to the sum, which never goes below zero; the
    score is the sum divided by ``h`` (1.0 is the decision interval). A slow drip that stays just
    above normal for many periods accumulates while each period alone looks unremarkable. The
    baseline is learned only while the sum is below ``h / 2``, so a drift is not absorbed as normal.

    Examples
    --------
    >>> det = CusumDrift(feature="records", h=5.0)
    >>> for v in [10.0, 12.0, 9.0, 11.0, 10.0, 8.0, 12.0, 10.0]:
    ...     det.learn_one({"records": v})
    >>> det.score_one({"records": 11.0}) < 0.5
    True
    >>> for _ in range(6):
    ...     det.learn_one({"records": 16.0})
    >>> det.score_one({"records": 16.0}) > 1.0
    True
    """

    def __init__(
        self,
        feature: str = "value",
        k: float = 0.5,
        h: float = 8.0,
        alpha: float = 0.05,
        floor: float = 1.0,
    ) -> None:
        self.feature = feature
        self.k = k
        self.h = h
        self.alpha = alpha
        self.floor = floor
        self.n = 0
        self.sum = 0.0
        self.mean = 0.0
        self.dev = 0.0

    def _step(self, v: float) -> float:
        if self.n == 0:
            return 0.0
        sigma = max(self.dev * _MAD_TO_SIGMA, self.floor)
        return max(0.0, self.sum + (v - self.mean) / sigma - self.k)

    def score_one(self, x: dict[Any, Any]) -> float:
        return self._step(float(x.get(self.feature, 0.0))) / self.h

    def reset(self) -> None:
        """Start a new sum after an alarm, keeping the learned baseline (standard CUSUM)."""
        self.sum = 0.0

    def learn_one(self, x: dict[Any, Any]) -> None:
        v = float(x.get(self.feature, 0.0))
        self.sum = self._step(v)
        if self.sum >= self.h / 2:
            return
        self.n += 1
        w = max(self.alpha, 1.0 / self.n)
        r = v - self.mean
        self.mean += w * r
        self.dev += w * (abs(r) - self.dev)
