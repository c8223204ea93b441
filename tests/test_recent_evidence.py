"""RecentEvidence: an actor's per-event tail probabilities carried forward over its session."""

from __future__ import annotations

import doctest
import math
import pickle
import random

from suptech.detector.logic import recent_evidence
from suptech.detector.logic.access_scorer import AccessScorer
from suptech.detector.logic.recent_evidence import RecentEvidence

from tests.test_access_scorer import ALARM, normal_event, roc_auc, warmed


def test_docstring_example() -> None:
    assert doctest.testmod(recent_evidence).failed == 0


def test_scores_are_calibrated_probabilities_on_independent_events() -> None:
    """With uniform tail probabilities (an entity's routine), the session score stays in [0, 1]
    and is above 0.99 (0.999) for about 1 % (0.1 %) of events at most."""
    rng = random.Random(3)
    ev = RecentEvidence()
    scores = []
    for _ in range(100_000):
        x = {"log_tail": math.log(1.0 - rng.random())}
        s = ev.score_one(x)
        assert 0.0 <= s <= 1.0
        ev.learn_one(x)
        scores.append(s)
    assert sum(s > 0.99 for s in scores) / len(scores) < 0.011
    assert sum(s > 0.999 for s in scores) / len(scores) < 0.0011
    # The most extreme evidence still maps to a score, without overflow.
    assert ev.score_one({"log_tail": -1e6}) == 1.0


def test_pickle_round_trip_keeps_the_carried_evidence() -> None:
    ev = RecentEvidence()
    ev.learn_one({"log_tail": math.log(1e-9)})
    copy = pickle.loads(pickle.dumps(ev))
    x = {"log_tail": -0.3}
    assert copy.score_one(x) == ev.score_one(x) > 0.999


def session_stream(seed: int) -> tuple[list[float], list[float], list[bool]]:
    """One actor's accesses; now and then a session: one bulk export followed by three
    accesses of its ordinary size (the rest of the session). Point and session scores, labels."""
    rng = random.Random(seed)
    scorer = warmed(40.0, n=1000, seed=seed)
    ev = RecentEvidence()
    point, session, labels = [], [], []
    left = 0
    for i in range(6000):
        x = normal_event(rng, 40.0)
        bad = left > 0
        if bad:
            left -= 1
        elif i > 100 and rng.random() < 0.005:
            x["records"] *= 40.0
            x["bytes_out"] *= 40.0
            bad, left = True, 3
        lp = scorer.log_tail(x)
        point.append(-math.expm1(lp))
        session.append(ev.score_one({"log_tail": lp}))
        ev.learn_one({"log_tail": lp})
        labels.append(bad)
        # Like the engine: what the actor's own score flags is not learned.
        if point[-1] < ALARM:
            scorer.learn_one(x)
    return point, session, labels


def test_a_session_is_ranked_as_a_whole_better_than_chance_and_than_its_events() -> None:
    point, session, labels = session_stream(21)
    assert sum(labels) >= 40
    assert roc_auc(session, labels) > 0.95
    assert roc_auc(session, labels) > roc_auc(point, labels) + 0.1


def test_the_ordinary_access_after_a_bulk_export_stands_out_and_routine_stays_quiet() -> None:
    """What the session score fixes: the access right after a bulk export looks ordinary on its
    own (its point score says so) yet shares the export's suspicion; the same access twenty
    accesses later, and in routine, is quiet again."""
    scorer = warmed(40.0)
    ev = RecentEvidence()
    typical = {"records": 40.0, "bytes_out": 32_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    bulk = {**typical, "records": 4000.0, "bytes_out": 3.2e6}

    def session_score(x: dict[str, float]) -> tuple[float, float]:
        lp = scorer.log_tail(x)
        s = ev.score_one({"log_tail": lp})
        ev.learn_one({"log_tail": lp})
        return -math.expm1(lp), s

    assert session_score(typical)[1] < 0.9  # routine
    assert session_score(bulk)[1] > ALARM
    after_point, after_session = session_score(typical)
    assert after_point < 0.9 < 0.999 < after_session
    for _ in range(20):
        session_score(typical)
    assert session_score(typical)[1] < 0.9


def test_access_scorer_log_tail_is_the_log_of_the_score_s_tail() -> None:
    scorer = warmed(40.0)
    typical = {"records": 40.0, "bytes_out": 32_000.0, "bytes_in": 600.0, "duration_s": 1.0}
    bulk = {**typical, "records": 4e6, "bytes_out": 3.2e9}
    for x in (typical, bulk):
        assert -math.expm1(scorer.log_tail(x)) == scorer.score_one(x)
    assert AccessScorer().log_tail(typical) == 0.0
