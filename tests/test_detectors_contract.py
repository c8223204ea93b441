"""One suite over every detector class: river's estimator contract, the way river checks its own."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import pytest
from suptech.detector.logic.access_scorer import AccessScorer
from suptech.detector.logic.category_novelty import CategoryNovelty
from suptech.detector.logic.controllability_drift import ControllabilityDrift
from suptech.detector.logic.count_surge import CountSurge
from suptech.detector.logic.cusum import CusumDrift
from suptech.detector.logic.daily_drift import DailyDrift
from suptech.detector.logic.hst import ScaledHalfSpaceTrees
from suptech.detector.logic.log_volume import LogVolume
from suptech.detector.logic.metric_anomaly import MetricAnomaly
from suptech.detector.logic.recent_evidence import RecentEvidence
from suptech.detector.logic.records_ratio import RecordsPerQuery
from suptech.detector.logic.robust_zscore import RobustZScore
from suptech.detector.logic.seasonal import SeasonalBaseline
from suptech.detector.logic.slot_rate import SlotRate
from suptech.detector.logic.system_spread import SystemSpread
from suptech.detector.logic.version_regression import VersionRegression
from suptech.detector.logic.vuln_backlog import VulnBacklog

DAY_NS = 86_400 * 1_000_000_000

DETECTORS = [
    RobustZScore(alpha=0.05),
    SeasonalBaseline(rebaseline_after=50),
    CusumDrift(feature="value", h=5.0),
    ScaledHalfSpaceTrees(n_trees=10, height=8, window_size=100, seed=3),
    MetricAnomaly(),
    AccessScorer(),
    ControllabilityDrift(),
    VulnBacklog(),
    VersionRegression(persist=1),
    CountSurge(),
    LogVolume(),
    SlotRate(min_events=10),
    DailyDrift(reference_days=20),
    CategoryNovelty(warmup_ns=DAY_NS),
    SystemSpread(warmup_ns=DAY_NS, window_ns=DAY_NS),
    RecordsPerQuery(),
    RecentEvidence(),
]


def labelled_stream(kind: str, n: int = 1200, seed: int = 1) -> list[tuple[dict[str, Any], bool]]:
    """A time-ordered stream with anomalies the detector kind is meant to catch."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], bool]] = []
    for i in range(n):
        t = 1_780_000_000.0 + i * 900.0
        anomalous = i > 300 and rng.random() < 0.05
        if kind == "CusumDrift":
            # Drifts: runs of slightly raised values.
            anomalous = i > 300 and (i // 20) % 8 == 0
            v = 10.0 + rng.gauss(0, 1) + (2.5 if anomalous else 0.0)
            out.append(({"value": v}, anomalous))
            continue
        if kind == "AccessScorer":
            # One actor's accesses; anomalies are bulk exports of many more records and bytes.
            records = rng.randint(2, 12) * (60 if anomalous else 1)
            x: dict[str, Any] = {
                "records": records,
                "bytes_out": records * 480 + rng.randint(0, 200),
            }
            out.append((x, anomalous))
            continue
        if kind == "RecentEvidence":
            # Per-event log tail probabilities of one actor. Anomalies are the three accesses
            # that follow one far outside the habit and look ordinary on their own; the glaring
            # one is left unlabelled, so that it is learned (what carries it forward).
            lead = i > 300 and i % 40 == 0
            follows = i > 300 and 1 <= i % 40 <= 3
            lt = math.log(1e-7) if lead else math.log(max(rng.random(), 1e-12))
            out.append(({"log_tail": lt}, follows))
            continue
        if kind == "ControllabilityDrift":
            # An index that rarely moves a point; anomalies have slid well below what it held.
            jitter = rng.choice([-0.01, 0.01]) if rng.random() < 0.05 else 0.0
            v = 0.9 - 0.1 - 0.1 * rng.random() if anomalous else 0.9 + jitter
            out.append(({"t": t, "index": v}, anomalous))
            continue
        if kind == "VulnBacklog":
            # A system patching within days; anomalies are a pile of old ones.
            count = rng.randint(7, 12) if anomalous else rng.randint(0, 3)
            age = rng.randint(8, 20) if anomalous else rng.randint(0, 3)
            out.append(({"t": t, "count": count, "age_days": age}, anomalous))
            continue
        if kind == "VersionRegression":
            # A change every 50 reports; anomalies are errors x6 in the hours after some.
            anomalous = i > 300 and 1 <= i % 50 <= 10 and rng.random() < 0.5
            hour = (i // 4) % 24
            load = 1.0 + 0.3 * math.sin(2 * math.pi * hour / 24)
            xr: dict[str, Any] = {
                "slot": hour,
                "error": 0.002 * load * rng.lognormvariate(0, 0.2) * (6.0 if anomalous else 1.0),
                "latency": 80.0 * load * rng.lognormvariate(0, 0.07),
                "change": 1.0 if i % 50 == 0 else 0.0,
                "hold": 0.0,
            }
            out.append((xr, anomalous))
            continue
        if kind == "CountSurge":
            # Complaints of an app's users per report; anomalies are surges.
            lam = 12.0 if anomalous else 2.0
            k, p, limit = 0, rng.random(), math.exp(-lam)
            while p > limit:
                k, p = k + 1, p * rng.random()
            out.append(({"count": k, "exposure": 1000, "slot": i % 24}, anomalous))
            continue
        if kind == "LogVolume":
            # One actor's accesses (log1p scale); anomalies move 30 times the records.
            r = rng.lognormvariate(2.0, 0.5) * (30.0 if anomalous else 1.0)
            xl = {"records": math.log1p(r), "bytes": math.log1p(r * rng.uniform(400, 600))}
            out.append((xl, anomalous))
            continue
        if kind == "SlotRate":
            # One actor's accesses per hour (office hours busy, nights quiet); anomalies are
            # hours of scraping, eight times the usual count.
            hour = i % 24
            lam = 6.0 if 9 <= hour < 18 else 0.3
            k = _poisson(rng, lam * (8.0 if anomalous else 1.0))
            out.append(({"hour": 500_000 + i, "slot": hour, "events": k}, anomalous))
            continue
        if kind == "DailyDrift":
            # One actor's exports out of the institution per day; anomalies are busier days.
            k = _poisson(rng, 3.0 if anomalous else 0.4)
            out.append(({"count": k}, anomalous))
            continue
        if kind in ("CategoryNovelty", "SystemSpread"):
            # One actor's (channel, class) categories or systems; anomalies are ones never seen.
            key = "category" if kind == "CategoryNovelty" else "system"
            c = 10 + i if anomalous else rng.choice([0, 1, 2, 3])
            out.append(({"t": int(t * 1e9), key: c}, anomalous))
            continue
        if kind == "RecordsPerQuery":
            # A partner's queries, eight an hour; anomalies return ten times the records.
            r = int(rng.lognormvariate(1.3, 0.6) * (10.0 if anomalous else 1.0))
            out.append(({"hour": 500_000 + i // 8, "records": r}, anomalous))
            continue
        if kind == "ScaledHalfSpaceTrees":
            # Mass-based: anomalies sit in an empty region between two busy clusters (HST does
            # not extrapolate beyond the range its scaler has seen).
            c = 20.0 if rng.random() < 0.5 else 80.0
            v = 50.0 + rng.gauss(0, 2) if anomalous else c + rng.gauss(0, 3)
            out.append(({"value": v, "other": 5.0 + rng.gauss(0, 0.5)}, anomalous))
            continue
        base = 50.0 + 20.0 * math.sin(2 * math.pi * (i % 96) / 96)
        v = base + rng.gauss(0, 2) + (60.0 if anomalous else 0.0)
        x = {"value": v, "other": 5.0 + rng.gauss(0, 0.5)}
        if kind in ("SeasonalBaseline", "MetricAnomaly"):
            x["t"] = t
        out.append((x, anomalous))
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, rng.random(), math.exp(-lam)
    while p > limit:
        k, p = k + 1, p * rng.random()
    return k


def roc_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.fixture(params=DETECTORS, ids=lambda d: type(d).__name__)
def detector(request: pytest.FixtureRequest) -> Any:
    return request.param.clone()


def test_clone_is_fresh_with_same_settings(detector: Any) -> None:
    for x, _ in labelled_stream(type(detector).__name__, 100):
        detector.learn_one(x)
    fresh = detector.clone()
    assert fresh._get_params() == detector._get_params()
    x0 = labelled_stream(type(detector).__name__, 1)[0][0]
    assert fresh.score_one(x0) == type(detector)(**fresh._get_params()).score_one(x0)


def test_pickle_round_trip_scores_identically(detector: Any) -> None:
    stream = labelled_stream(type(detector).__name__, 400)
    for x, _ in stream[:300]:
        detector.learn_one(x)
    copy = pickle.loads(pickle.dumps(detector))
    for x, _ in stream[300:]:
        assert copy.score_one(x) == detector.score_one(x)
        copy.learn_one(x)
        detector.learn_one(x)


def test_scores_before_learning_do_not_raise(detector: Any) -> None:
    x = labelled_stream(type(detector).__name__, 1)[0][0]
    assert math.isfinite(detector.score_one(x))
    assert detector.learn_one(x) is None


def test_better_than_chance_in_stream_order(detector: Any) -> None:
    scores, labels = [], []
    for i, (x, y) in enumerate(labelled_stream(type(detector).__name__)):
        if i > 300:
            scores.append(detector.score_one(x))
            labels.append(y)
        # Like the engine: flagged points are not learned (HST would absorb them otherwise).
        if not y:
            detector.learn_one(x)
    assert roc_auc(scores, labels) > 0.7


# Detectors whose score is a calibrated probability (what scores.v1 publishes).
CALIBRATED = ("MetricAnomaly", "AccessScorer", "CountSurge", "RecentEvidence")


def test_calibrated_scores_stay_within_0_and_1(detector: Any) -> None:
    name = type(detector).__name__
    if name not in CALIBRATED:
        pytest.skip(f"{name} scores are not probabilities")
    for x, _ in labelled_stream(name, 600):
        assert 0.0 <= detector.score_one(x) <= 1.0
        detector.learn_one(x)


def test_seasonal_baseline_rebaselines_after_a_stable_shift() -> None:
    det = SeasonalBaseline(rebaseline_after=10, threshold=5.0)
    rng = random.Random(2)
    t = 1_780_000_000.0
    for i in range(24 * 7 * 4):
        det.learn_one({"t": t + i * 900.0, "lat": 100.0 + rng.gauss(0, 2)})
    start = 24 * 7 * 4
    shifted = [{"t": t + (start + i) * 900.0, "lat": 170.0 + rng.gauss(0, 2)} for i in range(40)]
    assert det.score_one(shifted[0]) > 5.0
    for x in shifted:
        det.learn_one(x)
    assert det.rebaselines >= 1
    assert det.score_one({"t": t + (start + 41) * 900.0, "lat": 170.0}) < 5.0


def test_seasonal_score_learn_one_is_score_then_learn() -> None:
    """The health baseline's one-pass score-and-learn (every posture report takes it) scores and
    learns exactly as scoring and then learning do, through warm-up, features that come and go,
    shifted runs and a re-baseline."""
    rng = random.Random(5)
    fused, apart = SeasonalBaseline(rebaseline_after=8), SeasonalBaseline(rebaseline_after=8)
    t = 1_780_000_000.0
    for i in range(24 * 7 * 3):
        x = {"t": t + i * 1800.0, "lat": 100.0 + rng.gauss(0, 3)}
        if i % 5:
            x["err"] = 1.0 + rng.random()
        if i > 24 * 7 * 2:
            x["lat"] += 80.0  # a lasting shift: a run of unlearned reports, then a re-baseline
        if i > 24 * 7 * 2 + 3:
            x["inc"] = float(rng.random() < 0.1)  # a feature first seen in the shifted run
        z = fused.score_learn_one(x)
        assert z == apart._residuals(x)[1]
        apart.learn_one(x)
    assert fused.rebaselines == apart.rebaselines >= 1
    assert pickle.dumps(fused) == pickle.dumps(apart)
