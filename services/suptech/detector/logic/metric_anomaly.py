"""Streaming anomaly detector for one named metric stream of an IT system (CPU, latency, errors...).

The score is a calibrated tail probability of the stream against its OWN history, so it needs no
knowledge of the metric's unit or range, and one setting serves every metric.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from river import base

__all__ = ["MetricAnomaly"]

_DAY = 86400.0
# Features: 0-2 on the level residual, 3-5 on the seasonal residual; per residual: the residual,
# its mean over `window` samples, its two-sided CUSUM (drift; level residual only, 5 unused); 6
# the seasonal residual relative to the expected value (a positive stream's multiplicative noise).
_F = 7
_F_OLD = 6  # snapshots before the relative feature
_REL = 6
_SEASONAL = (False, False, False, True, True, True, False)
_GAP_STEPS = 4.0
# The routine test's time-of-day slots (hours, UTC) and its neighbourhood: a sample's own slot
# and the one either side, so a daily job that starts a little earlier or later is still itself.
_ROUTINE_SLOTS = 24
_ROUTINE_NB = 1
# A sample moves a mean absolute residual by at most this many times its current value, so
# that an anomaly does not widen the scale it is judged against while it lasts.
_SCALE_CLIP = 3.0
# Residuals (per baseline) before the drift statistic is learned into its tails.
_DRIFT_START = 60


def _widen(a: array, width: int) -> array:  # type: ignore[type-arg]
    """An old snapshot's per-generation blocks (``width`` slots each, ``_F_OLD`` features per
    generation) laid out for ``_F`` features, the new feature's blocks empty."""
    out = array(a.typecode)
    pad = array(a.typecode, [0] * width)
    for gen in range(2):
        out.extend(a[gen * _F_OLD * width : (gen + 1) * _F_OLD * width])
        for _ in range(_F - _F_OLD):
            out.extend(pad)
    return out


def _routine_blocks(days: int, slots: int) -> array:  # type: ignore[type-arg]
    """The routine test's empty memory: per side, ``days + 1`` days of ``slots`` extremes (float32:
    the test's margin is coarse, and the state stays under 8 KB pickled)."""
    k = (days + 1) * slots
    return array("f", [-math.inf] * k + [math.inf] * k)


def _scale_step(err: float, r: float, robust: bool) -> float:
    """One step of a mean absolute residual (about 100 samples); once ``robust`` (past the
    warmup), ``|r|`` is clipped at ``_SCALE_CLIP`` times the current value (a Huber-style
    update), so that a spike or a shift does not inflate the scale it is itself judged by."""
    a = r if r >= 0.0 else -r
    if robust and err > 0.0 and a > _SCALE_CLIP * err:
        a = _SCALE_CLIP * err
    return err + 0.01 * (a - err)


class MetricAnomaly(base.AnomalyDetector):
    """How extreme is this sample of one metric stream, against that stream's own history.

    ``x = {"t": epoch seconds, "value": float}``. The baseline is a slow exponentially weighted
    level (``level_alpha``) and, once the stream has covered ``seasonal_days`` days and a
    time-of-day profile (``bins`` slots, UTC) explains it far better than the level alone (mean
    absolute residual below ``seasonal_gain`` of the level's), that profile. Three features of
    the residual against the baseline are scored: the residual itself (a spike or a dip), its
    mean over the last ``window`` samples (a shift of level, which single samples can hide in
    noise or behind past bursts) and, on the level residual only, a drift statistic: a two-sided
    CUSUM of the residual clipped at ``drift_clip`` times the mean absolute residual, less an
    allowance of ``drift_k`` times it (a lasting departure of about one mean absolute residual,
    too small for any window's mean, adds up). Its tails are kept like the others', but its
    extrapolated tail's scale is at least ``drift_floor`` times the other features' floor (a sum
    of many residuals has a wider tail than one), and it is scored once the stream has covered
    ``seasonal_days`` (before that a daily cycle is a drift). It replaced an exponential mean of
    the residual over 60 samples (NAB 74.1 -> 77.2, 81 -> 84 of 97 windows, 49 -> 59 alarms
    outside; the Bonferroni factor stays four). Not on the seasonal residual: there a weekend or
    a holiday week, a whole day below the daily profile, adds up to a record (field study: IT
    autonomy F1 0.91 -> 0.84, 17 false metric findings), and NAB gains nothing from it.

    Each feature's history is its ``tail`` largest and ``tail`` smallest values, kept exactly for
    each of two generations of ``memory / 2`` samples (so the ranks are taken in the last
    ``memory / 2`` to ``memory`` samples). A feature's two-sided tail probability is twice the
    smaller of its upper and lower ranks, ``(rank + 1) / (n + 1)``; beyond the extremes seen the
    tail is extrapolated as an exponential fitted to the kept extremes, whose scale is at least
    ``excess_floor`` times the mean absolute residual: a tail thinner than that (a Gaussian's is
    about 0.4 of it) is not trusted from 20 extremes, so that the records of thin-tailed noise
    are no findings while a heavy-tailed stream's far excursions keep their full weight.

    An alarmed condition's excursion is one event of the tails, not many extremes: from an
    alarm's onset for ``clear_for`` samples, per feature and side only the excursion's peak is
    kept among the extremes (a later sample beyond it replaces it, one below it is not kept);
    past that the samples enter as before, so a lasting condition still becomes the new normal.
    Otherwise one anomaly fills the kept extremes with its samples: the next one must outrank
    the whole excursion, and the exponential tail fitted to the kept extremes is widened by it
    (NAB speed_t4013's second dip, deeper than the first, scored as a tie of it; NAB 71.0 ->
    74.1, 81 of 97 windows, 49 alarms outside). Measured and not kept, on NAB: the same for
    every excursion, alarmed or not (runs declustering, 10 samples apart: 57.3, 161 outside;
    only the long means: 71.6, 67 outside); for all of a condition's samples while flagged (71.9:
    its later samples stay extreme and keep it flagged over the next window); a harmonic mean
    of the four tests' ``p`` instead of Bonferroni (70.5, 87 outside: the tests' agreement does
    not tell anomalies from noise); the mean excess without the kept record (70.9); a shorter
    ``memory`` (4320: 68.9, 2000: 65.7); any ``threshold`` down to a mere record's (0.003:
    71.9; 0.0002: 71.5, 83 found but 158 outside: the records outside the windows are many).

    The mean absolute residuals (the scales of that floor, of ``min_effect`` and of the choice
    of baseline) are robust: past the warmup a sample moves one by at most ``_SCALE_CLIP``
    times its current value, so a spike or a level shift does not widen, while it lasts, the
    scale it is judged against (before, a shift of 16 times the noise doubled that scale
    within 10 samples and was never scored beyond its history; NAB 66.6 -> 71.0).

    A fourth test looks for bursts of extremes, which no single sample shows: a sustained
    anomaly (a surge of tweets, a noisy failing host) often yields many samples each about as
    extreme as the history's record, none far beyond it. A sample whose raw residual is among
    the history's ``burst_rank`` most extreme on its side is an "extreme"; in an exchangeable
    stream that happens with probability ``2 * burst_rank / (n + 1)`` per sample, so the count
    of extremes among the last ``burst_window`` samples is about Poisson, and ``burst_min`` or
    more of them have the Poisson tail probability. It runs once the stream has covered
    ``seasonal_days`` (before that, a daily cycle's first peaks are runs of new extremes).

    A stream never below zero whose noise grows with its level (latency, CPU: the regression
    of the absolute seasonal residual on the expected value, over about a day and a half,
    puts at least ``multiplicative_share`` of the residual's size on the level) is also judged
    relative to its expected value: the raw residual's tail probability is the larger of the
    absolute one and that of ``residual / expected`` against its own history. The busy hours'
    ordinary residuals are the largest in absolute terms and, in an absolute history mostly of
    quieter hours, look like records; relative to their level they are not. (Measured: 11
    alarms on 10 young streams of 8 % lognormal noise on office hours, now 1; NAB unchanged.)

    ``p``, the smallest tail probability of the four tests times four (Bonferroni), is the
    chance that one sample of a stream behaving as in its history is this extreme. The score is
    calibrated over a span of samples: ``score = exp(-span * p)``, the probability that such a
    stream shows nothing this extreme in ``span`` samples, with ``span`` (default) the length of
    the history itself, at least ``min_span`` (so a young stream's first extremes, scored against
    a short history, are not findings). So a score near 1 means "more extreme than anything this
    stream is expected to produce over its whole remembered history". ``threshold = 0.01``
    (``span * p`` at most 4.6, while a mere new record of the history has ``span * p`` about 8)
    alarms on extremes somewhat beyond the history's records (measured: 0.7 alarm per 60 days of
    5-minute Gaussian noise over 40 streams, nearly all in the first days while the history is
    short; 0.15 per 14 days of a noisy daily cycle over 20 streams). ``span=1`` gives the
    per-sample calibration instead (``score`` about ``1 - p``): every new extreme of the history
    then scores about ``1 - 6 / n``, and with ``burst_window=0, excess_floor=0.25`` the same
    streams raise 14 alarms per 30 days and 3.3 per 14 days at ``threshold=0.997``. No range is
    assumed, drops are as anomalous as rises, and spikes that are routine for a stream are
    learned as routine.

    The alarm policy raises one finding at the onset of a condition: ``alarm`` is True on the
    sample whose score first reaches ``threshold``; the condition then stays :attr:`flagged`,
    raising nothing new, until the score has stayed below ``clear`` for ``clear_for``
    consecutive samples. A level shift raises one alarm at its onset and stays flagged for at
    least ``clear_for`` samples; the shifted samples enter the history, so it becomes the new
    normal within tens of samples instead of alarming forever, and the slow baseline level
    absorbs it over about ``1 / level_alpha`` samples. ``freeze_while_flagged=True`` stops
    learning the history while flagged, so a shift stays flagged until the baseline has
    absorbed it (about 100 to 150 samples); measured on NAB it triples the alarms outside
    anomaly windows (bursts stay novel), hence off by default.

    An onset that is routine for its time of day raises no finding: if on each of the last
    ``routine_days`` days the raw test's residual went, on the same side and within an hour of
    this time of day, at least ``1 / (1 + routine_margin)`` of the way to this sample's, the
    condition is held (flagged, so its later samples raise nothing either) without an alarm
    and without an episode, so its samples are learned in full. A daily job whose spike edges
    past its own record every few days is otherwise a finding each time, since a time-of-day
    profile of 30-minute means does not explain a 5-minute spike and the tails hold the job's
    spikes among the stream's whole history (NAB's EC2 CPU streams, 24ae8d, c6585a and
    fe7f93, and the disk and network streams 1ef3de and 5abac7 with a job near midnight: NAB
    74.1 -> 74.6, 49 -> 39 alarms outside windows, the same 81 windows found at the same
    samples; the field study unchanged). What is held is what the last days did at that hour;
    a larger excursion, or one at another hour, is judged as before. Measured and not kept:
    only withholding the alarm (the condition not held: 74.3, 44 outside, as the excursion's
    next sample alarms instead), with the level residual also for a seasonal stream (72.8: two
    artificial windows lost, as a missing daily jump lies within the last days' swing), one day
    (68.3, 74 windows: an anomaly lasting two days is its own routine), three days (74.5),
    margins of 0.15 (74.5) and 0.35 (73.7, one window lost), the hour alone without its
    neighbours (74.5).

    Two operating points were measured on NAB (51 files, one configuration for all): the
    defaults (quiet: a finding is an extreme beyond the stream's whole history; standard score
    77.1, 44 alarms outside windows, 83 of 97 windows found; 77.2 and 59 outside with the drift
    test alone, 74.6 and 39 with the routine test alone, 74.1 before both, 71.0 before an
    alarmed excursion counted once in the tails, 66.6 before the robust scales, 56.8 before the
    burst test, ``min_span`` and the tail's floor, at ``threshold=0.5``) and the sensitive
    ``span=1, threshold=0.997, clear=0.99, burst_window=0, excess_floor=0.25, routine_days=0``
    (71.7; 72.8, 142 outside, 83 found before the drift test; 72.2, 122, 82 before the
    episodes), which alarms at about
    every new extreme of the history, but also on pure noise every few days (see
    perf/nab_benchmark.py).

    Per stream the state is a few fixed-size ``array`` buffers: about 10 KB of Python heap at
    the defaults (100k streams in about 1 GB; tracemalloc, 9.6 KB per stream after 6000
    samples, of which 0.65 KB the routine test's float32 memory), about 7.7 KB pickled; CPython
    spends about 7 us per sample in :meth:`process_one` (or :meth:`score_one` then
    :meth:`learn_one`, which reuses the score; measured before the routine test, which adds a
    few comparisons per sample).

    Parameters
    ----------
    threshold
        Score at or above which a condition starts.
    clear
        The score must stay below this for ``clear_for`` samples before a new alarm can start.
    clear_for
        Consecutive samples below ``clear`` that end a flagged condition.
    window
        Samples in the short mean.
    drift_k
        Allowance of the drift CUSUM, in mean absolute residuals; 0 drops the drift test.
    drift_clip
        Each residual enters the drift CUSUM clipped at this many mean absolute residuals.
    drift_floor
        The drift statistic's extrapolated tail scale is at least this times ``excess_floor``
        times the mean absolute residual.
    level_alpha
        Weight of a new sample in the baseline level (about ``1 / level_alpha`` samples).
    tail
        Extremes kept per side, feature and generation.
    memory
        Samples of history the ranks are taken in (two generations of ``memory / 2``).
    warmup
        Samples learned before any score above 0 is given.
    bins
        Time-of-day slots of the seasonal profile.
    seasonal_days
        Days of stream needed before the seasonal profile may be used.
    seasonal_gain
        The profile is used while its mean absolute residual is below this fraction of the level's.
    excess_floor
        Smallest scale of the extrapolated tail, as a fraction of the mean absolute residual (so
        that many tied extremes, such as zero counts, do not make the next tie a record).
    freeze_while_flagged
        Do not learn the tails while a condition is flagged.
    span
        Samples the score is calibrated over; None is the history's length, 1 per sample.
    min_span
        Smallest span when ``span`` is None (the history's length).
    burst_window
        Samples the burst test counts extremes in; 0 drops that test.
    burst_rank
        A raw residual among the history's ``burst_rank`` most extreme (per side) is an extreme.
    burst_min
        Extremes in ``burst_window`` samples before the burst test can fire.
    min_effect
        An alarm also needs the sample (or its short mean) to depart from the baseline by at
        least this many times the stream's mean absolute deviation from its level: rare but
        smaller than the stream's ordinary swing (a make-up day shaped a little differently)
        is no finding. 0 turns it off. NAB: 71.0 at 1.0 and at 0 (66.6 and 66.5 before the
        robust scales).
    multiplicative_share
        Share of the residual's size that must grow with the level before a positive stream's
        samples are also judged relative to their expected value; above 1 never.
    routine_days
        Days on each of which an excursion must have been matched within an hour of its time of
        day for its onset to be routine (no finding); 0 turns the routine test off.
    routine_margin
        How much further than those days' (the least of them) a routine excursion may go.

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(1)
    >>> det = MetricAnomaly()
    >>> for i in range(2000):
    ...     daily = 20 * math.sin(i * 2 * math.pi / 288)
    ...     _ = det.process_one({"t": i * 300.0, "value": 50 + daily + rng.gauss(0, 2)})
    >>> normal = {"t": 2000 * 300.0, "value": 50.0 + 20 * math.sin(2000 * 2 * math.pi / 288)}
    >>> det.score_one(normal) < det.threshold
    True
    >>> score, alarm = det.process_one({"t": 2000 * 300.0, "value": 95.0})
    >>> score > det.threshold, alarm, det.flagged
    (True, True, True)
    >>> det.process_one({"t": 2001 * 300.0, "value": 95.0})[1]  # the same condition: no new alarm
    False
    """

    def __init__(
        self,
        threshold: float = 0.01,
        clear: float = 0.001,
        clear_for: int = 30,
        window: int = 10,
        drift_k: float = 0.6,
        drift_clip: float = 4.0,
        drift_floor: float = 7.0,
        level_alpha: float = 0.003,
        tail: int = 20,
        memory: int = 8640,
        warmup: int = 150,
        bins: int = 48,
        seasonal_days: float = 3.0,
        seasonal_gain: float = 0.5,
        excess_floor: float = 0.6,
        freeze_while_flagged: bool = False,
        span: int | None = None,
        min_span: int = 800,
        burst_window: int = 60,
        burst_rank: float = 2.0,
        burst_min: int = 3,
        min_effect: float = 1.0,
        multiplicative_share: float = 0.5,
        routine_days: int = 2,
        routine_margin: float = 0.25,
    ) -> None:
        self.routine_days = routine_days
        self.routine_margin = routine_margin
        self.min_effect = min_effect
        self.multiplicative_share = multiplicative_share
        self.span = span
        self.min_span = min_span
        self.burst_window = burst_window
        self.burst_rank = burst_rank
        self.burst_min = burst_min
        self.threshold = threshold
        self.clear = clear
        self.clear_for = clear_for
        self.window = window
        self.drift_k = drift_k
        self.drift_clip = drift_clip
        self.drift_floor = drift_floor
        self.level_alpha = level_alpha
        self.tail = tail
        self.memory = memory
        self.warmup = warmup
        self.bins = bins
        self.seasonal_days = seasonal_days
        self.seasonal_gain = seasonal_gain
        self.excess_floor = excess_floor
        self.freeze_while_flagged = freeze_while_flagged
        self.n = 0
        self.flagged = False
        self.alarm = False
        self._quiet = 0
        self._covered = 0.0  # seconds of stream covered by samples (gaps count as a few steps)
        self._step = 0.0  # typical interval between samples (exponential mean)
        self._level = 0.0
        self._level_s = 0.0
        self._err_level = 0.0
        self._err_seasonal = 0.0
        self._err_rel = 0.0
        self._vmin = math.inf
        # Exponential moments of (expected value, absolute seasonal residual) over about a day
        # and a half: how much of the residual's size grows with the level (multiplicative).
        self._mom = array("d", [0.0] * 5)
        self._profile = array("d", [0.0] * bins)
        self._profile_n = array("I", [0] * bins)
        self._n_tests = 3.0 if drift_k > 0.0 else 2.0
        # Two-sided CUSUM (upper, lower) of the level residual: the drift test. Feature 5 (its
        # seasonal counterpart) stays empty: a daily cycle's weekend or holiday is a drift.
        self._cu_l = array("d", [0.0, 0.0])
        # Ring buffers of the last `window` level and seasonal residuals, and their sums.
        self._ring_l = array("d", [0.0] * window)
        self._ring_s = array("d", [0.0] * window)
        self._ring_i = 0
        self._sum_l = 0.0
        self._sum_s = 0.0
        self._run_s = 0  # consecutive samples with a seasonal residual
        # Per feature j: generation j (current) and j + _F (previous), each a block of `tail`
        # slots at g * tail in one flat array per side, sorted ascending, `_hi_len[g]` used;
        # the sums of the kept extremes and how many samples each generation has learned.
        self._hi = array("d", [0.0] * (2 * _F * tail))
        self._lo = array("d", [0.0] * (2 * _F * tail))
        self._hi_len = array("q", [0] * (2 * _F))
        self._lo_len = array("q", [0] * (2 * _F))
        self._hi_sum = array("d", [0.0] * (2 * _F))
        self._lo_sum = array("d", [0.0] * (2 * _F))
        self._count = array("q", [0] * (2 * _F))
        self._gen_n = 0
        # An alarmed condition's excursion is one event of the tails: until sample
        # `_episode_until`, per feature and side only its peak is kept among the extremes
        # (`_peaks`: the hi peaks, then the lo peaks; +-inf while the episode has none kept).
        self._episode_until = -1
        self._peaks = array("d", [-math.inf] * _F + [math.inf] * _F)
        self._t_last = 0.0
        self._p1 = 1.0  # the last scored sample's raw-residual tail probability
        self._burst = 0  # bit i: the sample i steps back was among the history's extremes
        self._last: tuple[int, float, float, float, float] | None = None
        # The routine test's memory: per side (the largest residual, then the smallest), day (0
        # today, then the `routine_days` before) and hour of the day, that day's most extreme
        # residual of the raw test in that hour (-inf / +inf where none was seen).
        self._routine_day = -1  # day number (t // 86400) of day 0
        self._routine = _routine_blocks(routine_days, _ROUTINE_SLOTS)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Snapshots from before the relative feature: its tail blocks start empty (it learns
        from the next sample on and stays out of the scores until it has 30 samples)."""
        self.__dict__.update(state)
        if len(self._count) == 2 * _F_OLD:
            tail = self.tail
            self._hi = _widen(self._hi, tail)
            self._lo = _widen(self._lo, tail)
            self._hi_len = _widen(self._hi_len, 1)
            self._lo_len = _widen(self._lo_len, 1)
            self._hi_sum = _widen(self._hi_sum, 1)
            self._lo_sum = _widen(self._lo_sum, 1)
            self._count = _widen(self._count, 1)
            self._err_rel = 0.0
            self._mom = array("d", [0.0] * 5)
            # Unknown: taken as positive until a sample says otherwise (the relative test can
            # only keep an alarm from being raised, never raise one).
            self._vmin = math.inf
        if "_routine" not in state:
            # From before the routine test: it starts empty, so it can hold an onset two days on.
            self.routine_days = 2
            self.routine_margin = 0.25
            self._routine_day = -1
            self._routine = _routine_blocks(self.routine_days, _ROUTINE_SLOTS)
        if "_cu_l" not in state:
            # Snapshots from before the drift test: features 2 and 5 held an exponential mean;
            # their tails start empty (out of the scores until they have 30 samples again).
            self.drift_k, self.drift_clip, self.drift_floor = 0.6, 4.0, 7.0
            self._cu_l = array("d", [0.0, 0.0])
            for j in (2, 5, 2 + _F, 5 + _F):
                self._hi_len[j] = self._lo_len[j] = 0
                self._hi_sum[j] = self._lo_sum[j] = 0.0
                self._count[j] = 0
            for name in ("long_window", "_a_long", "_ew_l", "_ew_s"):
                self.__dict__.pop(name, None)
        if "_episode_until" not in state:
            self._episode_until = -1
            self._peaks = array("d", [-math.inf] * _F + [math.inf] * _F)

    # -- features ------------------------------------------------------------------------------

    def _features(self, t: float, v: float) -> tuple[int, float, float | None, bool]:
        """(time-of-day slot, level residual, seasonal residual or None, use the seasonal one)."""
        b = int((t % _DAY) * self.bins / _DAY)
        r_l = v - self._level
        r_s = None
        if self._profile_n[b] >= 2:
            r_s = v - self._level_s - self._profile[b]
        use_s = (
            r_s is not None
            and self._covered >= self.seasonal_days * _DAY
            and self._err_seasonal < self.seasonal_gain * self._err_level
        )
        return b, r_l, r_s, use_s

    def expected(self, t: float) -> float:
        """The value a sample at ``t`` is compared with: the level, or level plus the time-of-day
        profile once that explains the stream (0 before the first sample)."""
        if self.n == 0:
            return 0.0
        b, _, _, use_s = self._features(t, 0.0)
        return self._level_s + self._profile[b] if use_s else self._level

    def _tail_p(self, j: int, s: float) -> float:
        """Two-sided tail probability of feature ``j`` taking the value ``s``."""
        cnt = self._count
        n = cnt[j] + cnt[j + _F]
        if n < 30:
            return 1.0
        cap = self.tail
        if j == _REL:
            err = self._err_rel
        else:
            err = self._err_seasonal if _SEASONAL[j] else self._err_level
        floor = self.excess_floor * err
        if j == 2 or j == 5:
            floor *= self.drift_floor  # a sum of many residuals: a wider tail than one's
        p = 1.0
        # Upper tail: exact count of kept values >= s, unless s is below a full generation's
        # kept extremes (then s is not in the upper tail at all).
        hi = self._hi
        hi_len = self._hi_len
        above = 0
        best = -1
        for g in (j, j + _F):
            k = hi_len[g]
            if k == 0:
                continue
            base = g * cap
            if k >= cap and s < hi[base]:
                above = -1
                break
            above += base + k - bisect_left(hi, s, base, base + k)
            if best < 0 or k > hi_len[best]:
                best = g
        if above >= 0 and best >= 0:
            p = (above + 1.0) / (n + 1.0)
            k = hi_len[best]
            if above == 0 and k >= 5:
                u = hi[best * cap]
                me = self._hi_sum[best] / k - u
                if me < floor:
                    me = floor
                if me > 0.0:
                    ext = (k / cnt[best]) * math.exp(-(s - u) / me)
                    if ext < p:
                        p = ext
        lo = self._lo
        lo_len = self._lo_len
        below = 0
        best = -1
        for g in (j, j + _F):
            k = lo_len[g]
            if k == 0:
                continue
            base = g * cap
            if k >= cap and s > lo[base + k - 1]:
                below = -1
                break
            below += bisect_right(lo, s, base, base + k) - base
            if best < 0 or k > lo_len[best]:
                best = g
        if below >= 0 and best >= 0:
            q = (below + 1.0) / (n + 1.0)
            k = lo_len[best]
            if below == 0 and k >= 5:
                u = lo[best * cap + k - 1]
                me = u - self._lo_sum[best] / k
                if me < floor:
                    me = floor
                if me > 0.0:
                    ext = (k / cnt[best]) * math.exp(-(u - s) / me)
                    if ext < q:
                        q = ext
            if q < p:
                p = q
        p *= 2.0
        return p if p < 1.0 else 1.0

    def _drift(self, cu: array[float], r: float, err: float, advance: bool) -> float:
        """The drift statistic after residual ``r``: a two-sided CUSUM ``(upper, lower)`` of the
        residual clipped at ``drift_clip`` times its mean absolute value ``err``, less an
        allowance of ``drift_k`` times ``err``; the side further from 0, signed. ``advance``
        stores the new sums in ``cu``."""
        k = self.drift_k * err
        c = self.drift_clip * err
        if c > 0.0:
            r = c if r > c else (-c if r < -c else r)
        up = cu[0] + r - k
        if up < 0.0:
            up = 0.0
        lo = cu[1] + r + k
        if lo > 0.0:
            lo = 0.0
        if advance:
            cu[0] = up
            cu[1] = lo
        return up if up >= -lo else lo

    def _is_extreme(self, p1: float) -> bool:
        """The raw residual is among the history's ``burst_rank`` most extreme on its side."""
        return p1 * (self._count[0] + self._count[_F] + 1.0) <= 2.0 * self.burst_rank

    def _burst_p(self, p1: float) -> float:
        """Chance that ``burst_window`` samples of an exchangeable stream hold as many extremes as
        the last ones (this sample included): the Poisson tail at rate
        ``2 * burst_rank / (n + 1)`` per sample."""
        w = self.burst_window
        k = (self._burst & ((1 << (w - 1)) - 1)).bit_count() + self._is_extreme(p1)
        if k < self.burst_min:
            return 1.0
        lam = w * 2.0 * self.burst_rank / (self._count[0] + self._count[_F] + 1.0)
        term = math.exp(-lam)
        for i in range(1, k + 1):
            term *= lam / i
        tot = 0.0
        i = k
        while term > 1e-300 and i < k + 40:
            tot += term
            i += 1
            term *= lam / i
        return tot if tot < 1.0 else 1.0

    def _relative(self, r_s: float, v: float) -> float | None:
        """The seasonal residual over the expected value, for a stream never below zero."""
        e = v - r_s
        if self._vmin > 0.0 and e > 0.0 and v > 0.0:
            return r_s / e
        return None

    def _multiplicative(self) -> bool:
        """Whether most of the residual's size is proportional to the expected value: the
        regression of the absolute residual on the expected value through the stream's
        moments, its slope times the mean level against the mean absolute residual."""
        w, me, mr, mee, mer = self._mom
        if w <= 0.0:
            return False
        me /= w
        mr /= w
        var = mee / w - me * me
        if var <= (1e-3 * me) ** 2 or mr <= 0.0:
            return False  # a level that hardly moves: both views agree anyway
        slope = (mer / w - me * mr) / var
        return slope * me >= self.multiplicative_share * mr

    def _p(self, r_l: float, r_s: float | None, use_s: bool, v: float) -> float:
        """Tail probability of the sample's features under the chosen baseline."""
        w = self.window
        i = self._ring_i
        rel = None
        if use_s and r_s is not None:
            p1 = self._tail_p(3, r_s)
            rel = self._relative(r_s, v)
            p2 = (
                self._tail_p(4, (self._sum_s - self._ring_s[i] + r_s) / w)
                if self._run_s >= w - 1
                else 1.0
            )
            p3 = 1.0  # no drift test on the seasonal residual (see the class docstring)
        else:
            p1 = self._tail_p(0, r_l)
            p2 = self._tail_p(1, (self._sum_l - self._ring_l[i] + r_l) / w) if self.n >= w else 1.0
            p3 = (
                self._tail_p(2, self._drift(self._cu_l, r_l, self._err_level, False))
                if self.drift_k > 0.0 and self._covered >= self.seasonal_days * _DAY
                else 1.0
            )
        self._p1 = p1
        if rel is not None and self._multiplicative():
            # A positive stream whose noise grows with its level: a sample must be as rare
            # relative to its expected value as in absolute terms, or the busy hours' ordinary
            # residuals, the largest, are records of an absolute history mostly of quieter hours.
            p_rel = self._tail_p(_REL, rel)
            if p_rel > p1:
                p1 = p_rel
        n_tests = self._n_tests
        # The burst test waits until the stream has covered `seasonal_days`: before that a daily
        # cycle's first peaks and troughs are runs of new extremes.
        if self.burst_window > 0 and self._covered >= self.seasonal_days * _DAY:
            n_tests += 1.0
            p4 = self._burst_p(self._p1)
            if p4 < p1:
                p1 = p4
        p = min(p1, p2, p3) * n_tests
        span = self.span
        if span is None:
            span = self._count[0] + self._count[_F]  # the history the ranks are taken in
            if span < self.min_span:
                span = self.min_span
        # Probability that a stream behaving as in its history shows such an extreme at least
        # once in `span` samples.
        return -math.expm1(-span * p)

    # -- river API -----------------------------------------------------------------------------

    def score_one(self, x: dict[Any, Any]) -> float:
        """Calibrated anomaly score in [0, 1] of ``x``, without learning it."""
        if self.n < self.warmup:
            return 0.0
        t = float(x["t"])
        v = float(x["value"])
        _, r_l, r_s, use_s = self._features(t, v)
        score = 1.0 - self._p(r_l, r_s, use_s, v)
        self._last = (self.n, t, v, score, self._p1)  # learn_one of the same sample reuses it
        return score

    def learn_one(self, x: dict[Any, Any]) -> None:
        """Learn ``x`` and advance the alarm policy (as :meth:`process_one`)."""
        self.process_one(x)

    def process_one(self, x: dict[Any, Any]) -> tuple[float, bool]:
        """Score ``x``, advance the alarm policy, learn ``x``: ``(score, alarm)``.

        ``alarm`` is True only on the first sample of a condition; :attr:`flagged` stays True
        while it lasts. The score is the one :meth:`score_one` gives before learning ``x``.
        """
        t = float(x["t"])
        v = float(x["value"])
        if self.n == 0:
            self._level = v
            self._level_s = v
        b, r_l, r_s, use_s = self._features(t, v)
        r_raw = r_s if use_s and r_s is not None else r_l  # the raw test's residual
        last = self._last
        self._p1 = 1.0
        if last is not None and last[0] == self.n and last[1] == t and last[2] == v:
            score = last[3]
            self._p1 = last[4]
        else:
            score = 0.0 if self.n < self.warmup else 1.0 - self._p(r_l, r_s, use_s, v)
        if self.burst_window > 0:
            mask = (1 << self.burst_window) - 1
            self._burst = ((self._burst << 1) | self._is_extreme(self._p1)) & mask
        alarm = False
        if self.flagged:
            if score < self.clear:
                self._quiet += 1
                if self._quiet >= self.clear_for:
                    self.flagged = False
            else:
                self._quiet = 0
        elif score >= self.threshold and self._material(r_l, r_s, use_s):
            # A routine excursion is held as a condition (flagged, so its later samples raise
            # nothing either) but raises no finding and opens no episode: it is learned in full.
            self.flagged = True
            self._quiet = 0
            if not self._routine_at(t, r_raw):
                alarm = True
                self._open_episode()
        self.alarm = alarm
        if self.routine_days > 0:
            self._routine_learn(t, r_raw)
        self._learn(b, v, r_l, r_s)
        self._cover(t)
        return score, alarm

    def _routine_at(self, t: float, r: float) -> bool:
        """Whether the raw test's residual ``r`` is routine for its time of day: on each of the
        last ``routine_days`` days the residual went, on the same side and within an hour of this
        time of day, at least ``1 / (1 + routine_margin)`` of the way to ``r``."""
        days = self.routine_days
        if days <= 0 or r == 0.0:
            return False
        slots = _ROUTINE_SLOTS
        b = int((t % _DAY) * slots / _DAY)
        side = 1.0 if r > 0.0 else -1.0
        a = self._routine
        first = (0 if r > 0.0 else days + 1) * slots
        limit = side * r / (1.0 + self.routine_margin)
        for d in range(1, days + 1):
            base = first + d * slots
            reached = 0.0
            for k in range(b - _ROUTINE_NB, b + _ROUTINE_NB + 1):
                e = side * a[base + k % slots]
                if e > reached:
                    reached = e
            if reached < limit:
                return False
        return True

    def _routine_learn(self, t: float, r: float) -> None:
        """Keep today's most extreme residuals per hour; a new day shifts the days back (a
        day without samples stays empty, so it breaks the routine)."""
        days = self.routine_days
        slots = _ROUTINE_SLOTS
        b = int((t % _DAY) * slots / _DAY)
        a = self._routine
        day = int(t // _DAY)
        if day < self._routine_day:
            return  # a late sample of a day already shifted back: not learned
        if day != self._routine_day:
            gap = day - self._routine_day if self._routine_day >= 0 else days + 1
            for side, fill in ((0, -math.inf), (1, math.inf)):
                first = side * (days + 1) * slots
                for d in range(days, -1, -1):
                    dst = first + d * slots
                    if d >= gap:
                        src = dst - gap * slots
                        a[dst : dst + slots] = a[src : src + slots]
                    else:
                        a[dst : dst + slots] = array("f", [fill] * slots)
            self._routine_day = day
        if r > a[b]:
            a[b] = r
        low = (days + 1) * slots + b
        if r < a[low]:
            a[low] = r

    def _open_episode(self) -> None:
        """From an alarm's onset for ``clear_for`` samples, the condition's extremes count once:
        per feature and side only the excursion's peak is kept (see the class docstring)."""
        self._episode_until = self.n + self.clear_for
        peaks = self._peaks
        for j in range(_F):
            peaks[j] = -math.inf
            peaks[_F + j] = math.inf

    def _cover(self, t: float) -> None:
        """Advance the time the samples cover: a gap (a model that sees only rest days, a
        stream that was down) counts as at most ``_GAP_STEPS`` typical intervals, so a profile
        or a test that needs days of history waits for days of samples, not of calendar."""
        if self.n > 1:
            dt = t - self._t_last
            if dt > 0.0:
                if self._step == 0.0:
                    self._step = dt
                cap = _GAP_STEPS * self._step
                dt = dt if dt < cap else cap
                self._step += 0.01 * (dt - self._step)
                self._covered += dt
        self._t_last = t

    def tail_probability(self, score: float) -> float:
        """The per-sample tail probability behind ``score`` (``score = exp(-span * p)``): the
        chance that one sample of a stream behaving as in its history is this extreme."""
        span = self.span
        if span is None:
            span = max(self._count[0] + self._count[_F], self.min_span)
        return -math.log(score) / span if score > 0.0 else 1.0

    def _material(self, r_l: float, r_s: float | None, use_s: bool) -> bool:
        """Whether the sample, or the mean of the last ``window`` samples, departs from its
        baseline by at least ``min_effect`` times the stream's mean absolute deviation from its
        level (for a stream with a daily cycle, about that cycle's amplitude; for a flat one,
        its noise): a departure smaller than the stream's own ordinary swing is no finding,
        however rare the model finds it."""
        floor = self.min_effect * self._err_level
        if floor <= 0.0:
            return True
        w = self.window
        if use_s and r_s is not None:
            r, total, full = r_s, self._sum_s, self._run_s >= w - 1
        else:
            r, total, full = r_l, self._sum_l, self.n >= w
        ring = self._ring_s if use_s else self._ring_l
        mean = (total - ring[self._ring_i] + r) / w if full else 0.0
        return abs(r) >= floor or abs(mean) >= floor

    # -- learning ------------------------------------------------------------------------------

    def _learn_feature(self, j: int, s: float) -> None:
        cap = self.tail
        base = j * cap
        self._count[j] += 1
        episode = self.n <= self._episode_until
        hi = self._hi
        k = self._hi_len[j]
        if k < cap:
            pos = bisect_left(hi, s, base, base + k)
            hi[pos + 1 : base + k + 1] = hi[pos : base + k]
            hi[pos] = s
            self._hi_len[j] = k + 1
            self._hi_sum[j] += s
        elif s > hi[base] and not (episode and self._episode_hi(j, s)):
            # Drop the smallest kept value, slide the ones below s down, put s in place.
            self._hi_sum[j] += s - hi[base]
            pos = bisect_left(hi, s, base, base + k)
            hi[base : pos - 1] = hi[base + 1 : pos]
            hi[pos - 1] = s
        lo = self._lo
        k = self._lo_len[j]
        if k < cap:
            pos = bisect_right(lo, s, base, base + k)
            lo[pos + 1 : base + k + 1] = lo[pos : base + k]
            lo[pos] = s
            self._lo_len[j] = k + 1
            self._lo_sum[j] += s
        elif s < lo[base + k - 1] and not (episode and self._episode_lo(j, s)):
            # Drop the largest kept value, slide the ones above s up, put s in place.
            self._lo_sum[j] += s - lo[base + k - 1]
            pos = bisect_right(lo, s, base, base + k - 1)
            lo[pos + 1 : base + k] = lo[pos : base + k - 1]
            lo[pos] = s

    def _episode_hi(self, j: int, s: float) -> bool:
        """Learn ``s``, an upper extreme of feature ``j`` within an alarmed episode, as that
        episode's one extreme: True if done (``s`` replaced the episode's kept peak or is below
        it), False if ``s`` is to be kept as a new extreme (the episode's first, or its peak was
        pushed out meanwhile)."""
        pk = self._peaks[j]
        if s <= pk:
            return True
        self._peaks[j] = s
        if pk == -math.inf:
            return False
        hi = self._hi
        base = j * self.tail
        top = base + self._hi_len[j]
        pos = bisect_left(hi, pk, base, top)
        if pos >= top or hi[pos] != pk:
            return False
        # Take pk out, slide the values between pk and s down, put s in place.
        self._hi_sum[j] += s - pk
        end = bisect_left(hi, s, base, top)
        hi[pos : end - 1] = hi[pos + 1 : end]
        hi[end - 1] = s
        return True

    def _episode_lo(self, j: int, s: float) -> bool:
        """:meth:`_episode_hi` for the lower extremes."""
        pk = self._peaks[_F + j]
        if s >= pk:
            return True
        self._peaks[_F + j] = s
        if pk == math.inf:
            return False
        lo = self._lo
        base = j * self.tail
        top = base + self._lo_len[j]
        pos = bisect_right(lo, pk, base, top) - 1
        if pos < base or lo[pos] != pk:
            return False
        self._lo_sum[j] += s - pk
        start = bisect_right(lo, s, base, top)
        lo[start + 1 : pos + 1] = lo[start:pos]
        lo[start] = s
        return True

    def _moments(self, e: float, ar: float) -> None:
        """Learn one (expected value, absolute residual) pair into the moments."""
        mom = self._mom
        a = 0.002
        mom[0] += a * (1.0 - mom[0])
        mom[1] += a * (e - mom[1])
        mom[2] += a * (ar - mom[2])
        mom[3] += a * (e * e - mom[3])
        mom[4] += a * (e * ar - mom[4])

    def _new_generation(self) -> None:
        """The current generation becomes the previous one; the oldest is forgotten."""
        half = _F * self.tail
        self._hi[half:] = self._hi[:half]
        self._lo[half:] = self._lo[:half]
        for j in range(_F):
            g = j + _F
            self._hi_len[g] = self._hi_len[j]
            self._lo_len[g] = self._lo_len[j]
            self._hi_sum[g] = self._hi_sum[j]
            self._lo_sum[g] = self._lo_sum[j]
            self._count[g] = self._count[j]
            self._hi_len[j] = self._lo_len[j] = 0
            self._hi_sum[j] = self._lo_sum[j] = 0.0
            self._count[j] = 0
        self._gen_n = 0

    def _learn(self, b: int, v: float, r_l: float, r_s: float | None) -> None:
        rel = None if r_s is None else self._relative(r_s, v)
        if v < self._vmin:
            self._vmin = v
        w = self.window
        i = self._ring_i
        self._sum_l += r_l - self._ring_l[i]
        self._ring_l[i] = r_l
        rs = 0.0 if r_s is None else r_s
        self._run_s = 0 if r_s is None else self._run_s + 1
        self._sum_s += rs - self._ring_s[i]
        self._ring_s[i] = rs
        self._ring_i = (i + 1) % w
        drift = self.drift_k > 0.0
        d_l = self._drift(self._cu_l, r_l, self._err_level, True) if drift else 0.0
        if not (self.freeze_while_flagged and self.flagged):
            n = self.n
            learn = self._learn_feature
            learn(0, r_l)
            if n >= w - 1:
                learn(1, self._sum_l / w)
            if drift and n >= _DRIFT_START:
                learn(2, d_l)
            if r_s is not None:
                run = self._run_s
                learn(3, r_s)
                if run >= w:
                    learn(4, self._sum_s / w)
                if rel is not None:
                    learn(_REL, rel)
            self._gen_n += 1
            if self._gen_n >= self.memory // 2:
                self._new_generation()

        self.n = n = self.n + 1
        # Baseline: level, time-of-day profile, and each one's mean absolute residual.
        robust = n > self.warmup
        self._err_level = _scale_step(self._err_level, r_l, robust)
        self._err_seasonal = _scale_step(self._err_seasonal, r_l if r_s is None else r_s, robust)
        if rel is not None and r_s is not None:
            self._err_rel = _scale_step(self._err_rel, rel, robust)
            self._moments(v - r_s, r_s if r_s >= 0.0 else -r_s)
        c = self._profile_n[b] + 1
        if c < 4_000_000_000:
            self._profile_n[b] = c
        off = v - self._level_s
        if c == 1:
            self._profile[b] = off
        else:
            ab = 1.0 / c
            if ab < 0.1:
                ab = 0.1
            self._profile[b] += ab * (off - self._profile[b])
        a = 1.0 / n
        if a < self.level_alpha:
            a = self.level_alpha
        self._level += a * (v - self._level)
        self._level_s += a * (v - self._profile[b] - self._level_s)
        if n % self.bins == 0:
            # Keep the profile centred on 0 (the level holds the mean), as in Holt-Winters.
            seen = [self._profile[k] for k in range(self.bins) if self._profile_n[k]]
            if seen:
                m = math.fsum(seen) / len(seen)
                for k in range(self.bins):
                    if self._profile_n[k]:
                        self._profile[k] -= m
                self._level_s += m
