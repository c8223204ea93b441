"""Our NAB scorer reproduces NAB's published per-file scores (numenta HTM and null, standard)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from perf import nab_scoring as nab

pytestmark = pytest.mark.skipif(
    not (nab.NAB_ROOT / "data").is_dir(),
    reason=f"NAB dataset not found at {nab.NAB_ROOT} (../shared/datasets/nab beside the project)",
)

STANDARD = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}


def test_reproduces_published_numenta_scores_for_every_file() -> None:
    rep = nab.reproduce_numenta()
    files = rep["files"]
    published = nab.read_published(nab.NAB_ROOT / "results/numenta/numenta_standard_scores.csv")
    assert not rep["missing"], rep["missing"]
    assert set(files) == set(published)
    for rel, r in files.items():
        assert abs(r["ours"] - r["published"]) < 1e-6, (rel, r)
        assert (r["tp"], r["fp"]) == (r["pub_tp"], r["pub_fp"]), (rel, r)
    assert rep["max_abs_diff"] < 1e-6


def test_reproduces_published_null_scores() -> None:
    assert nab.reproduce_null() < 1e-9


def test_probation_rule_follows_nab() -> None:
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(15831) == 750
    assert nab.probation_length(1243) == 186


def test_rewards_and_normalisation() -> None:
    t0 = datetime(2020, 1, 1)
    ts = [t0 + timedelta(minutes=5 * i) for i in range(2000)]
    win = [(ts[1000], ts[1099])]
    none = [False] * 2000
    assert nab.score_file(ts, none, win, STANDARD) == -1.0
    first = list(none)
    first[1000] = True
    assert nab.score_file(ts, first, win, STANDARD) == pytest.approx(1.0)
    late = list(none)
    late[1099] = True
    assert 0.0 < nab.score_file(ts, late, win, STANDARD) < 0.03  # last row: S(-1/100)
    fp = list(none)
    fp[500] = True  # no preceding window: full FP cost
    assert nab.score_file(ts, fp, win, STANDARD) == pytest.approx(-1.11)
    probationary = list(none)
    probationary[10] = True  # inside the first 15 %: ignored
    assert nab.score_file(ts, probationary, win, STANDARD) == -1.0
    assert nab.normalise(1.0, 1, STANDARD) == 100.0
    assert nab.normalise(-1.0, 1, STANDARD) == 0.0
    assert nab.normalise(0.0, 0, STANDARD) is None
    assert math.isclose(nab.scaled_sigmoid(0.0), 0.0, abs_tol=1e-12)
