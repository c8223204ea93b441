"""Per-event multivariate surprise of one actor's data accesses, calibrated to a tail probability."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

__all__ = ["AccessScorer", "FEATURES", "BINARY_FEATURES"]

#: Features read from ``x`` by default; a missing feature counts as 0, other keys are ignored.
FEATURES = (
    "records",
    "bytes_out",
    "bytes_in",
    "duration_s",
    "c1",
    "c2",
    "c3",
    "outbound",
    "new_destination",
)
#: Of those, the 0/1 flags (a value > 0 is 1): modelled as a rate, not a log-scaled count.
BINARY_FEATURES = ("outbound", "new_destination")

# Scales a mean absolute deviation to a standard deviation for normal data.
_MAD_TO_SIGMA = 1.2533
# Layouts (continuous names, binary names) shared by every instance with the same settings, so an
# instance holds one pointer to them, not its own copy.
_LAYOUTS: dict[
    tuple[tuple[str, ...], tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]]
] = {}


def _layout(
    features: tuple[str, ...], binary: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    key = (features, binary)
    lay = _LAYOUTS.get(key)
    if lay is None:
        flags = frozenset(binary)
        lay = _LAYOUTS[key] = (
            tuple(f for f in features if f not in flags),
            tuple(f for f in features if f in flags),
        )
    return lay


class AccessScorer(base.AnomalyDetector):
    """How unusual one data access is for this actor, as a calibrated probability in [0, 1].

    One instance models one actor. Each count feature is scaled by ``log1p`` (volumes are
    heavy-tailed: a tenfold export is as surprising from 100 as from 100,000 records) and
    standardised against the actor's own exponentially weighted mean and mean absolute deviation,
    learned with residuals clipped at ``clip`` deviations (an outlier moves the baseline by a
    bounded amount, a lasting change is still absorbed). The 0/1 flags (``binary``) are modelled
    by their rate.

    The raw surprise is a log-likelihood ratio, in nats, of the actor's most likely event against
    this one, summed over features as if independent (a diagonal model): a Student-t with ``nu``
    degrees of freedom per count feature, ``(nu + 1) / 2 * log(1 + z**2 / nu)``, so one feature's
    heavy tail does not drown the others the way a sum of squared z-scores does; and
    ``log(p(mode) / p(value))`` per flag. Deviations count in both directions.

    The score calibrates that surprise against the actor's own past surprises (peaks over
    threshold): the actor's median and ``1 - tail`` quantile of surprise are tracked by stochastic
    approximation, the excess above that quantile is modelled as exponential with its mean excess
    (at least ``min_tail_scale`` nats), and the score is the estimated probability that a normal
    event of this actor is less surprising: ``1 - tail * exp(-(s - q) / beta)`` above the quantile,
    piecewise linear below it. A score of 0.999 means "one in a thousand of this actor's normal
    events", whatever the actor's volumes, so one threshold fits every actor. Until ``warmup``
    events are learned the tail probability ``p`` is reported as ``1 - p ** (n / warmup)``: a new
    actor needs stronger evidence for the same score.

    Learning is never skipped by the scorer itself (the clipped updates bound an outlier's
    influence); callers that freeze an entity while it is flagged simply do not call
    :meth:`learn_one`.

    Parameters
    ----------
    features
        Names read from ``x``; missing ones are 0, others ignored.
    binary
        Which of ``features`` are 0/1 flags.
    alpha
        Weight of a new event in the per-feature baselines once warmed up (about ``1/alpha``
        events of memory); the first events are averaged with weight ``1/n``.
    clip
        Residuals are clipped at this many deviations when learning a baseline.
    floor
        Smallest standard deviation of a ``log1p`` feature (0.1 is about 10 %), so a constant
        history does not make every change infinitely surprising.
    prior_scale
        Standard deviation assumed for a feature's first event, counted as one pseudo-event.
    nu
        Degrees of freedom of the Student-t of each standardised count.
    tail
        Share of the actor's events above the calibration quantile (the exponential tail's base).
    cal_alpha
        Weight of a new event in the calibration once warmed up (about ``1/cal_alpha`` events).
    min_tail_scale
        Smallest mean excess, in nats, of the exponential tail: going from score ``1 - tail`` to
        ``1 - tail/100`` takes at least a likelihood ratio of ``100 ** min_tail_scale``.
    warmup
        Events after which the score has full confidence.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> scorer = AccessScorer()
    >>> for _ in range(500):
    ...     r = rng.lognormvariate(4.0, 0.4)
    ...     scorer.learn_one({"records": r, "bytes_out": 900.0 * r, "duration_s": 2.0})
    >>> normal = scorer.score_one({"records": 60.0, "bytes_out": 54_000.0, "duration_s": 2.0})
    >>> bulk = scorer.score_one({"records": 3_000.0, "bytes_out": 2.7e6, "duration_s": 2.0})
    >>> normal < 0.9 < 0.999 < bulk <= 1.0
    True
    """

    __slots__ = (
        "features",
        "binary",
        "alpha",
        "clip",
        "floor",
        "prior_scale",
        "nu",
        "tail",
        "cal_alpha",
        "min_tail_scale",
        "warmup",
        "n",
        "_lay",
        "_st",
    )

    def __init__(
        self,
        features: tuple[str, ...] = FEATURES,
        binary: tuple[str, ...] = BINARY_FEATURES,
        alpha: float = 0.01,
        clip: float = 3.0,
        floor: float = 0.1,
        prior_scale: float = 0.5,
        nu: float = 4.0,
        tail: float = 0.1,
        cal_alpha: float = 0.002,
        min_tail_scale: float = 1.0,
        warmup: int = 30,
    ) -> None:
        self.features = tuple(features)
        self.binary = tuple(binary)
        self.alpha = alpha
        self.clip = clip
        self.floor = floor
        self.prior_scale = prior_scale
        self.nu = nu
        self.tail = tail
        self.cal_alpha = cal_alpha
        self.min_tail_scale = min_tail_scale
        self.warmup = warmup
        #: Events learned.
        self.n = 0
        self._lay = _layout(self.features, self.binary)
        nc = len(self._lay[0])
        # One flat array: mean and mean absolute deviation per count feature, rate per flag, then
        # the calibration's median, upper quantile and mean excess of the surprise.
        self._st = array("d", bytes(8 * (2 * nc + len(self._lay[1]) + 3)))

    # Pickle the slots (river's Base has no __getstate__ for them); the layout is rebuilt.
    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k != "_lay"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._lay = _layout(self.features, self.binary)

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {}

    def _surprise(self, x: dict[Any, Any]) -> float:
        # Written with local names and no max()/min() calls: it runs for every data access.
        cont, flags = self._lay
        st = self._st
        floor = self.floor
        inv_nu = 1.0 / self.nu
        log1p = math.log1p
        s = 0.0
        i = 0
        for k in cont:
            v = x.get(k, 0.0)
            r = (log1p(v) if v > 0.0 else 0.0) - st[i]
            if r:
                sd = st[i + 1] * _MAD_TO_SIGMA
                z = r / (sd if sd > floor else floor)
                s += log1p(z * z * inv_nu)
            i += 2
        s *= 0.5 * (self.nu + 1.0)
        if flags:
            # Rate with half a pseudo-event each way over at most 1/alpha events of memory.
            ne = self.n
            cap = 1.0 / self.alpha
            if ne > cap:
                ne = cap
            for k in flags:
                p = (st[i] * ne + 0.5) / (ne + 1.0)
                if x.get(k, 0.0) > 0.0:
                    if p < 0.5:
                        s += math.log((1.0 - p) / p)
                elif p > 0.5:
                    s += math.log(p / (1.0 - p))
                i += 1
        return s

    def surprise(self, x: dict[Any, Any]) -> float:
        """Raw surprise of ``x`` in nats (0 for the actor's most typical event), uncalibrated."""
        return self._surprise(x) if self.n else 0.0

    def _tail_probability(self, s: float) -> float:
        st = self._st
        j = len(st) - 3
        q50 = st[j]
        q = st[j + 1]
        tail = self.tail
        if s > q:
            beta = st[j + 2]
            if beta < self.min_tail_scale:
                beta = self.min_tail_scale
            return tail * math.exp((q - s) / beta)
        if s > q50:
            return tail + (0.5 - tail) * (q - s) / (q - q50)
        return 1.0 - 0.5 * s / q50 if q50 > 0.0 else 0.5

    def score_one(self, x: dict[Any, Any]) -> float:
        n = self.n
        if n == 0:
            return 0.0
        p = self._tail_probability(self._surprise(x))
        if n < self.warmup:
            # p ** c with c < 1: a young baseline needs more evidence for the same score.
            p = p ** (n / self.warmup)
        return 1.0 - p

    def learn_one(self, x: dict[Any, Any]) -> None:
        st = self._st
        cont, flags = self._lay
        n = self.n
        log1p = math.log1p
        if n == 0:
            self.n = 1
            dev0 = self.prior_scale / _MAD_TO_SIGMA
            i = 0
            for k in cont:
                v = x.get(k, 0.0)
                st[i] = log1p(v) if v > 0.0 else 0.0
                st[i + 1] = dev0
                i += 2
            for k in flags:
                st[i] = 1.0 if x.get(k, 0.0) > 0.0 else 0.0
                i += 1
            return
        # One pass: the surprise against the baseline before this event (for the calibration),
        # then the clipped update of the baseline.
        w = 1.0 / (n + 1)
        # The prior deviation counts as one pseudo-event.
        wd = 1.0 / (n + 2)
        alpha = self.alpha
        if w < alpha:
            w = alpha
        if wd < alpha:
            wd = alpha
        floor = self.floor
        clip = self.clip
        inv_nu = 1.0 / self.nu
        s = 0.0
        i = 0
        for k in cont:
            v = x.get(k, 0.0)
            r = (log1p(v) if v > 0.0 else 0.0) - st[i]
            d = st[i + 1]
            if r:
                sd = d * _MAD_TO_SIGMA
                if sd < floor:
                    sd = floor
                z = r / sd
                s += log1p(z * z * inv_nu)
                lim = clip * sd
                if r > lim:
                    r = lim
                elif r < -lim:
                    r = -lim
                st[i] += w * r
                st[i + 1] = d + wd * ((r if r >= 0.0 else -r) - d)
            else:
                st[i + 1] = d - wd * d
            i += 2
        s *= 0.5 * (self.nu + 1.0)
        if flags:
            ne = float(n)
            cap = 1.0 / alpha
            if ne > cap:
                ne = cap
            for k in flags:
                p = (st[i] * ne + 0.5) / (ne + 1.0)
                if x.get(k, 0.0) > 0.0:
                    if p < 0.5:
                        s += math.log((1.0 - p) / p)
                    b = 1.0
                else:
                    if p > 0.5:
                        s += math.log(p / (1.0 - p))
                    b = 0.0
                st[i] += w * (b - st[i])
                i += 1
        self.n = n + 1
        self._learn_calibration(s, n)

    def _learn_calibration(self, s: float, n: int) -> None:
        # Robbins-Monro quantiles with gain 1/n, then a constant gain of cal_alpha; the steps are
        # scaled by the spread of the surprise so they are the same in every actor's units.
        st = self._st
        j = len(st) - 3
        tail = self.tail
        g = 1.0 / n
        if g < self.cal_alpha:
            g = self.cal_alpha
        q50 = st[j]
        q = st[j + 1]
        beta = st[j + 2]
        if n == 1:
            st[j] = st[j + 1] = s
            st[j + 2] = self.min_tail_scale
            return
        scale = beta if beta > self.min_tail_scale else self.min_tail_scale
        # Median: density about 1/(2 * spread) around it; upper quantile: tail / beta.
        st[j] = q50 + g * scale * (1.0 if s > q50 else -1.0)
        if s > q:
            e = s - q
            if e > 5.0 * scale:
                e = 5.0 * scale
            gb = g / tail
            if gb > 1.0:
                gb = 1.0
            st[j + 2] = beta + gb * (e - beta)
            q += g * scale * (1.0 - tail) / tail
        else:
            q -= g * scale
        st[j + 1] = q if q > st[j] else st[j]

    def baseline(self, feature: str) -> float:
        """Learned normal level of a count feature in its own units (0 when unknown)."""
        cont = self._lay[0]
        if feature not in cont:
            return 0.0
        return math.expm1(self._st[2 * cont.index(feature)])

    def contributions(self, x: dict[Any, Any]) -> dict[str, float]:
        """Signed z-score of each count feature on the ``log1p`` scale, for explanations."""
        st = self._st
        out = {}
        for i, k in enumerate(self._lay[0]):
            v = x.get(k, 0.0)
            v = math.log1p(v) if v > 0.0 else 0.0
            sd = max(st[2 * i + 1] * _MAD_TO_SIGMA, self.floor)
            out[k] = (v - st[2 * i]) / sd
        return out
