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
        # Written with local names and no max()/min() calls: it runs for every data access.
        self.n = n = self.n + 1
        w = 1.0 / n
        if w < self.alpha:
            w = self.alpha
        means = self._mean
        devs = self._dev
        clip = self.clip
        floor = self.floor
        for k, v in x.items():
            m = means.get(k)
            if m is None:
                means[k] = v
                devs[k] = 0.0
                continue
            d = devs[k]
            r = v - m
            if n > 3:
                lim = d * _MAD_TO_SIGMA
                lim = clip * (lim if lim > floor else floor)
                if r > lim:
                    r = lim
                elif r < -lim:
                    r = -lim
            means[k] = m + w * r
            devs[k] = d + w * ((r if r >= 0.0 else -r) - d)

    def score_one(self, x: dict[Any, Any]) -> float:
        best = 0.0
        means = self._mean
        floor = self.floor
        for k, v in x.items():
            m = means.get(k)
            if m is None:
                continue
            sigma = self._dev[k] * _MAD_TO_SIGMA
            z = (v - m) / (sigma if sigma > floor else floor)
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
