"""Per-entity robust z-score on an exponentially weighted baseline."""

from __future__ import annotations

from typing import Any

from river import base

__all__ = ["RobustZScore"]

# Scales a mean absolute deviation to a standard deviation for normal data.
_MAD_TO_SIGMA = 1.2533


class RobustZScore(base.AnomalyDetector):
    """Largest upward z-score of the features against the entity's own EWMA baseline.

    The baseline is an exponentially weighted mean and mean absolute deviation per feature; the
    update clips each residual at ``clip`` deviations so a single outlier that slips through moves
    the baseline by a bounded amount. Early on the weight is ``1/n`` (a plain mean) so a handful of
    observations give a usable baseline.

    Parameters
    ----------
    alpha
        Weight of a new observation once warmed up (about ``1/alpha`` observations of memory).
    clip
        Residuals are clipped at this many deviations when learning.
    floor
        Smallest deviation per feature, so a constant history does not make every change infinite.

    Examples
    --------
    >>> det = RobustZScore(alpha=0.05)
    >>> for v in [10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 9.0, 11.0]:
    ...     det.learn_one({"records": v})
    >>> det.score_one({"records": 10.5}) < 1.0
    True
    >>> det.score_one({"records": 40.0}) > 10.0
    True
    """

    def __init__(self, alpha: float = 0.02, clip: float = 3.0, floor: float = 0.1) -> None:
        self.alpha = alpha
        self.clip = clip
        self.floor = floor
        self.n = 0
        self._mean: dict[str, float] = {}
        self._dev: dict[str, float] = {}

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.n += 1
        w = max(self.alpha, 1.0 / self.n)
        for k, v in x.items():
            m = self._mean.get(k)
            if m is None:
                self._mean[k] = v
                self._dev[k] = 0.0
                continue
            d = self._dev[k]
            lim = self.clip * max(d * _MAD_TO_SIGMA, self.floor)
            r = v - m
            if self.n > 3:
                r = max(-lim, min(lim, r))
            self._mean[k] = m + w * r
            self._dev[k] = d + w * (abs(r) - d)

    def score_one(self, x: dict[Any, Any]) -> float:
        best = 0.0
        for k, v in x.items():
            m = self._mean.get(k)
            if m is None:
                continue
            z = (v - m) / max(self._dev[k] * _MAD_TO_SIGMA, self.floor)
            if z > best:
                best = z
        return best

    def baseline(self, feature: str) -> float:
        """Learned normal level of ``feature`` (0 when unseen), for explanations."""
        return self._mean.get(feature, 0.0)

    def contributions(self, x: dict[Any, Any]) -> dict[str, float]:
        """Upward z-score per feature, for explanations."""
        out = {}
        for k, v in x.items():
            m = self._mean.get(k)
            if m is not None:
                out[k] = max(0.0, (v - m) / max(self._dev[k] * _MAD_TO_SIGMA, self.floor))
        return out
