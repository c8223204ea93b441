"""AccessScorer's positional API (the leakage family's, for every data access) gives exactly
the dict API's scores and state: the family's findings and per-event scores must not depend on
which one it calls."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from suptech.detector.logic.access_scorer import (
    BINARY_FEATURES,
    COUNT_FEATURES,
    AccessScorer,
)


def events(seed: int, n: int) -> list[dict[str, float]]:
    """Routine accesses with, now and then, an outbound bulk send to a new destination."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = float(int(rng.lognormvariate(1.5, 0.6)) + 1)
        odd = i % 97 == 96
        out.append(
            {
                "records": r * (500.0 if odd else 1.0),
                "bytes_out": r * rng.randint(300, 900),
                "bytes_in": float(rng.choice([0, 0, 512])),
                "duration_s": rng.choice([0.0, 0.25, 1.5]),
                "c1": float(rng.randint(0, 3)),
                "c2": float(rng.randint(0, 4)),
                "c3": 1.0 if odd else 0.0,
                "outbound": 1.0 if odd or rng.random() < 0.05 else 0.0,
                "new_destination": 1.0 if odd else 0.0,
            }
        )
    return out


def positional(x: dict[str, float]) -> tuple[tuple[float, ...], int]:
    logs = tuple(math.log1p(x[k]) if x[k] > 0.0 else 0.0 for k in COUNT_FEATURES)
    hits = sum(1 << i for i, k in enumerate(BINARY_FEATURES) if x[k] > 0.0)
    return logs, hits


@pytest.mark.parametrize(
    "settings",
    [{}, {"nu": 4.0}, {"features": ("records", "bytes_out", "outbound"), "binary": ("outbound",)}],
    ids=["defaults", "student-t", "other-features"],
)
def test_positional_calls_score_and_learn_as_the_dict_calls(settings: dict[str, object]) -> None:
    by_dict = AccessScorer(**settings)  # type: ignore[arg-type]
    two_steps = AccessScorer(**settings)  # type: ignore[arg-type]
    one_step = AccessScorer(**settings)  # type: ignore[arg-type]
    for i, x in enumerate(events(3, 1500)):
        if "features" in settings:
            x = {k: x[k] for k in settings["features"]}  # type: ignore[attr-defined]
            x.update(dict.fromkeys(set(COUNT_FEATURES + BINARY_FEATURES) - set(x), 0.0))
        logs, hits = positional(x)
        expected = by_dict.log_tail(x)
        baseline = by_dict.baseline("records")
        assert two_steps.log_tail_logs(logs, hits) == expected
        assert two_steps.baseline_count(0) == baseline
        assert one_step.log_tail_learn(logs, hits) == (expected, baseline)
        # The family does not learn what it flagged: the one-step scorer learnt it anyway, so
        # it goes on from a copy of one that did not.
        if i % 13 != 0:
            by_dict.learn_one(x)
            two_steps.learn_logs(logs, hits)
        else:
            one_step = pickle.loads(pickle.dumps(two_steps))
        state = pickle.dumps(by_dict.__getstate__())
        assert pickle.dumps(two_steps.__getstate__()) == state
        if i % 13 != 0:
            assert pickle.dumps(one_step.__getstate__()) == state
