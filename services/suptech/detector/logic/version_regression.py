"""Health that got worse right after a change of a system's inventory (a new version)."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

__all__ = ["VersionRegression"]

_SLOTS = 48  # local hour, +24 on a rest day


class VersionRegression(base.AnomalyDetector):
    """Errors or latency persistently above their pre-change level after an inventory change.

    ``x`` holds ``slot`` (local hour, +24 on a rest day), ``error`` (error rate), ``latency``
    (ms), ``change`` (1.0 on the report whose inventory changed) and ``hold`` (1.0 while the
    change is inside a window the institution declared: nothing is judged or learned until it
    ends). The reference is a per-slot exponential mean of log error and log latency, with the
    same hour of any day and then all hours as fallbacks while a slot is new. A change opens a
    watch of ``watch_reports`` reports during which the reference is frozen (so a regression is
    never learned as normal) and each report's excess is the larger of ``log(error/ref) /
    log(error_x)`` and ``log(latency/ref) / log(latency_x)``. The score is the smallest excess
    of the last ``persist`` reports: 1.0 is a regression that has lasted. A change with no
    regression ends its watch after ``settle_reports`` and learning resumes; a change with one
    stays frozen until the watch ends (its findings are a condition, not a new normal).

    Parameters
    ----------
    error_x, latency_x
        Ratios to the pre-change level that score 1.0 (either suffices).
    persist
        Consecutive reports that must all be that far off.
    watch_reports
        Reports after a change during which a regression found is attributed to it.
    settle_reports
        Reports after which a change that has done no harm is taken as harmless.
    alpha
        Weight of a new report in its slot's mean once the slot has ``1/alpha`` reports.
    min_slot
        Reports a slot needs before it is used instead of its fallback.

    Examples
    --------
    >>> import math
    >>> det = VersionRegression()
    >>> def report(i, change=0.0, worse=1.0):
    ...     hour = i // 12 % 24
    ...     load = 0.5 + 0.5 * math.sin(hour / 24 * 2 * math.pi)
    ...     return {"slot": hour, "error": 0.002 * (0.5 + load) * worse,
    ...             "latency": 80 * (0.7 + 0.6 * load), "change": change, "hold": 0.0}
    >>> for i in range(12 * 24 * 3):
    ...     det.learn_one(report(i))
    >>> n = 12 * 24 * 3
    >>> det.learn_one(report(n, change=1.0))  # a new version, no harm
    >>> scores = []
    >>> for i in range(n + 1, n + 8):
    ...     scores.append(det.score_one(report(i)))
    ...     det.learn_one(report(i))
    >>> max(scores) < 0.5
    True
    >>> det.learn_one(report(n + 8, change=1.0))  # another one: errors x6 from now on
    >>> for i in range(n + 9, n + 14):
    ...     score = det.score_one(report(i, worse=6.0))
    ...     det.learn_one(report(i, worse=6.0))
    >>> score > 1.0
    True
    """

    def __init__(
        self,
        error_x: float = 3.0,
        latency_x: float = 1.8,
        persist: int = 4,
        watch_reports: int = 576,
        settle_reports: int = 36,
        alpha: float = 0.05,
        min_slot: int = 2,
    ) -> None:
        self.error_x = error_x
        self.latency_x = latency_x
        self.persist = persist
        self.watch_reports = watch_reports
        self.settle_reports = settle_reports
        self.alpha = alpha
        self.min_slot = min_slot
        # [mean log error, mean log latency, count] per slot; then 24 hour-of-day rows; then all.
        self._ref = array("d", [0.0] * (3 * (_SLOTS + 25)))
        self.watch = 0  # reports of the current watch still to come (0: not watching)
        self._recent: list[float] = []  # excesses of the last reports of the watch
        self.flagged = False

    def _row(self, slot: int) -> int:
        ref = self._ref
        for row in (slot, _SLOTS + slot % 24, _SLOTS + 24):
            if ref[3 * row + 2] >= self.min_slot:
                return 3 * row
        return -1

    def _excess(self, x: dict[Any, Any]) -> float:
        i = self._row(int(x["slot"]))
        if i < 0:
            return 0.0
        ref = self._ref
        le = (math.log(float(x["error"]) + 1e-6) - ref[i]) / math.log(self.error_x)
        ll = (math.log(float(x["latency"]) + 1e-3) - ref[i + 1]) / math.log(self.latency_x)
        return le if le > ll else ll

    def error_ratio(self, x: dict[Any, Any]) -> float:
        """Error rate of ``x`` over its reference at that slot (1.0 without a reference)."""
        i = self._row(int(x["slot"]))
        return math.exp(math.log(float(x["error"]) + 1e-6) - self._ref[i]) if i >= 0 else 1.0

    def latency_ratio(self, x: dict[Any, Any]) -> float:
        """Latency of ``x`` over its reference at that slot (1.0 without a reference)."""
        i = self._row(int(x["slot"]))
        return math.exp(math.log(float(x["latency"]) + 1e-3) - self._ref[i + 1]) if i >= 0 else 1.0

    def score_one(self, x: dict[Any, Any]) -> float:
        if not self.watch or x.get("hold"):
            return 0.0
        recent = [*self._recent[max(0, len(self._recent) - self.persist + 1) :], self._excess(x)]
        if len(recent) < self.persist:
            return 0.0
        low = min(recent)
        return low if low > 0.0 else 0.0

    def learn_one(self, x: dict[Any, Any]) -> None:
        if x.get("change"):
            self.watch = self.watch_reports
            self._recent = []
        if x.get("hold"):
            self._recent = []
            return
        if self.watch:
            self._recent.append(self._excess(x))
            del self._recent[: -self.persist]
            if len(self._recent) == self.persist and min(self._recent) >= 1.0:
                self.flagged = True
            self.watch -= 1
            # A change that did no harm: its watch ends early, and learning resumes.
            if not self.flagged and self.watch <= self.watch_reports - self.settle_reports:
                self.watch = 0
            if self.watch:
                return
            self.flagged = False
            self._recent = []
            return
        self.learn_normal(int(x["slot"]), float(x["error"]), float(x["latency"]))

    def learn_normal(self, slot: int, error: float, latency: float) -> None:
        """Learn a report into the reference: :meth:`learn_one` of a report with no change and
        no hold while no change is watched (the engine calls it directly on that path)."""
        le = math.log(error + 1e-6)
        ll = math.log(latency + 1e-3)
        ref = self._ref
        alpha = self.alpha
        for row in (slot, _SLOTS + slot % 24, _SLOTS + 24):
            i = 3 * row
            n = ref[i + 2] + 1.0
            ref[i + 2] = n
            w = 1.0 / n if 1.0 / n > alpha else alpha
            ref[i] += w * (le - ref[i])
            ref[i + 1] += w * (ll - ref[i + 1])
