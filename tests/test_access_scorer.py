"""AccessScorer: the per-actor, per-event multivariate score of data accesses."""

from __future__ import annotations

import doctest
import math
import pickle
import random
from typing import Any

import pytest
from suptech.detector.logic import access_scorer
from suptech.detector.logic.access_scorer import FEATURES, AccessScorer

ALARM = 0.999


def normal_event(rng: random.Random, scale: float, spread: float = 0.5) -> dict[str, float]:
    """One routine access of an actor whose typical volume is ``scale`` records."""
    r = rng.lognormvariate(math.log(scale), spread)
    return {
        "records": r,
        "bytes_out": r * rng.lognormvariate(math.log(800.0), 0.2),
        "bytes_in": rng.lognormvariate(math.log(600.0), 0.2),
        "duration_s": rng.lognormvariate(0.0, 0.5),
        "c1": r if rng.random() < 0.3 else 0.0,
        "outbound": 1.0 if rng.random() < 0.05 else 0.0,
    }


def warmed(scale: float, n: int = 1500, seed: int = 1, spread: float = 0.5) -> AccessScorer:
    rng = random.Random(seed)
    scorer = AccessScorer()
    for _ in range(n):
        scorer.learn_one(normal_event(rng, scale, spread))
    return scorer


def roc_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def test_docstring_example() -> None:
    assert doctest.testmod(access_scorer).failed == 0


def test_scores_are_probabilities_from_the_first_event() -> None:
    scorer = AccessScorer()
    odd: list[dict[str, Any]] = [
        {},
        {"records": 0.0},
        {"records": 1e15, "bytes_out": 1e18, "c3": 10_000, "new_destination": True},
        {"records": -5.0, "unknown": 3.0},
        {k: 1.0 for k in FEATURES},
    ]
    assert scorer.score_one(odd[0]) == 0.0
    rng = random.Random(4)
    for i in range(400):
        x = odd[i % len(odd)] if i % 7 == 0 else normal_event(rng, 30.0)
        s = scorer.score_one(x)
        assert 0.0 <= s <= 1.0 and math.isfinite(s)
        assert scorer.learn_one(x) is None
        assert math.isfinite(scorer.surprise(x))
    assert scorer.n == 400


def test_pickle_round_trip_scores_identically() -> None:
    scorer = warmed(40.0, n=600)
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy._get_params() == scorer._get_params()
    rng = random.Random(9)
    for i in range(300):
        x = normal_event(rng, 40.0)
        if i % 50 == 0:
            x["records"] *= 100.0
        assert copy.score_one(x) == scorer.score_one(x)
        copy.learn_one(x)
        scorer.learn_one(x)
    assert copy.n == scorer.n


def test_clone_is_fresh_with_the_same_settings() -> None:
    scorer = AccessScorer(modes=2, alpha=0.02)
    scorer.learn_one({"records": 3.0})
    fresh = scorer.clone()
    assert fresh._get_params() == scorer._get_params()
    assert fresh.n == 0 and fresh.score_one({"records": 3.0}) == 0.0


def test_state_is_compact() -> None:
    scorer = warmed(40.0, n=200)
    size = scorer.__sizeof__() + scorer._st.__sizeof__()
    assert size < 1024
    assert not hasattr(scorer, "__dict__") or not scorer.__dict__


def test_calibration_is_the_same_for_actors_of_very_different_scale() -> None:
    """A tiny actor and a bulk-processing one (10,000 times the volume, twice the spread) get the
    same score distribution on their own normal traffic."""
    dists = []
    for scale, spread, seed in [(3.0, 0.4, 2), (30_000.0, 0.8, 3)]:
        rng = random.Random(seed)
        scorer = AccessScorer()
        scores = []
        for i in range(6000):
            x = normal_event(rng, scale, spread)
            s = scorer.score_one(x)
            scorer.learn_one(x)
            if i >= 1000:
                scores.append(s)
        dists.append(scores)
    for q, tol in [(0.5, 0.05), (0.9, 0.03), (0.99, 0.005)]:
        a, b = (quantile(d, q) for d in dists)
        assert abs(a - b) < tol, (q, a, b)
        assert abs(a - q) < tol, (q, a)
    for d in dists:
        share = sum(s > 0.99 for s in d) / len(d)
        assert 0.004 < share < 0.02
        assert sum(s > ALARM for s in d) / len(d) < 0.003


def test_catches_a_bulk_export_and_stays_quiet_on_normal_variation() -> None:
    scorer = warmed(40.0)
    rng = random.Random(5)
    # Normal variation: the actor's own traffic, including its busier days (twice the records).
    quiet = []
    for i in range(2000):
        x = normal_event(rng, 80.0 if i % 10 == 0 else 40.0)
        quiet.append(scorer.score_one(x))
        scorer.learn_one(x)
    assert sum(s >= ALARM for s in quiet) / len(quiet) < 0.003
    typical = {"records": 40.0, "bytes_out": 32_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    assert scorer.score_one(typical) < 0.9
    bulk = {**typical, "records": 40.0 * 50, "bytes_out": 32_000.0 * 50}
    assert scorer.score_one(bulk) > 0.99999
    assert scorer.score_one({**typical, "records": 80.0, "bytes_out": 64_000.0}) < ALARM
    contrib = scorer.contributions(bulk)
    assert set(sorted(contrib, key=lambda k: -contrib[k])[:2]) == {"records", "bytes_out"}
    assert 20.0 < scorer.baseline("records") < 80.0


def test_first_touch_of_authentication_data_and_a_new_destination_stand_out() -> None:
    scorer = warmed(40.0)
    typical = {"records": 40.0, "bytes_out": 32_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    assert scorer.score_one({**typical, "c3": 40.0}) > ALARM
    # Outbound (5 % of this actor's events) to a destination it never used.
    new = {**typical, "outbound": 1.0, "new_destination": 1.0}
    assert scorer.score_one(typical) < scorer.score_one({**typical, "outbound": 1.0}) < 0.99
    assert scorer.score_one(new) > 0.95
    assert scorer.score_one({**new, "records": 400.0, "bytes_out": 320_000.0}) > ALARM


def test_a_learned_outlier_does_not_move_the_habit() -> None:
    """An outlier that is learned starts a light mode of its own: the main habit, and the score
    of normal events, stay as they were. A repeat of it is no longer an alarm (the light mode
    explains it at the cost of its rarity), which is why the engine does not learn what it
    flagged."""
    scorer = warmed(40.0)
    typical = {"records": 40.0, "bytes_out": 32_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    bulk = {**typical, "records": 4000.0, "bytes_out": 3.2e6}
    before = (scorer.baseline("records"), scorer.score_one(typical))
    scorer.learn_one(bulk)
    assert (scorer.baseline("records"), scorer.score_one(typical)) == pytest.approx(before, 0.05)
    assert scorer.score_one(bulk) > 0.9


def test_a_new_actor_needs_more_evidence() -> None:
    young = AccessScorer()
    rng = random.Random(6)
    for _ in range(10):
        young.learn_one(normal_event(rng, 40.0))
    old = warmed(40.0)
    x = {"records": 400.0, "bytes_out": 320_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    assert young.score_one(x) < old.score_one(x)


@pytest.mark.parametrize("seed", [11, 12])
def test_better_than_chance_on_a_labelled_stream(seed: int) -> None:
    rng = random.Random(seed)
    scorer = AccessScorer()
    scores, labels = [], []
    for i in range(3000):
        x = normal_event(rng, 25.0)
        bad = i > 500 and rng.random() < 0.01
        if bad:
            kind = rng.randrange(4)
            if kind == 0:  # bulk export
                x["records"] *= 30.0
                x["bytes_out"] *= 30.0
            elif kind == 1:  # authentication data sent out
                x["c3"] = x["records"]
                x["outbound"] = 1.0
            elif kind == 2:  # much more data out than the records explain
                x["bytes_out"] *= 40.0
            else:  # a long session pulling data in
                x["duration_s"] *= 200.0
                x["bytes_in"] *= 50.0
        s = scorer.score_one(x)
        if i > 500:
            scores.append(s)
            labels.append(bad)
        # Like the engine: flagged events are not learned once the actor is warmed up.
        if s < ALARM or scorer.n < scorer.warmup:
            scorer.learn_one(x)
    assert sum(labels) >= 10
    assert roc_auc(scores, labels) > 0.95


def test_the_most_glaring_exports_keep_their_order_below_a_score_of_one() -> None:
    """Beyond ``trusted_tail`` the tail falls as a power law, not exponentially: exports of
    100, 10,000 and a million times the usual records stay ranked (their scores would all round
    to 1.0 otherwise), and every score up to ``1 - trusted_tail`` is what the exponential tail
    gives."""
    rng = random.Random(8)
    scorer, exponential = AccessScorer(), AccessScorer(trusted_tail=1e-300)
    for _ in range(1500):
        x = normal_event(rng, 40.0)
        for s in (scorer, exponential):
            s.learn_one(x)
    typical = {"records": 40.0, "bytes_out": 32_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    glaring = [{**typical, "records": 40.0 * k, "bytes_out": 32_000.0 * k} for k in (1e2, 1e4, 1e6)]
    scores = [scorer.score_one(x) for x in glaring]
    assert ALARM < scores[0] < scores[1] < scores[2] < 1.0
    assert exponential.score_one(glaring[1]) == exponential.score_one(glaring[2]) == 1.0
    for _ in range(500):
        x = normal_event(rng, 40.0)
        x["records"] *= rng.choice([1.0, 3.0, 10.0])
        if exponential.score_one(x) < 1.0 - scorer.trusted_tail:
            assert scorer.score_one(x) == exponential.score_one(x)


def test_a_scorer_pickled_before_trusted_tail_restores_with_it() -> None:
    scorer = warmed(40.0, n=300)
    state = scorer.__getstate__()
    del state["trusted_tail"]
    old = AccessScorer.__new__(AccessScorer)
    old.__setstate__(state)
    x = {"records": 4e6, "bytes_out": 3.2e9}
    assert old.trusted_tail == 1e-8 and old.score_one(x) == scorer.score_one(x) < 1.0
