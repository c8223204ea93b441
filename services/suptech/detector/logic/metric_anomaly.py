"""Streaming anomaly detector for one named metric stream of an IT system (CPU, latency, errors...).

The score is a calibrated tail probability of the stream against its OWN history, so it needs no
knowledge of the metric's unit or range and one setting serves every metric.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from river import base

__all__ = ["MetricAnomaly"]

_DAY = 86400.0
# level residual, its short mean, seasonal residual, its short mean, the two long means
_N_FEATURES = 6


class MetricAnomaly(base.AnomalyDetector):
    """How extreme is this sample of one metric stream, against that stream's own history.

    ``x = {"t": epoch seconds, "value": float}``. Every sample gives two features of the
    residual against the stream's baseline: the residual itself (a spike or a dip) and its mean
    over the last ``window`` samples (a shift of level, which single samples can hide in noise).
    The baseline is a slow exponentially weighted level (``level_alpha``) plus, once the stream
    has covered ``seasonal_days`` days and a time-of-day profile (``bins`` slots, UTC) explains
    the data far better than the level alone (mean absolute residual below ``seasonal_gain`` of
    the level's), that time-of-day profile.

    Each feature's history is kept as its ``tail`` largest and ``tail`` smallest values of the
    last ``memory`` samples. A feature's two-sided tail probability is twice the smaller of its
    upper and lower ranks among those, ``(rank + 1) / (n + 1)``; beyond the extremes seen the
    tail is extrapolated as an exponential fitted to the stored extremes. The score is
    ``1 - p`` with ``p`` the smallest tail probability of the two features times two
    (Bonferroni): in ``[0, 1]``, and ``score >= 0.997`` happens about 3 times in 1,000 samples
    of a stream that behaves as it always has. No knowledge of the value's range is needed, drops
    are as anomalous as rises, and a stream whose spikes are routine learns that they are.

    The alarm policy raises one finding at the onset of a condition: ``alarm`` is True on the
    sample whose score first reaches ``threshold``; the condition then stays *flagged*, raising
    nothing new, until the score has stayed below ``clear`` for ``clear_for`` consecutive
    samples. While flagged the tail histories are frozen (the anomaly is not learned as normal),
    the baseline keeps adapting slowly, so a level shift is not accepted within tens of samples
    but does become the new normal instead of an alarm that never ends.

    Per stream the state is a few small ``array`` buffers (about 4 KB): 100k streams fit in well
    under 1 GB.

    Parameters
    ----------
    threshold
        Score at or above which a condition starts (1 - Bonferroni tail probability).
    clear
        The score must stay below this for ``clear_for`` samples before a new alarm can start.
    clear_for
        Consecutive samples below ``clear`` that end a flagged condition.
    window
        Samples in the short mean (the level-shift feature).
    level_alpha
        Weight of a new sample in the baseline level (about ``1 / level_alpha`` samples).
    tail
        Extremes kept per side and feature.
    memory
        Samples a kept extreme counts for (the history the ranks are taken in).
    warmup
        Samples learned before any score above 0 is given.
    bins
        Time-of-day slots of the seasonal profile.
    seasonal_days
        Days of stream needed before the seasonal profile may be used.
    seasonal_gain
        The profile is used when its mean absolute residual is below this fraction of the level's.

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(1)
    >>> det = MetricAnomaly()
    >>> for i in range(2000):
    ...     daily = 20 * math.sin(i * 2 * math.pi / 288)
    ...     _ = det.process_one({"t": i * 300.0, "value": 50 + daily + rng.gauss(0, 2)})
    >>> score, alarm = det.process_one({"t": 2000 * 300.0, "value": 95.0})
    >>> 0.0 <= score <= 1.0, alarm
    (True, True)
    >>> det.flagged
    True
    """

    def __init__(
        self,
        threshold: float = 0.997,
        clear: float = 0.99,
        clear_for: int = 30,
        window: int = 10,
        level_alpha: float = 0.003,
        tail: int = 32,
        memory: int = 20000,
        warmup: int = 150,
        bins: int = 48,
        seasonal_days: float = 3.0,
        seasonal_gain: float = 0.5,
        excess_floor: float = 0.25,
        freeze_while_flagged: bool = False,
        level_clip: float = 0.0,
        long_window: int = 60,
    ) -> None:
        self.long_window = long_window
        self._a_long = 2.0 / (long_window + 1) if long_window > 0 else 0.0
        self._n_tests = 3.0 if long_window > 0 else 2.0
        self._ew_l = 0.0
        self._ew_s = 0.0
        self.level_clip = level_clip
        self.freeze_while_flagged = freeze_while_flagged
        self.excess_floor = excess_floor
        self.threshold = threshold
        self.clear = clear
        self.clear_for = clear_for
        self.window = window
        self.level_alpha = level_alpha
        self.tail = tail
        self.memory = memory
        self.warmup = warmup
        self.bins = bins
        self.seasonal_days = seasonal_days
        self.seasonal_gain = seasonal_gain
        self.n = 0
        self.flagged = False
        self.alarm = False
        self._quiet = 0
        self._t0 = 0.0
        self._level = 0.0
        self._err_level = 0.0
        self._err_seasonal = 0.0
        self._profile = array("d", [0.0] * bins)
        self._profile_n = array("I", [0] * bins)
        # Ring buffers of the last `window` level and seasonal residuals, and their sums.
        self._ring_l = array("d", [0.0] * window)
        self._ring_s = array("d", [0.0] * window)
        self._ring_i = 0
        self._sum_l = 0.0
        self._sum_s = 0.0
        self._ring_s_n = 0  # consecutive seasonal residuals in the ring (the profile was ready)
        # Per feature: sorted upper and lower extremes, the sample index of each, their sums,
        # and how many samples the feature has learned.
        self._hi = [array("d") for _ in range(_N_FEATURES)]
        self._hi_at = [array("q") for _ in range(_N_FEATURES)]
        self._lo = [array("d") for _ in range(_N_FEATURES)]
        self._lo_at = [array("q") for _ in range(_N_FEATURES)]
        self._hi_sum = array("d", [0.0] * _N_FEATURES)
        self._lo_sum = array("d", [0.0] * _N_FEATURES)
        self._count = array("q", [0] * _N_FEATURES)

    # -- features ------------------------------------------------------------------------------

    def _features(self, t: float, v: float) -> tuple[int, float, float | None, bool]:
        """(time-of-day slot, level residual, seasonal residual or None, use the seasonal one)."""
        b = int((t % _DAY) * self.bins / _DAY)
        r_l = v - self._level
        r_s = None
        if self._profile_n[b] >= 2:
            r_s = r_l - self._profile[b]
        use_s = (
            r_s is not None
            and t - self._t0 >= self.seasonal_days * _DAY
            and self._err_seasonal < self.seasonal_gain * self._err_level
        )
        return b, r_l, r_s, use_s

    def _tail_p(self, j: int, s: float) -> float:
        """Two-sided tail probability of feature ``j`` taking value ``s`` (1.0 when unknown)."""
        floor = self.excess_floor * (self._err_seasonal if j >= 2 else self._err_level)
        n = self._count[j]
        if n > self.memory:
            n = self.memory
        hi = self._hi[j]
        k = len(hi)
        if k < 5 or n < 30:
            return 1.0
        p = 1.0
        if s >= hi[0]:
            p = (k - bisect_left(hi, s) + 1) / (n + 1.0)
            if s > hi[-1]:
                u = hi[0]
                me = self._hi_sum[j] / k - u
                if me < floor:
                    me = floor
                if me > 0.0:
                    ext = (k / n) * math.exp(-(s - u) / me)
                    if ext < p:
                        p = ext
        lo = self._lo[j]
        k = len(lo)
        if s <= lo[-1]:
            q = (bisect_right(lo, s) + 1) / (n + 1.0)
            if s < lo[0]:
                u = lo[-1]
                me = u - self._lo_sum[j] / k
                if me < floor:
                    me = floor
                if me > 0.0:
                    ext = (k / n) * math.exp(-(u - s) / me)
                    if ext < q:
                        q = ext
            if q < p:
                p = q
        p *= 2.0
        return p if p < 1.0 else 1.0

    def _learn_feature(self, j: int, s: float) -> None:
        self._count[j] += 1
        idx = self.n
        cap = self.tail
        hi = self._hi[j]
        if len(hi) < cap or s > hi[0]:
            if len(hi) >= cap:
                self._hi_sum[j] -= hi[0]
                del hi[0]
                del self._hi_at[j][0]
            pos = bisect_left(hi, s)
            hi.insert(pos, s)
            self._hi_at[j].insert(pos, idx)
            self._hi_sum[j] += s
        lo = self._lo[j]
        if len(lo) < cap or s < lo[-1]:
            if len(lo) >= cap:
                self._lo_sum[j] -= lo[-1]
                del lo[-1]
                del self._lo_at[j][-1]
            pos = bisect_right(lo, s)
            lo.insert(pos, s)
            self._lo_at[j].insert(pos, idx)
            self._lo_sum[j] += s

    def _expire(self) -> None:
        """Drop kept extremes older than ``memory`` samples."""
        oldest = self.n - self.memory
        for j in range(_N_FEATURES):
            for vals, ats, sums in (
                (self._hi[j], self._hi_at[j], self._hi_sum),
                (self._lo[j], self._lo_at[j], self._lo_sum),
            ):
                keep = [i for i, a in enumerate(ats) if a >= oldest]
                if len(keep) != len(ats):
                    kept_v = [vals[i] for i in keep]
                    kept_a = [ats[i] for i in keep]
                    del vals[:]
                    del ats[:]
                    vals.extend(kept_v)
                    ats.extend(kept_a)
                    sums[j] = math.fsum(kept_v)

    def _p(self, r_l: float, r_s: float | None, use_s: bool) -> float:
        w = self.window
        i = self._ring_i
        if use_s and r_s is not None:
            p = self._tail_p(2, r_s)
            if self._ring_s_n >= w - 1:
                q = self._tail_p(3, (self._sum_s - self._ring_s[i] + r_s) / w)
                p = q if q < p else p
            if self.long_window > 0:
                q = self._tail_p(5, self._ew_s + self._a_long * (r_s - self._ew_s))
                p = q if q < p else p
        else:
            p = self._tail_p(0, r_l)
            if self.n >= w:
                q = self._tail_p(1, (self._sum_l - self._ring_l[i] + r_l) / w)
                p = q if q < p else p
            if self.long_window > 0:
                q = self._tail_p(4, self._ew_l + self._a_long * (r_l - self._ew_l))
                p = q if q < p else p
        p *= self._n_tests
        return p if p < 1.0 else 1.0

    # -- river API -----------------------------------------------------------------------------

    def score_one(self, x: dict[Any, Any]) -> float:
        """Calibrated anomaly score in [0, 1] of ``x``, without learning it."""
        if self.n < self.warmup:
            return 0.0
        _, r_l, r_s, use_s = self._features(float(x["t"]), float(x["value"]))
        return 1.0 - self._p(r_l, r_s, use_s)

    def learn_one(self, x: dict[Any, Any]) -> None:
        """Learn ``x`` and advance the alarm policy (see :meth:`process_one`)."""
        self.process_one(x)

    def process_one(self, x: dict[Any, Any]) -> tuple[float, bool]:
        """Score ``x``, advance the alarm policy, learn ``x``: ``(score, alarm)``.

        ``alarm`` is True only on the first sample of a condition; :attr:`flagged` stays True
        while it lasts.
        """
        t = float(x["t"])
        v = float(x["value"])
        if self.n == 0:
            self._t0 = t
            self._level = v
        b, r_l, r_s, use_s = self._features(t, v)
        score = 0.0 if self.n < self.warmup else 1.0 - self._p(r_l, r_s, use_s)
        alarm = False
        if self.flagged:
            if score < self.clear:
                self._quiet += 1
                if self._quiet >= self.clear_for:
                    self.flagged = False
            else:
                self._quiet = 0
        elif score >= self.threshold:
            self.flagged = alarm = True
            self._quiet = 0
        self.alarm = alarm
        self._learn(b, v, r_l, r_s)
        return score, alarm

    # -- learning ------------------------------------------------------------------------------

    def _learn(self, b: int, v: float, r_l: float, r_s: float | None) -> None:
        w = self.window
        i = self._ring_i
        self._sum_l += r_l - self._ring_l[i]
        self._ring_l[i] = r_l
        if r_s is None:
            self._ring_s_n = 0
            rs = 0.0
        else:
            self._ring_s_n += 1
            rs = r_s
        self._sum_s += rs - self._ring_s[i]
        self._ring_s[i] = rs
        self._ring_i = (i + 1) % w
        if not (self.freeze_while_flagged and self.flagged):
            self._learn_feature(0, r_l)
            if self.n >= w - 1:
                self._learn_feature(1, self._sum_l / w)
            if r_s is not None:
                self._learn_feature(2, r_s)
                if self._ring_s_n >= w:
                    self._learn_feature(3, self._sum_s / w)
        a_long = self._a_long
        self._ew_l += a_long * (r_l - self._ew_l)
        if r_s is not None:
            self._ew_s += a_long * (r_s - self._ew_s)
        if self.long_window > 0 and not (self.freeze_while_flagged and self.flagged):
            if self.n >= self.long_window:
                self._learn_feature(4, self._ew_l)
            if r_s is not None and self._ring_s_n >= self.long_window:
                self._learn_feature(5, self._ew_s)
        self.n = n = self.n + 1
        if n % 256 == 0 and n > self.memory:
            self._expire()
        # Baseline: deseasonalised level, time-of-day profile, and each model's error.
        a = 1.0 / n
        if a < self.level_alpha:
            a = self.level_alpha
        ae = 0.01
        self._err_level += ae * ((r_l if r_l >= 0.0 else -r_l) - self._err_level)
        if r_s is not None:
            self._err_seasonal += ae * ((r_s if r_s >= 0.0 else -r_s) - self._err_seasonal)
        else:
            self._err_seasonal += ae * ((r_l if r_l >= 0.0 else -r_l) - self._err_seasonal)
        c = self._profile_n[b] + 1
        self._profile_n[b] = c if c < 4_000_000_000 else c - 1
        off = v - self._level
        if c == 1:
            self._profile[b] = off
        else:
            ab = 1.0 / c
            if ab < 0.1:
                ab = 0.1
            self._profile[b] += ab * (off - self._profile[b])
        d = v - self._level
        if self.level_clip > 0.0 and n > self.warmup:
            lim = self.level_clip * self._err_level
            d = lim if d > lim else (-lim if d < -lim else d)
        self._level += a * d
