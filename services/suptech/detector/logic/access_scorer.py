"""Multivariate per-event surprise of an actor's data accesses, as a calibrated probability."""

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
_LOG_HALF = math.log(0.5)
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

    One instance models one actor. Count features are scaled by ``log1p`` (volumes are
    heavy-tailed: a tenfold export is as surprising from 100 as from 100,000 records); 0/1 flags
    (``binary``) are modelled by their rate; a missing feature is 0.

    **Habits.** The actor's counts are modelled by up to ``modes`` diagonal modes (an actor may
    do small look-ups every day and a large report now and then), each an exponentially weighted
    mean and mean absolute deviation per feature with a weight, in the manner of Stauffer and
    Grimson's adaptive background mixture. An event updates the mode that explains it best, its
    residuals clipped at ``clip`` deviations (an outlier moves a habit by a bounded amount, a
    lasting change is absorbed); an event more than ``spawn`` deviations from that mode on some
    feature starts a new mode instead, replacing the lightest one, with a small weight.

    **Surprise.** The raw surprise is a log-likelihood ratio, in nats, of the actor's most likely
    event against this one: under the best mode, half the sum of the squared standardised
    deviations (a Mahalanobis distance with a diagonal covariance; ``nu`` makes it a Student-t,
    ``(nu + 1) / 2 * log(1 + z**2 / nu)`` per feature, which forgives heavy tails but also caps
    the evidence of a 50-fold export), plus the log of the mode's width and rarity relative to the
    actor's main habit; plus ``log(p(usual) / p(value))`` per flag. Deviations count in both
    directions.

    **Calibration.** The score calibrates the surprise against the actor's own past surprises
    (peaks over threshold): the median and the ``1 - tail`` quantile of the surprise are tracked by
    stochastic approximation, the excess over that quantile is modelled as exponential with its
    mean excess (at least ``min_tail_scale`` nats), and the score is the estimated share of the
    actor's normal events that are less surprising: ``1 - tail * exp(-(s - q) / beta)`` above the
    quantile, piecewise linear below it. A score of 0.999 means "one in a thousand of this actor's
    normal events", whatever its volumes, so one threshold fits every actor; the actor's history
    supports that to about ``1/cal_alpha`` (beyond it the exponential tail is an extrapolation,
    and real traffic has heavier tails: on ODDS SMTP 0.03 % of normal events score above
    0.999999); beyond ``trusted_tail`` it falls as a power law instead, so the most glaring
    events keep their order below a score of 1.0. Until ``warmup``
    events are learned the tail probability ``p`` is reported as ``1 - p ** (n / warmup)``: a new
    actor needs stronger evidence for the same score.

    The scorer learns every event it is given (the clipped updates and bounded calibration steps
    limit what an outlier does to it); callers that freeze an entity while it is flagged simply
    do not call :meth:`learn_one`.

    Parameters
    ----------
    features
        Names read from ``x``; missing ones are 0, other keys are ignored.
    binary
        Which of ``features`` are 0/1 flags (a value > 0 is 1).
    modes
        Most habits (modes) kept per actor.
    alpha
        Weight of a new event in a mode's mean and deviation once the mode is warmed up (about
        ``1/alpha`` events of memory); the first events of a mode are averaged with weight
        ``1/n``.
    clip
        Residuals are clipped at this many deviations when a mode learns an event.
    spawn
        An event farther than this many deviations from its best mode, on some feature, starts a
        new mode.
    floor
        Smallest standard deviation of a ``log1p`` feature (0.1 is about 10 %), so a constant
        history does not make every change infinitely surprising.
    prior_scale
        Standard deviation given to each feature of a new mode, counted as one pseudo-event.
    nu
        None for a Gaussian surprise per standardised feature, or the degrees of freedom of a
        Student-t.
    mode_alpha
        Weight of a new event in the modes' weights and the flags' rates (about
        ``1/mode_alpha`` events of memory); a new mode starts with this weight.
    tail
        Share of the actor's events above the calibration quantile (the exponential tail's base).
    cal_alpha
        Weight of a new event in the calibration once warmed up (about ``1/cal_alpha`` events).
    min_tail_scale
        Smallest mean excess, in nats, of the exponential tail: going from score ``1 - tail`` to
        ``1 - tail / 100`` takes at least a likelihood ratio of ``100 ** min_tail_scale``.
    trusted_tail
        Smallest tail probability the exponential tail is taken at its word for. Beyond it the
        tail probability falls as a power of the further surprise, ``trusted_tail / (1 + e)``
        for ``e`` more nats, not exponentially: the actor's history says nothing about one in
        1e20 against one in 1e40, real traffic's tails are heavier than the extrapolation, and
        ``1 - p`` rounds to 1.0 below 1e-16, which would tie the most glaring events with
        every merely odd one. Monotone, so it ranks the same; scores up to
        ``1 - trusted_tail`` are unchanged.
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
    >>> 40 < scorer.baseline("records") < 70
    True
    """

    __slots__ = (
        "features",
        "binary",
        "modes",
        "alpha",
        "clip",
        "spawn",
        "floor",
        "prior_scale",
        "nu",
        "mode_alpha",
        "tail",
        "cal_alpha",
        "min_tail_scale",
        "trusted_tail",
        "warmup",
        "n",
        "_seen",
        "_lay",
        "_st",
        "_memo",
    )

    def __init__(
        self,
        features: tuple[str, ...] = FEATURES,
        binary: tuple[str, ...] = BINARY_FEATURES,
        modes: int = 3,
        alpha: float = 0.01,
        clip: float = 3.0,
        spawn: float = 6.0,
        floor: float = 0.1,
        prior_scale: float = 0.5,
        nu: float | None = None,
        mode_alpha: float = 0.002,
        tail: float = 0.1,
        cal_alpha: float = 0.002,
        min_tail_scale: float = 1.0,
        trusted_tail: float = 1e-8,
        warmup: int = 30,
    ) -> None:
        self.features = tuple(features)
        self.binary = tuple(binary)
        self.modes = modes
        self.alpha = alpha
        self.clip = clip
        self.spawn = spawn
        self.floor = floor
        self.prior_scale = prior_scale
        self.nu = nu
        self.mode_alpha = mode_alpha
        self.tail = tail
        self.cal_alpha = cal_alpha
        self.min_tail_scale = min_tail_scale
        self.trusted_tail = trusted_tail
        self.warmup = warmup
        #: Events learned.
        self.n = 0
        # Bit i: count feature i has been non-zero once. A feature never seen is 0 in every mode
        # with no deviation (a constant history), so it is left out of the loops until it shows.
        self._seen = 0
        self._lay = _layout(self.features, self.binary)
        # One flat array of doubles. Per mode: weight (0 = unused), events learned, sum of the
        # log deviations, then mean and mean absolute deviation per count feature. Then the rate
        # of each flag; then the calibration's median, upper quantile and mean excess.
        size = modes * (3 + 2 * len(self._lay[0])) + len(self._lay[1]) + 3
        self._st = array("d", bytes(8 * size))
        # What score_one worked out for the event it scored, for a learn_one of the same event
        # right after: (x, n, values, surprise of the counts, best mode, its |z|, flags').
        self._memo: tuple[Any, ...] | None = None

    # Pickle the slots (river's Base has no __getstate__ for them); the layout is rebuilt and
    # the memo of the last event scored is not state.
    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("_lay", "_memo")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots from before trusted_tail extrapolated exponentially all the way.
        object.__setattr__(self, "trusted_tail", 1e-8)
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._lay = _layout(self.features, self.binary)
        self._memo = None

    def _values(self, x: dict[Any, Any]) -> list[tuple[int, float]]:
        """(offset in a mode's block, log1p value) of the count features seen or non-zero."""
        log1p = math.log1p
        seen = self._seen
        out = []
        o = 3
        bit = 1
        for k in self._lay[0]:
            v = x.get(k, 0.0)
            if v > 0.0:
                out.append((o, log1p(v)))
            elif seen & bit:
                out.append((o, 0.0))
            o += 2
            bit <<= 1
        return out

    def _match(self, vs: list[tuple[int, float]]) -> tuple[float, int, float]:
        """(surprise of the counts, offset of the best mode, its largest |z|)."""
        # Written with local names and no max()/min() calls: it runs for every data access.
        st = self._st
        floor = self.floor
        nu = self.nu
        gauss = nu is None
        inv_nu = 0.0 if nu is None else 1.0 / nu
        h = 0.5 if nu is None else 0.5 * (nu + 1.0)
        log1p = math.log1p
        log = math.log
        block = 3 + 2 * len(self._lay[0])
        best_nll = ref = math.inf
        best = 0
        best_zmax = 0.0
        j = 0
        for _ in range(self.modes):
            u = st[j]
            if u > 0.0:
                # Log of the mode's peak density, up to a constant: narrow and heavy is likely.
                lw = st[j + 2] - log(u)
                if lw < ref:
                    ref = lw
                acc = 0.0
                zmax = 0.0
                for o, v in vs:
                    r = v - st[j + o]
                    if r:
                        sd = st[j + o + 1] * _MAD_TO_SIGMA
                        z = r / (sd if sd > floor else floor)
                        if z < 0.0:
                            z = -z
                        if z > zmax:
                            zmax = z
                        acc += z * z if gauss else log1p(z * z * inv_nu)
                nll = acc * h + lw
                if nll < best_nll:
                    best_nll = nll
                    best = j
                    best_zmax = zmax
            j += block
        return best_nll - ref, best, best_zmax

    def _flag_surprise(self, x: dict[Any, Any]) -> float:
        cont, flags = self._lay
        st = self._st
        s = 0.0
        # Rate with half a pseudo-event each way over at most 1/mode_alpha events of memory.
        ne = float(self.n)
        cap = 1.0 / self.mode_alpha
        if ne > cap:
            ne = cap
        i = self.modes * (3 + 2 * len(cont))
        for k in flags:
            p = (st[i] * ne + 0.5) / (ne + 1.0)
            if x.get(k, 0.0) > 0.0:
                if p < 0.5:
                    s += math.log((1.0 - p) / p)
            elif p > 0.5:
                s += math.log(p / (1.0 - p))
            i += 1
        return s

    def _learn_flags(self, x: dict[Any, Any]) -> None:
        st = self._st
        w = 1.0 / (self.n + 1)
        if w < self.mode_alpha:
            w = self.mode_alpha
        i = self.modes * (3 + 2 * len(self._lay[0]))
        for k in self._lay[1]:
            b = 1.0 if x.get(k, 0.0) > 0.0 else 0.0
            st[i] += w * (b - st[i])
            i += 1

    def surprise(self, x: dict[Any, Any]) -> float:
        """Raw surprise of ``x`` in nats (0 for the actor's most typical event), uncalibrated."""
        if not self.n:
            return 0.0
        s = self._match(self._values(x))[0]
        return s + self._flag_surprise(x) if self._lay[1] else s

    def _log_tail_probability(self, s: float) -> float:
        """``ln`` of the share of the actor's normal events more surprising than ``s`` nats,
        worked out in logs: far in the tail the probability is below what ``1 - p`` can hold."""
        st = self._st
        j = len(st) - 3
        q50 = st[j]
        q = st[j + 1]
        tail = self.tail
        if s > q:
            beta = st[j + 2]
            if beta < self.min_tail_scale:
                beta = self.min_tail_scale
            lp = math.log(tail) + (q - s) / beta
            trust = math.log(self.trusted_tail)
            # Beyond the trusted tail, evidence counts logarithmically: a power law.
            return lp if lp > trust else trust - math.log1p(trust - lp)
        if s > q50:
            return math.log(tail + (0.5 - tail) * (q - s) / (q - q50))
        return math.log(1.0 - 0.5 * s / q50) if q50 > 0.0 else _LOG_HALF

    def log_tail(self, x: dict[Any, Any]) -> float:
        """``ln`` of the tail probability ``1 - score_one(x)``, exact where the score rounds to
        1.0 (to rank, or carry forward, the evidence of events beyond one in 1e16)."""
        n = self.n
        if n == 0:
            return 0.0
        vs = self._values(x)
        s, best, zmax = self._match(vs)
        sf = self._flag_surprise(x) if self._lay[1] else 0.0
        # A learn_one of this same event right after need not work all this out again.
        self._memo = (x, n, vs, s, best, zmax, sf)
        lp = self._log_tail_probability(s + sf)
        if n < self.warmup:
            # p ** c with c < 1: a young baseline needs more evidence for the same score.
            lp *= n / self.warmup
        return lp

    def score_one(self, x: dict[Any, Any]) -> float:
        return -math.expm1(self.log_tail(x))

    def _start_mode(self, j: int, vs: list[tuple[int, float]], weight: float) -> None:
        st = self._st
        floor = self.floor
        sd0 = self.prior_scale if self.prior_scale > floor else floor
        st[j] = weight
        st[j + 1] = 1.0
        st[j + 2] = len(vs) * math.log(sd0) + (len(self._lay[0]) - len(vs)) * math.log(floor)
        dev0 = self.prior_scale / _MAD_TO_SIGMA
        for o, v in vs:
            st[j + o] = v
            st[j + o + 1] = dev0

    def learn_one(self, x: dict[Any, Any]) -> None:
        st = self._st
        n = self.n
        memo = self._memo
        self._memo = None
        if n == 0:
            vs = self._values(x)
            self._start_mode(0, vs, 1.0)
            self._mark_seen(vs)
            i = self.modes * (3 + 2 * len(self._lay[0]))
            for k in self._lay[1]:
                st[i] = 1.0 if x.get(k, 0.0) > 0.0 else 0.0
                i += 1
            self.n = 1
            return
        if memo is not None and memo[0] is x and memo[1] == n:
            vs, s, best, zmax, sf = memo[2:]
        else:
            vs = self._values(x)
            s, best, zmax = self._match(vs)
            sf = self._flag_surprise(x) if self._lay[1] else 0.0
        if self._lay[1]:
            s += sf
            self._learn_flags(x)
        self._learn_calibration(s, n)
        self.n = n + 1
        # Mode weights: exponentially weighted shares of the events each mode learned.
        a = 1.0 / (n + 1)
        if a < self.mode_alpha:
            a = self.mode_alpha
        block = 3 + 2 * len(self._lay[0])
        end = self.modes * block
        keep = 1.0 - a
        for j in range(0, end, block):
            st[j] *= keep
        if zmax > self.spawn:
            # A new habit, or an outlier: it replaces the lightest (or an unused) mode.
            light = 0
            for j in range(block, end, block):
                if st[j] < st[light]:
                    light = j
            self._start_mode(light, vs, a)
            self._mark_seen(vs)
            return
        j = best
        st[j] += a
        nk = st[j + 1] + 1.0
        st[j + 1] = nk
        alpha = self.alpha
        w = 1.0 / nk
        if w < alpha:
            w = alpha
        # The prior deviation counts as one pseudo-event.
        wd = 1.0 / (nk + 1.0)
        if wd < alpha:
            wd = alpha
        floor = self.floor
        clip = self.clip
        log = math.log
        lsig = (len(self._lay[0]) - len(vs)) * log(floor)
        for o, v in vs:
            i = j + o
            r = v - st[i]
            d = st[i + 1]
            if r:
                lim = d * _MAD_TO_SIGMA
                lim = clip * (lim if lim > floor else floor)
                if r > lim:
                    r = lim
                elif r < -lim:
                    r = -lim
                st[i] += w * r
                d += wd * ((r if r >= 0.0 else -r) - d)
            else:
                d -= wd * d
            st[i + 1] = d
            sd = d * _MAD_TO_SIGMA
            lsig += log(sd if sd > floor else floor)
        st[j + 2] = lsig
        if len(vs) > self._seen.bit_count():
            self._mark_seen(vs)

    def _mark_seen(self, vs: list[tuple[int, float]]) -> None:
        seen = self._seen
        for o, v in vs:
            if v:
                seen |= 1 << ((o - 3) >> 1)
        self._seen = seen

    def _learn_calibration(self, s: float, n: int) -> None:
        # Robbins-Monro quantiles, starting from 0 (the least surprise) with a gain of 0.1, then
        # n ** -2/3 (a slower decay than 1/n, so a poor start is forgotten), then a constant gain
        # of cal_alpha. The steps are scaled by the spread of the surprise (the mean excess), so
        # they are the same in every actor's units.
        st = self._st
        j = len(st) - 3
        tail = self.tail
        g = n**-0.6666666666666666 if n > 31 else 0.1
        if g < self.cal_alpha:
            g = self.cal_alpha
        q50 = st[j]
        q = st[j + 1]
        beta = st[j + 2]
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

    def _main_mode(self) -> int:
        st = self._st
        block = 3 + 2 * len(self._lay[0])
        main = 0
        for j in range(block, self.modes * block, block):
            if st[j] > st[main]:
                main = j
        return main

    def baseline(self, feature: str) -> float:
        """Normal level of ``feature`` in its own units: the main habit's typical count, or a
        flag's rate (0 when unknown)."""
        cont, flags = self._lay
        if feature in cont:
            return math.expm1(self._st[self._main_mode() + 3 + 2 * cont.index(feature)])
        if feature in flags:
            return self._st[self.modes * (3 + 2 * len(cont)) + flags.index(feature)]
        return 0.0

    def contributions(self, x: dict[Any, Any]) -> dict[str, float]:
        """Surprise of each feature in nats (0 for the usual value), under the mode that best
        explains ``x``, for explanations: the features of the largest values made the score."""
        cont, flags = self._lay
        out: dict[str, float] = {}
        if not self.n:
            return out
        st = self._st
        vs = self._values(x)
        j = self._match(vs)[1]
        nu = self.nu
        for k in cont:
            out[k] = 0.0
        for o, v in vs:
            sd = max(st[j + o + 1] * _MAD_TO_SIGMA, self.floor)
            z = (v - st[j + o]) / sd
            out[cont[(o - 3) >> 1]] = (
                0.5 * z * z if nu is None else 0.5 * (nu + 1.0) * math.log1p(z * z / nu)
            )
        j = self.modes * (3 + 2 * len(cont))
        ne = min(float(self.n), 1.0 / self.mode_alpha)
        for k in flags:
            p = (st[j] * ne + 0.5) / (ne + 1.0)
            hit = x.get(k, 0.0) > 0.0
            pv = p if hit else 1.0 - p
            out[k] = max(0.0, math.log(max(p, 1.0 - p) / pv))
            j += 1
        return out
