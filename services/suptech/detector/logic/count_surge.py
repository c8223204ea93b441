"""Surges of a count (complaints, incidents) against its expected rate per user: a Poisson scan."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

__all__ = ["CountSurge", "poisson_log_sf"]


def poisson_log_sf(k: float, lam: float) -> float:
    """Upper bound of ``log P(X >= k)`` for ``X ~ Poisson(lam)``, tight when ``k`` is well
    above ``lam`` (the only case a surge test needs); 0 when ``k <= lam``.

    The terms from ``k`` on fall at least geometrically, by ``lam / (k + 1)``, so their sum is
    at most the first over ``1 - lam / (k + 1)``: one ``lgamma``, whatever the count. ``k`` may
    be fractional (a quasi-Poisson count divided by its dispersion).

    >>> round(math.exp(poisson_log_sf(5, 1.0)), 4)  # exact: 0.0037
    0.0037
    >>> poisson_log_sf(2, 3.0)
    0.0
    """
    if k <= lam or k <= 0.0:
        return 0.0
    if lam <= 0.0:
        return -math.inf
    log_term = k * math.log(lam) - lam - math.lgamma(k + 1.0)
    return min(0.0, log_term - math.log1p(-lam / (k + 1.0)))


class CountSurge(base.AnomalyDetector):
    """Calibrated surge score of an hourly count, scaled by the users exposed to it.

    ``x["count"]`` is the count of one report (complaints, incidents), ``x["exposure"]`` the
    users it comes from and ``x["slot"]`` the local hour. The expected count is ``exposure x
    rate[slot]``: each hour's rate per user is learned with forgetting (about ``memory``
    reports) and shrunk toward the all-hours rate by a prior of ``prior_counts`` counts, so a
    small app with a few complaints a week uses one rate for the day and a large one learns its
    daily rhythm. Over the last ``w`` reports for each ``w`` in ``windows`` the observed total
    is tested against the expected total (quasi-Poisson: both divided by the dispersion learned
    from the reports, at least 1). The score is ``1 - p`` with ``p`` the smallest tail
    probability times the number of windows: the probability that a normal report of this
    entity is less surprising. The same model serves an app with three complaints a day (a
    surge shows over a day) and one with a million users (a 2.5x surge shows within hours).

    After the first ``warmup`` reports a report is learned into the rates only once it has left
    the longest window, and never if it was part of a surge: the baseline a window is tested
    against never contains that window, so a surge that builds up slowly is not learned as it
    goes. The reports of a surge already reported are left out of later windows (they would
    keep the long windows high for days after it). :meth:`alarm` says whether a score is a
    surge worth a finding: ``p <= alpha``, at least ``min_count`` counts in the window and
    ``min_ratio`` times the expected, after ``warmup`` learned reports.

    Parameters
    ----------
    windows
        Lengths, in reports, of the windows scanned.
    alpha
        Window-corrected tail probability at or below which a surge is reported.
    min_count, min_ratio
        Smallest surge worth reporting: counts in the window, and times the expected.
    memory
        Reports after which an old report weighs 1/e in the rates.
    prior_counts
        Strength, in counts, of the all-hours rate in each hour's rate.
    warmup
        Reports learned (after their lag) before any alarm.
    slots
        Hours in a day (the slot is taken modulo this).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> def poisson(lam):
    ...     k, p, limit = 0, rng.random(), math.exp(-lam)
    ...     while p > limit:
    ...         k, p = k + 1, p * rng.random()
    ...     return k
    >>> det = CountSurge()
    >>> for i in range(24 * 14):  # 3 complaints a day from 20k users
    ...     det.learn_one({"count": poisson(3 / 24), "exposure": 20_000, "slot": i % 24})
    >>> scores, alarms = [], []
    >>> for i in range(24):  # 15 a day
    ...     x = {"count": poisson(15 / 24), "exposure": 20_000, "slot": i % 24}
    ...     scores.append(det.score_one(x))
    ...     alarms.append(det.alarm(scores[-1]))
    ...     det.learn_one(x)
    >>> alarms.index(True)  # reports (hours) into the surge
    14
    >>> 0.0 <= min(scores) <= max(scores) <= 1.0
    True
    """

    def __init__(
        self,
        windows: tuple[int, ...] = (1, 3, 6, 12, 24, 48),
        alpha: float = 1e-4,
        min_count: int = 3,
        min_ratio: float = 2.0,
        memory: int = 24 * 21,
        prior_counts: float = 5.0,
        warmup: int = 24,
        slots: int = 24,
    ) -> None:
        self.windows = tuple(sorted(windows))
        self.alpha = alpha
        self.min_count = min_count
        self.min_ratio = min_ratio
        self.memory = memory
        self.prior_counts = prior_counts
        self.warmup = warmup
        self.slots = slots
        self.n = 0  # reports learned into the rates
        # Decayed counts and exposures per hour, and their totals.
        self._counts = array("d", [0.0] * slots)
        self._exposure = array("d", [0.0] * slots)
        self._total = [0.0, 0.0]
        # Mean Pearson residual of the learned reports (1 for Poisson counts).
        self._pearson = 1.0
        # [count, exposure, slot, part of a surge, learned] of the last reports, oldest first.
        self._recent: list[list[Any]] = []
        # Observed and expected totals, and length, of the window that gave the last score.
        self.observed = 0.0
        self.expected = 0.0
        self.window = 0
        # Rates as of the last learned report, and the last scan (score_one then learn_one of
        # the same report, as the engine calls them, scan once).
        self._rates_cache: list[float] | None = None
        self._scanned: tuple[float, float, int, int, tuple[float, float, float, int]] | None = None

    def _rates(self) -> list[float]:
        if self._rates_cache is not None:
            return self._rates_cache
        counts, exposure = self._total
        if exposure <= 0.0:
            return [0.0] * self.slots
        k = self.prior_counts
        prior_exposure = k * exposure / (counts + 0.5)
        self._rates_cache = [
            (c + k) / (e + prior_exposure)
            for c, e in zip(self._counts, self._exposure, strict=True)
        ]
        return self._rates_cache

    def expected_count(self, x: dict[Any, Any]) -> float:
        """Expected count of a report like ``x`` from the rates learned so far."""
        return float(x["exposure"]) * self._rates()[int(x["slot"]) % self.slots]

    def _scan(self, x: dict[Any, Any]) -> tuple[float, float, float, int]:
        """(log of the smallest window-corrected tail probability, observed, expected, window)."""
        rates = self._rates()
        slots = self.slots
        recent = [r for r in self._recent if not r[3]]
        n = len(recent) + 1
        phi = self._pearson if self._pearson > 1.0 else 1.0
        observed = float(x["count"])
        expected = float(x["exposure"]) * rates[int(x["slot"]) % slots]
        best, obs_best, exp_best, w_best = 0.0, 0.0, 0.0, 0
        done = 1
        for w in self.windows:
            if w > n:
                break
            for c, e, h, _, _ in recent[len(recent) - (w - 1) : len(recent) - (done - 1)]:
                observed += c
                expected += e * rates[h % slots]
            done = w
            log_p = poisson_log_sf(observed / phi, expected / phi)
            if log_p < best:
                best, obs_best, exp_best, w_best = log_p, observed, expected, w
        return best + math.log(len(self.windows)), obs_best, exp_best, w_best

    def score_one(self, x: dict[Any, Any]) -> float:
        if self._total[1] <= 0.0:
            self.observed = self.expected = 0.0
            self.window = 0
            return 0.0
        key = (float(x["count"]), float(x["exposure"]), int(x["slot"]), len(self._recent))
        done = self._scanned
        if done is not None and done[:4] == key:
            scan = done[4]
        else:
            scan = self._scan(x)
            self._scanned = (*key, scan)
        log_p, self.observed, self.expected, self.window = scan
        return 1.0 - math.exp(log_p) if log_p < 0.0 else 0.0

    def alarm(self, score: float) -> bool:
        """Whether ``score`` (from the last :meth:`score_one`) is a surge worth reporting."""
        return (
            self.n >= self.warmup
            and 1.0 - score <= self.alpha
            and self.observed >= self.min_count
            and self.observed >= self.min_ratio * self.expected
        )

    def learn_one(self, x: dict[Any, Any]) -> None:
        surging = self.alarm(self.score_one(x))
        self._scanned = None
        if surging:
            # Every report of the surging window stays out of the baseline and of later windows.
            unflagged = [r for r in self._recent if not r[3]]
            for report in unflagged[max(0, len(unflagged) - (self.window - 1)) :]:
                report[3] = True
        count, exposure, slot = float(x["count"]), float(x["exposure"]), int(x["slot"])
        row: list[Any] = [count, exposure, slot, surging, False]
        if self.n < self.warmup and not surging:
            # Nothing to protect yet: the first reports make the baseline straight away.
            self._learn(count, exposure, slot)
            row[4] = True
        self._recent.append(row)
        if len(self._recent) >= self.windows[-1]:
            old = self._recent.pop(0)
            if not old[3] and not old[4]:
                self._learn(old[0], old[1], old[2])

    def _learn(self, count: float, exposure: float, slot: int) -> None:
        h = slot % self.slots
        expected = exposure * self._rates()[h] if self._total[1] > 0.0 else 0.0
        self._rates_cache = None
        decay = 1.0 - 1.0 / self.memory
        counts, exposures = self._counts, self._exposure
        for i in range(self.slots):
            counts[i] *= decay
            exposures[i] *= decay
        counts[h] += count
        exposures[h] += exposure
        self._total[0] = self._total[0] * decay + count
        self._total[1] = self._total[1] * decay + exposure
        self.n += 1
        if expected >= 1.0:
            # Pearson residual: over-dispersion widens the test instead of raising alarms.
            pearson = (count - expected) ** 2 / expected
            self._pearson += (min(pearson, 25.0) - self._pearson) / self.memory
