"""Unpatched critical vulnerabilities piling up and ageing past what the system's patching keeps
them to."""

from __future__ import annotations

from typing import Any

from river import base

__all__ = ["VulnBacklog"]

_DAY_S = 86_400.0


class VulnBacklog(base.AnomalyDetector):
    """Backlog of unpatched critical vulnerabilities against the system's own patching.

    ``x["t"]`` is the report's event time (epoch seconds), ``x["count"]`` the unpatched critical
    vulnerabilities and ``x["age_days"]`` the age of the oldest. The detector learns the levels
    the system's patching normally keeps them under: the maximum of each over its first
    ``warmup_days``, then a level that follows higher reports by at most ``rise_per_day`` (a
    backlog growing faster than that is never learned as normal) and forgets by
    ``forget_per_day`` while reports stay lower; only reports it does not flag are learned. The
    score is the larger of

    - the oldest age against ``max(min_age_days, age_factor x its usual age)``: a vulnerability
      left far longer than this system ever leaves one;
    - the count's excess over its usual level in units of ``count_margin``, once the history
      covers ``warmup_days`` and only while the oldest is older than usual (a batch of fresh
      advisories that the system patches in its usual time is not a backlog).

    1.0 is a backlog worth a finding. Before any history only the age term applies, against
    ``min_age_days``.

    Parameters
    ----------
    min_age_days
        Age of the oldest unpatched critical vulnerability that scores 1.0 at least.
    age_factor
        Multiple of the system's usual oldest age that scores 1.0.
    count_margin
        Vulnerabilities above the usual count that score 1.0.
    forget_per_day
        How fast the usual levels come down (count and days per day) when reports stay lower.
    rise_per_day
        How fast, after the warm-up, they may follow higher reports.
    warmup_days
        History during which the usual levels are plain maxima; the count term applies after.

    Examples
    --------
    >>> det = VulnBacklog()
    >>> day = 86_400.0
    >>> for i in range(8 * 24):  # a system that patches within three days
    ...     det.learn_one({"t": i * 3600.0, "count": 2 + i % 2, "age_days": (i // 24) % 3})
    >>> det.score_one({"t": 8 * day, "count": 3, "age_days": 2}) < 1.0
    True
    >>> det.score_one({"t": 8 * day, "count": 7, "age_days": 4}) >= 1.0  # piling up
    True
    >>> det.score_one({"t": 8 * day, "count": 3, "age_days": 31}) >= 1.0  # one left for a month
    True
    """

    def __init__(
        self,
        min_age_days: float = 7.0,
        age_factor: float = 2.0,
        count_margin: float = 3.0,
        forget_per_day: float = 0.25,
        rise_per_day: float = 0.5,
        warmup_days: float = 2.0,
    ) -> None:
        self.min_age_days = min_age_days
        self.age_factor = age_factor
        self.count_margin = count_margin
        self.forget_per_day = forget_per_day
        self.rise_per_day = rise_per_day
        self.warmup_days = warmup_days
        self.usual_count = 0.0
        self.usual_age = 0.0
        self._first = -1.0
        self._last = -1.0

    def _decayed(self, t: float) -> tuple[float, float]:
        if self._last < 0.0:
            return 0.0, 0.0
        fall = max(t - self._last, 0.0) / _DAY_S * self.forget_per_day
        return max(self.usual_count - fall, 0.0), max(self.usual_age - fall, 0.0)

    def score_one(self, x: dict[Any, Any]) -> float:
        t = float(x["t"])
        count = float(x["count"])
        age = float(x["age_days"]) if count > 0 else 0.0
        usual_count, usual_age = self._decayed(t)
        score = age / max(self.min_age_days, self.age_factor * usual_age)
        warm = self._first >= 0.0 and t - self._first >= self.warmup_days * _DAY_S
        if warm and age > usual_age:
            excess = (count - usual_count) / self.count_margin
            if excess > score:
                score = excess
        return score

    def learn_one(self, x: dict[Any, Any]) -> None:
        t = float(x["t"])
        count = float(x["count"])
        age = float(x["age_days"]) if count > 0 else 0.0
        usual_count, usual_age = self._decayed(t)
        if self._first < 0.0:
            self._first = t
        if t - self._first < self.warmup_days * _DAY_S:
            self.usual_count = max(usual_count, count)
            self.usual_age = max(usual_age, age)
        else:
            rise = max(t - self._last, 0.0) / _DAY_S * self.rise_per_day
            self.usual_count = max(usual_count, min(count, self.usual_count + rise))
            self.usual_age = max(usual_age, min(age, self.usual_age + rise))
        self._last = max(self._last, t)
