"""MetricAnomaly: calibrated scores, pickling, onset alarms on a noisy daily-seasonal metric.

The confounder is a noisy daily cycle (5-minute samples, amplitude 20, noise sd 3). A recurring
weekly job spike is not part of it: the detector models time of day only (no day of week), so a
weekly job would alarm at its first occurrences, as any never-seen extreme does.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable

import pytest
from suptech.detector.logic.metric_anomaly import MetricAnomaly

STEP = 300.0
DAY = 86400.0
ONSET = 10 * 288 + 100  # day 10, 08:20 UTC


def daily(days: int = 14, seed: int = 0) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    n = int(days * DAY / STEP)
    return [
        (i * STEP, 50.0 + 20.0 * math.sin(2 * math.pi * i * STEP / DAY) + rng.gauss(0.0, 3.0))
        for i in range(n)
    ]


def run(
    xs: list[tuple[float, float]], change: Callable[[int, float], float] = lambda i, v: v
) -> tuple[list[float], list[int], list[bool]]:
    det = MetricAnomaly()
    scores, alarms, flagged = [], [], []
    for i, (t, v) in enumerate(xs):
        s, a = det.process_one({"t": t, "value": change(i, v)})
        scores.append(s)
        flagged.append(det.flagged)
        if a:
            alarms.append(i)
    return scores, alarms, flagged


def test_quiet_on_the_noisy_daily_cycle() -> None:
    scores, alarms, _ = run(daily())
    assert alarms == []
    assert max(scores[2000:]) < 0.5


def test_false_alarm_rate_on_clean_daily_streams() -> None:
    # Budget: at most 0.5 alarm per 14 days of a clean noisy daily cycle (10 streams: <= 5).
    total = sum(len(run(daily(seed=s))[1]) for s in range(1, 11))
    assert total <= 5


def test_false_alarm_rate_on_gaussian_noise() -> None:
    # Budget: at most 1 alarm per 60 days of i.i.d. 5-minute noise (5 streams: <= 5).
    total = 0
    for seed in range(5):
        rng = random.Random(100 + seed)
        xs = [(i * STEP, rng.gauss(0.0, 1.0)) for i in range(int(60 * DAY / STEP))]
        total += len(run(xs)[1])
    assert total <= 5


@pytest.mark.parametrize("delta", [25.0, -25.0], ids=["spike-up", "drop-down"])
def test_catches_a_single_sample_spike_and_drop(delta: float) -> None:
    _, alarms, _ = run(daily(), lambda i, v: v + delta if i == ONSET else v)
    assert alarms == [ONSET]


@pytest.mark.parametrize("delta", [15.0, -15.0], ids=["up", "down"])
def test_level_shift_is_one_alarm_at_onset_then_the_new_normal(delta: float) -> None:
    scores, alarms, flagged = run(daily(), lambda i, v: v + delta if i >= ONSET else v)
    assert len(alarms) == 1 and ONSET <= alarms[0] <= ONSET + 5
    start = alarms[0]
    # A persistent condition: flagged for at least 30 samples, not re-alarmed, not forever.
    assert all(flagged[start : start + 30])
    assert not flagged[-1]
    assert max(scores[-500:]) < 0.5


def test_scores_are_in_unit_interval_whatever_the_range() -> None:
    rng = random.Random(3)
    streams = {
        "constant": [7.0] * 3000,
        "huge": [1e12 * (1 + 0.01 * rng.random()) for _ in range(3000)],
        "negative": [-5e-6 + 1e-7 * rng.gauss(0, 1) for _ in range(3000)],
        "ties": [float(rng.choice([0, 0, 0, 1, 2])) for _ in range(3000)],
        "walk": [],
    }
    x = 0.0
    for _ in range(3000):
        x += rng.gauss(0, 1)
        streams["walk"].append(x)
    for name, vs in streams.items():
        det = MetricAnomaly()
        for i, v in enumerate(vs):
            s = det.score_one({"t": i * 60.0, "value": v})
            s2, _ = det.process_one({"t": i * 60.0, "value": v})
            assert 0.0 <= s <= 1.0 and s == s2, (name, i, s, s2)
    det = MetricAnomaly()
    for i in range(3000):
        det.process_one({"t": i * 60.0, "value": 7.0})
    assert det.alarm is False and not det.flagged  # a flat line is not anomalous


def test_pickle_round_trip_scores_identically() -> None:
    xs = daily(days=6)
    det = MetricAnomaly()
    for t, v in xs[:1200]:
        det.process_one({"t": t, "value": v})
    blob = pickle.dumps(det)
    assert len(blob) < 8 * 1024
    twin = pickle.loads(blob)
    for i, (t, v) in enumerate(xs[1200:]):
        x = {"t": t, "value": v + (40.0 if i == 300 else 0.0)}
        assert det.process_one(x) == twin.process_one(x)
    assert det.n == twin.n and det.flagged == twin.flagged


def test_learn_one_matches_process_one() -> None:
    xs = daily(days=3)
    a, b = MetricAnomaly(), MetricAnomaly()
    for t, v in xs:
        x = {"t": t, "value": v}
        assert a.score_one(x) == b.process_one(x)[0]
        a.learn_one(x)
        assert a.alarm == b.alarm


def _crisp_day_then(bump: float, **kw: float) -> list[int]:
    """Ten days of a daily cycle (amplitude 20) with little noise (sd 1), then on day 10 six
    hours at ``bump`` above it: a day shaped a little differently (a make-up working day) or
    a real surge. Returns the alarms."""
    rng = random.Random(7)
    det = MetricAnomaly(**kw)
    alarms = []
    for i in range(11 * 288):
        t = i * STEP
        v = 50.0 + 20.0 * math.sin(2 * math.pi * t / DAY) + rng.gauss(0.0, 1.0)
        if 10 * 288 + 96 <= i < 10 * 288 + 168:
            v += bump
        if det.process_one({"t": t, "value": v})[1]:
            alarms.append(i)
    return alarms


def test_a_departure_smaller_than_the_daily_swing_is_no_finding_a_surge_is() -> None:
    # Statistically both are extremes of a crisp stream; only the surge matters to a supervisor.
    assert _crisp_day_then(8.0) == []
    assert _crisp_day_then(8.0, min_effect=0.0) != []  # the effect floor is what keeps it quiet
    surge = _crisp_day_then(30.0)
    assert len(surge) == 1 and 10 * 288 + 96 <= surge[0] < 10 * 288 + 102


def test_a_model_fed_only_some_days_waits_for_days_of_samples() -> None:
    # A rest-day model sees a Saturday, then nothing until a holiday five days later: it must not
    # trust a time-of-day profile learned from one day as if it had six days of history.
    det = MetricAnomaly()
    day = int(DAY / STEP)

    def feed(first_day: int, days: int = 1) -> None:
        for i in range(first_day * day, (first_day + days) * day):
            det.process_one({"t": i * STEP, "value": 50.0 + 20.0 * math.sin(2 * math.pi * i / day)})

    peak = 6 * day * STEP + DAY / 4  # 06:00 on day 6, the top of the cycle
    feed(0)
    feed(6, 0)
    assert abs(det.expected(peak) - 50.0) < 10.0  # one day of samples: the level, not the cycle
    feed(6, 3)
    assert abs(det.expected(peak + 3 * DAY) - 70.0) < 3.0  # days of samples: the cycle


def busy_hours(days: int = 14, seed: int = 0) -> list[tuple[float, float]]:
    """A latency-like stream: the level follows office hours (0.7 to 1.3 of its base) and the
    noise is multiplicative (lognormal, 8 %), so the busy hours' residuals are the largest."""
    rng = random.Random(f"busy:{seed}")
    base = rng.uniform(50.0, 1000.0)
    out = []
    for i in range(int(days * DAY / STEP)):
        h = (i * STEP % DAY) / 3600.0
        load = math.sin(math.pi * (h - 7.0) / 12.0) if 7.0 <= h <= 19.0 else 0.05
        out.append((i * STEP, base * (0.7 + 0.6 * load) * rng.lognormvariate(0.0, 0.08)))
    return out


def test_multiplicative_noise_of_busy_hours_is_no_finding_a_regression_is() -> None:
    # Confounder: 10 young streams (14 days) of level-proportional noise; the absolute
    # residuals alone raised 11 alarms on them, the relative view keeps them quiet.
    assert sum(len(run(busy_hours(seed=s))[1]) for s in range(10)) <= 1
    # Incident beside it: the same stream's latency x1.8 from day 8, 10:00, for good.
    onset = 8 * 288 + 120
    _, alarms, flagged = run(busy_hours(seed=3), lambda i, v: v * 1.8 if i >= onset else v)
    assert alarms and onset <= alarms[0] <= onset + 3 and alarms[0] == min(alarms)
    assert all(flagged[alarms[0] : alarms[0] + 30])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_deeper_second_dip_is_found_after_an_alarmed_first_one(seed: int) -> None:
    # A dip of 12 samples, alarmed, then five days later one 20 % deeper. The first dip's
    # samples count as one extreme (its peak), so the second is judged as a new record of
    # the stream, not as a tie of a dozen kept extremes (before, it was not found).
    first, second = 5 * 288 + 100, 10 * 288 + 100

    def change(i: int, v: float) -> float:
        if first <= i < first + 12:
            return v - 30.0
        if second <= i < second + 12:
            return v - 36.0
        return v

    _, alarms, _ = run(daily(seed=seed), change)
    assert any(first <= a < first + 12 for a in alarms)
    assert any(second <= a < second + 12 for a in alarms)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_dip_repeated_every_day_becomes_the_stream_s_normal(seed: int) -> None:
    # The confounder beside the deeper second dip: an alarmed excursion still enters the tails
    # (its peak at once, the rest after clear_for samples), so a dip that recurs every day from
    # day 5 is learned as routine and stops alarming within its first week. Keeping a flagged
    # condition's samples out of the tails altogether makes it alarm every day (measured).
    def routine(i: int, v: float) -> float:
        return v - 30.0 if i >= 5 * 288 and 100 <= i % 288 < 112 else v

    _, alarms, _ = run(daily(seed=seed), routine)
    assert alarms and min(alarms) >= 5 * 288
    assert not [a for a in alarms if a >= 12 * 288]


def _daily_job(seed: int, other: float = 0.0, **kw: float) -> tuple[list[int], set[int]]:
    """Twelve days of a flat noisy metric (10 +- 1) with a daily job at about 03:30 (+-15 min),
    one sample of +30 that grows by 0.6 a day (so each day's is a new record of the stream),
    and ``other`` added at 15:00 on day 10: (alarms, the job's samples)."""
    rng = random.Random(seed)
    days = 12
    job = {d * 288 + 42 + rng.randrange(-3, 4) for d in range(days)}
    det = MetricAnomaly(**kw)
    alarms = []
    for i in range(days * 288):
        v = 10.0 + rng.gauss(0.0, 1.0)
        if i in job:
            v += 30.0 + 0.6 * (i // 288)
        if i == 10 * 288 + 180:
            v += other
        if det.process_one({"t": i * STEP, "value": v})[1]:
            alarms.append(i)
    return alarms, job


def test_a_daily_job_is_routine_the_same_spike_at_another_hour_is_not() -> None:
    # Each day's job sample is a new record of the stream's history (NAB's EC2 CPU streams,
    # ec2_cpu_utilization_24ae8d and c6585a, have one at about 03:30): past its first two days
    # it went nearly as far within an hour of that time of day on each of the last two days,
    # so it is routine and raises nothing. Without the routine test it alarms again on later
    # days. A larger spike at an hour with no routine of its own is still a finding.
    late = []
    for seed in range(5):
        alarms, job = _daily_job(seed)
        assert not [a for a in alarms if a >= 2 * 288]
        alarms, job = _daily_job(seed, routine_days=0)
        late += [a for a in alarms if a >= 2 * 288 and a in job]
    assert late
    alarms, _ = _daily_job(0, other=55.0)
    assert alarms == [10 * 288 + 180]
