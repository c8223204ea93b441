"""Multivariate per-event surprise of an actor's data accesses, as a calibrated probability."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots, constructor_settings, set_slots

__all__ = ["AccessScorer", "FEATURES", "BINARY_FEATURES", "COUNT_FEATURES"]

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
#: The count features of the default layout, in the order :meth:`AccessScorer.log_tail_logs`
#: takes their ``log1p``; the default flags are bits 0 and 1 of its ``hits``, in
#: :data:`BINARY_FEATURES` order.
COUNT_FEATURES = tuple(f for f in FEATURES if f not in BINARY_FEATURES)


class _Layout:
    """What every instance with the same settings shares (so an instance holds one pointer to
    it, not its own copy): the count and flag names and the offsets in the state array."""

    __slots__ = ("cont", "flags", "n_cont", "block", "flags_at", "cal_at")

    def __init__(self, features: tuple[str, ...], binary: tuple[str, ...], modes: int) -> None:
        flags = frozenset(binary)
        self.cont = tuple(f for f in features if f not in flags)
        self.flags = tuple(f for f in features if f in flags)
        self.n_cont = len(self.cont)
        # Per mode: weight, events learned, sum of log deviations, mean and deviation per count.
        self.block = 3 + 2 * self.n_cont
        self.flags_at = modes * self.block
        self.cal_at = self.flags_at + len(self.flags)


_LAYOUTS: dict[tuple[tuple[str, ...], tuple[str, ...], int], _Layout] = {}


def _layout(features: tuple[str, ...], binary: tuple[str, ...], modes: int) -> _Layout:
    key = (features, binary, modes)
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay = _LAYOUTS[key] = _Layout(features, binary, modes)
    return lay


_DEFAULT_LAYOUT = _layout(FEATURES, BINARY_FEATURES, 3)


class AccessScorer(PackedSlots, base.AnomalyDetector):
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
        self._lay = _layout(self.features, self.binary, modes)
        # One flat array of doubles. Per mode: weight (0 = unused), events learned, sum of the
        # log deviations, then mean and mean absolute deviation per count feature. Then the rate
        # of each flag; then the calibration's median, upper quantile and mean excess.
        size = self._lay.cal_at + 3
        self._st = array("d", bytes(8 * size))
        # What the last log_tail worked out, for a learn of the same event right after:
        # (the event's counts, n, values, surprise of the counts, best mode, its |z|, flags').
        self._memo: tuple[Any, ...] | None = None

    # Pickled as tuples (PackedSlots); the layout is rebuilt and the memo of the last event
    # scored is not state. The dict of the slots is the state of snapshots before version 9 (and
    # what tests compare).
    _TRANSIENT = frozenset({"_lay", "_memo"})

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k not in self._TRANSIENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots from before trusted_tail extrapolated exponentially all the way.
        object.__setattr__(self, "trusted_tail", 1e-8)
        set_slots(self, state, _SETTINGS)
        self._restored()

    def _restored(self) -> None:
        self._lay = _layout(self.features, self.binary, self.modes)
        self._memo = None

    # --- an event's features --------------------------------------------------------------
    # The dict API (river's) and the positional one (the leakage family's, for every data
    # access) meet here: ``logs`` are the log1p of the count features in layout order (0.0 for
    # a value of 0 or less), ``hits`` bit i is flag i (a value > 0).

    def _logs(self, x: dict[Any, Any]) -> list[float]:
        log1p = math.log1p
        out = []
        for k in self._lay.cont:
            v = x.get(k, 0.0)
            out.append(log1p(v) if v > 0.0 else 0.0)
        return out

    def _hits(self, x: dict[Any, Any]) -> int:
        hits = 0
        bit = 1
        for k in self._lay.flags:
            if x.get(k, 0.0) > 0.0:
                hits |= bit
            bit <<= 1
        return hits

    def _vs(self, logs: Any) -> list[tuple[int, float]]:
        """(offset in a mode's block, log1p value) of the count features seen or non-zero."""
        seen = self._seen
        out = []
        o = 3
        bit = 1
        for v in logs:
            if v > 0.0 or seen & bit:
                out.append((o, v))
            o += 2
            bit <<= 1
        return out

    def _values(self, x: dict[Any, Any]) -> list[tuple[int, float]]:
        return self._vs(self._logs(x))

    def _match(self, vs: list[tuple[int, float]]) -> tuple[float, int, float, int]:
        """(surprise of the counts, offset of the best mode, its largest |z|, offset of the
        main mode: the heaviest, as :meth:`_main_mode`)."""
        # Written with local names and no max()/min() calls: it runs for every data access.
        st = self._st
        floor = self.floor
        nu = self.nu
        block = self._lay.block
        best_nll = ref = math.inf
        best = 0
        best_zmax = 0.0
        log = math.log
        mad = _MAD_TO_SIGMA
        main = 0
        heaviest = -math.inf
        if nu is None:
            for j in range(0, self.modes * block, block):
                u = st[j]
                if u > heaviest:
                    heaviest = u
                    main = j
                if u > 0.0:
                    # Log of the mode's peak density, up to a constant: narrow and heavy is
                    # likely.
                    lw = st[j + 2] - log(u)
                    if lw < ref:
                        ref = lw
                    acc = 0.0
                    zmax = 0.0
                    for o, v in vs:
                        i = j + o
                        r = v - st[i]
                        if r:
                            sd = st[i + 1] * mad
                            z = r / (sd if sd > floor else floor)
                            if z < 0.0:
                                z = -z
                            if z > zmax:
                                zmax = z
                            acc += z * z
                    nll = acc * 0.5 + lw
                    if nll < best_nll:
                        best_nll = nll
                        best = j
                        best_zmax = zmax
            return best_nll - ref, best, best_zmax, main
        inv_nu = 1.0 / nu
        h = 0.5 * (nu + 1.0)
        log1p = math.log1p
        for j in range(0, self.modes * block, block):
            u = st[j]
            if u > heaviest:
                heaviest = u
                main = j
            if u > 0.0:
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
                        acc += log1p(z * z * inv_nu)
                nll = acc * h + lw
                if nll < best_nll:
                    best_nll = nll
                    best = j
                    best_zmax = zmax
        return best_nll - ref, best, best_zmax, main

    def _flag_surprise(self, hits: int) -> float:
        lay = self._lay
        st = self._st
        s = 0.0
        # Rate with half a pseudo-event each way over at most 1/mode_alpha events of memory.
        ne = float(self.n)
        cap = 1.0 / self.mode_alpha
        if ne > cap:
            ne = cap
        bit = 1
        for i in range(lay.flags_at, lay.cal_at):
            p = (st[i] * ne + 0.5) / (ne + 1.0)
            if hits & bit:
                if p < 0.5:
                    s += math.log((1.0 - p) / p)
            elif p > 0.5:
                s += math.log(p / (1.0 - p))
            bit <<= 1
        return s

    def _learn_flags(self, hits: int) -> None:
        lay = self._lay
        st = self._st
        w = 1.0 / (self.n + 1)
        if w < self.mode_alpha:
            w = self.mode_alpha
        bit = 1
        for i in range(lay.flags_at, lay.cal_at):
            b = 1.0 if hits & bit else 0.0
            st[i] += w * (b - st[i])
            bit <<= 1

    def surprise(self, x: dict[Any, Any]) -> float:
        """Raw surprise of ``x`` in nats (0 for the actor's most typical event), uncalibrated."""
        if not self.n:
            return 0.0
        s = self._match(self._values(x))[0]
        return s + self._flag_surprise(self._hits(x)) if self._lay.flags else s

    def _log_tail_probability(self, s: float) -> float:
        """``ln`` of the share of the actor's normal events more surprising than ``s`` nats,
        worked out in logs: far in the tail the probability is below what ``1 - p`` can hold."""
        st = self._st
        j = self._lay.cal_at
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
        if self.n == 0:
            return 0.0
        return self._log_tail(self._logs(x), self._hits(x), x)

    def log_tail_logs(self, logs: tuple[float, ...], hits: int) -> float:
        """:meth:`log_tail` of an event given positionally, for a scorer with the default
        features: ``logs`` the ``log1p`` of its :data:`COUNT_FEATURES` (0.0 for a value of 0),
        ``hits`` its flags, bit i for ``BINARY_FEATURES[i]``. A :meth:`learn_logs` of the same
        ``logs`` right after reuses what this worked out."""
        if self.n == 0:
            return 0.0
        if self._lay is _DEFAULT_LAYOUT:
            return self._log_tail(logs, hits, logs)
        mine, relaid = self._relayout(logs, hits)
        return self._log_tail(relaid, mine, logs)

    def _relayout(self, logs: tuple[float, ...], hits: int) -> tuple[int, list[float]]:
        """(hits, logs) of the default features in this scorer's layout (a feature it does not
        know is left out, one it has and the defaults lack is 0)."""
        by_name = dict(zip(COUNT_FEATURES, logs, strict=True))
        lay = self._lay
        mine = 0
        for i, k in enumerate(lay.flags):
            if k in BINARY_FEATURES and hits >> BINARY_FEATURES.index(k) & 1:
                mine |= 1 << i
        return mine, [by_name.get(k, 0.0) for k in lay.cont]

    def _log_tail(self, logs: Any, hits: int, key: Any) -> float:
        n = self.n
        vs = self._vs(logs)
        s, best, zmax, _ = self._match(vs)
        sf = self._flag_surprise(hits) if self._lay.flags else 0.0
        # A learn of this same event right after need not work all this out again.
        self._memo = (key, n, vs, s, best, zmax, sf, hits)
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
        st[j + 2] = len(vs) * math.log(sd0) + (self._lay.n_cont - len(vs)) * math.log(floor)
        dev0 = self.prior_scale / _MAD_TO_SIGMA
        for o, v in vs:
            st[j + o] = v
            st[j + o + 1] = dev0

    def learn_one(self, x: dict[Any, Any]) -> None:
        memo = self._memo
        if memo is not None and memo[0] is x and memo[1] == self.n:
            self._learn(memo, memo[7], None)
        else:
            self._learn(None, self._hits(x), self._logs(x))

    def learn_logs(self, logs: tuple[float, ...], hits: int) -> None:
        """:meth:`learn_one` of an event given as for :meth:`log_tail_logs`."""
        memo = self._memo
        if memo is not None and memo[0] is logs and memo[1] == self.n:
            self._learn(memo, memo[7], None)
        elif self._lay is _DEFAULT_LAYOUT:
            self._learn(None, hits, logs)
        else:
            self._learn(None, *self._relayout(logs, hits))

    def _learn(self, memo: tuple[Any, ...] | None, hits: int, logs: Any) -> None:
        st = self._st
        n = self.n
        lay = self._lay
        self._memo = None
        if n == 0:
            vs = self._vs(logs)
            self._start_mode(0, vs, 1.0)
            self._mark_seen(vs)
            bit = 1
            for i in range(lay.flags_at, lay.cal_at):
                st[i] = 1.0 if hits & bit else 0.0
                bit <<= 1
            self.n = 1
            return
        if memo is not None:
            vs, s, best, zmax, sf = memo[2:7]
        else:
            vs = self._vs(logs)
            s, best, zmax, _ = self._match(vs)
            sf = self._flag_surprise(hits) if lay.flags else 0.0
        self._update(n, vs, s, best, zmax, sf, hits)

    def log_tail_learn(self, logs: tuple[float, ...], hits: int) -> tuple[float, float]:
        """:meth:`log_tail_logs` then :meth:`learn_logs` of the same event, in one step (the
        family's routine access); returns the log tail and what ``baseline("records")`` was
        before the event was learnt."""
        n = self.n
        if n == 0 or self._lay is not _DEFAULT_LAYOUT:
            lp = self.log_tail_logs(logs, hits)
            expected = self.baseline("records")
            self.learn_logs(logs, hits)
            return lp, expected
        self._memo = None
        vs = self._vs(logs)
        s, best, zmax, main = self._match(vs)
        sf = self._flag_surprise(hits)
        lp = self._log_tail_probability(s + sf)
        if n < self.warmup:
            lp *= n / self.warmup
        expected = math.expm1(self._st[main + 3])
        self._update(n, vs, s, best, zmax, sf, hits)
        return lp, expected

    def _update(
        self,
        n: int,
        vs: list[tuple[int, float]],
        s: float,
        best: int,
        zmax: float,
        sf: float,
        hits: int,
    ) -> None:
        """Learn an event of ``n`` learnt before: its values, surprises (counts, flags'), best
        mode and that mode's largest |z|, as :meth:`_match` and :meth:`_flag_surprise` found."""
        st = self._st
        lay = self._lay
        if lay.flags:
            s += sf
            self._learn_flags(hits)
        self._learn_calibration(s, n)
        self.n = n + 1
        # Mode weights: exponentially weighted shares of the events each mode learned.
        a = 1.0 / (n + 1)
        if a < self.mode_alpha:
            a = self.mode_alpha
        block = lay.block
        end = lay.flags_at
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
        mad = _MAD_TO_SIGMA
        log_floor = log(floor)
        lsig = (lay.n_cont - len(vs)) * log_floor
        for o, v in vs:
            i = j + o
            m = st[i]
            r = v - m
            d = st[i + 1]
            if r:
                lim = d * mad
                lim = clip * (lim if lim > floor else floor)
                if r > lim:
                    r = lim
                elif r < -lim:
                    r = -lim
                st[i] = m + w * r
                d += wd * ((r if r >= 0.0 else -r) - d)
            else:
                d -= wd * d
            st[i + 1] = d
            sd = d * mad
            lsig += log(sd) if sd > floor else log_floor
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
        block = self._lay.block
        main = 0
        for j in range(block, self._lay.flags_at, block):
            if st[j] > st[main]:
                main = j
        return main

    def baseline(self, feature: str) -> float:
        """Normal level of ``feature`` in its own units: the main habit's typical count, or a
        flag's rate (0 when unknown)."""
        lay = self._lay
        if feature in lay.cont:
            return math.expm1(self._st[self._main_mode() + 3 + 2 * lay.cont.index(feature)])
        if feature in lay.flags:
            return self._st[lay.flags_at + lay.flags.index(feature)]
        return 0.0

    def baseline_count(self, i: int) -> float:
        """:meth:`baseline` of the count feature ``i`` (in layout order), for every event."""
        return math.expm1(self._st[self._main_mode() + 3 + 2 * i])

    def contributions(self, x: dict[Any, Any]) -> dict[str, float]:
        """Surprise of each feature in nats (0 for the usual value), under the mode that best
        explains ``x``, for explanations: the features of the largest values made the score."""
        cont, flags = self._lay.cont, self._lay.flags
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
        j = self._lay.flags_at
        ne = min(float(self.n), 1.0 / self.mode_alpha)
        for k in flags:
            p = (st[j] * ne + 0.5) / (ne + 1.0)
            hit = x.get(k, 0.0) > 0.0
            pv = p if hit else 1.0 - p
            out[k] = max(0.0, math.log(max(p, 1.0 - p) / pv))
            j += 1
        return out


# Constructor settings: shared between restored instances (slot_state.py).
_SETTINGS = constructor_settings(AccessScorer)
