"""Per-event scores on ODDS SMTP (KDD Cup 99) in capture order, as one actor's data accesses.

    python -m perf.odds_smtp [--data ../shared/datasets/odds/smtp.mat] [--quick]

The file's ``X`` holds ``log(v + 0.1)`` of duration, src_bytes and dst_bytes (``log(0.1)`` is its
minimum and ``exp(X) - 0.1`` gives integers to 1e-9); they are mapped back to raw
``duration_s``, ``bytes_out`` (src_bytes: bytes the source sent) and ``bytes_in`` (dst_bytes).
The stream is never shuffled: event ``i`` is scored, then learned, before event ``i + 1``.

Compared in the same run with the same score-then-learn protocol:

- ``AccessScorer()`` (suptech.detector.logic.access_scorer), defaults, raw features;
- the same with its tail probability carried forward by ``RecentEvidence()``
  (suptech.detector.logic.recent_evidence), as the engine publishes it;
- the whole engine, ``DetectionEngine()`` with its defaults, fed each event as a
  ``DataAccessEvent`` of one actor (its per-event ``leak.access`` score);
- river ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)`` (river defaults:
  10 trees, height 8, window 250) on the file's log features;
- river ``preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.2)`` on the file's log
  features, scored as river returns it (higher is more anomalous).

Reports ROC-AUC and average precision of the per-event scores, the AUC on the first and second
half of the stream, µs per event (score plus learn, one core of a shared 2-core machine), and for
``AccessScorer`` the share of normal events and of attacks above fixed score thresholds. Writes
perf/results/odds_smtp.json.

Any per-event scorer plugs in through :func:`evaluate`: a callable taking the raw features of one
event and returning its score (and learning it, if it learns), e.g. the full engine fed each
event as a DataAccessEvent of one actor.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.io import loadmat
from suptech.detector.logic.access_scorer import AccessScorer
from suptech.detector.logic.recent_evidence import RecentEvidence

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "odds" / "smtp.mat"
RESULTS = REPO / "perf" / "results" / "odds_smtp.json"
# Columns of X, in the file's order, and the DataAccessEvent features they map to.
COLUMNS = ("duration_s", "bytes_out", "bytes_in")
THRESHOLDS = (0.9, 0.99, 0.998, 0.999, 0.9999, 0.99999, 0.999999)

Features = dict[str, float]
Step = Callable[[Features], float]


def load(path: Path = DATA) -> tuple[list[Features], np.ndarray]:
    """Events as raw features in file order, and the labels (1 = attack)."""
    mat = loadmat(str(path))
    x = np.asarray(mat["X"], dtype=float)
    y = np.asarray(mat["y"]).ravel().astype(int)
    raw = np.exp(x) - 0.1
    err = float(np.abs(raw - np.round(raw)).max())
    if err > 1e-6:
        raise ValueError(f"X is not log(v + 0.1) of integer counts (max error {err})")
    raw = np.round(raw)
    events = [dict(zip(COLUMNS, row, strict=True)) for row in raw.tolist()]
    return events, y


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Mann-Whitney ROC-AUC; ties count one half."""
    s = np.asarray(scores, dtype=float)
    pos = np.asarray(labels) == 1
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Average rank of each run of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    n_pos = int(pos.sum())
    n_neg = len(s) - n_pos
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision as scikit-learn defines it: sum over thresholds of precision times the
    recall gained, tied scores forming one threshold."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels) == 1
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall_gain = np.diff(np.r_[0, tp]) / y.sum()
    return float((precision * recall_gain).sum())


def evaluate(step: Step, events: Sequence[Features], labels: np.ndarray) -> dict[str, Any]:
    """Run ``step`` over ``events`` in order; metrics of the scores it returns."""
    scores = np.empty(len(events))
    t0 = time.perf_counter()
    for i, x in enumerate(events):
        scores[i] = step(x)
    elapsed = time.perf_counter() - t0
    half = len(events) // 2
    return {
        "roc_auc": roc_auc(scores, labels),
        "average_precision": average_precision(scores, labels),
        "roc_auc_first_half": roc_auc(scores[:half], labels[:half]),
        "roc_auc_second_half": roc_auc(scores[half:], labels[half:]),
        "us_per_event": elapsed / len(events) * 1e6,
        "scores": scores,
    }


def access_scorer_step() -> Step:
    scorer = AccessScorer()

    def step(x: Features) -> float:
        s = scorer.score_one(x)
        scorer.learn_one(x)
        return s

    return step


def session_step() -> Step:
    """AccessScorer's tail probability carried forward by RecentEvidence (the engine's score)."""
    scorer = AccessScorer()
    session = RecentEvidence()

    def step(x: Features) -> float:
        ev = {"log_tail": scorer.log_tail(x)}
        scorer.learn_one(x)
        s = session.score_one(ev)
        session.learn_one(ev)
        return s

    return step


def engine_step() -> Step:
    """The whole DetectionEngine (defaults), each event a DataAccessEvent of one actor sent
    out by mail (a transfer to one external destination), 10 s apart; the score is the engine's
    per-event ``leak.access`` score, as published on scores.v1."""
    from suptech.detector.logic import DetectionEngine
    from suptech.v1 import telemetry_pb2 as T

    engine = DetectionEngine()
    n = [0]
    t0 = 1_780_000_000 * 1_000_000_000

    def step(x: Features) -> float:
        i = n[0] = n[0] + 1
        env = T.TelemetryEnvelope(event_id=f"smtp-{i:08d}", institution_id="odds-smtp")
        env.event_time.FromNanoseconds(t0 + i * 10_000_000_000)
        da = env.data_access
        da.system_id = "mail-gateway"
        da.actor_pseudonym = "a" * 64
        da.channel = T.CHANNEL_API
        da.operation = T.OPERATION_TRANSFER
        da.destination_kind = T.DESTINATION_KIND_EXTERNAL
        da.destination_pseudonym = "d" * 64
        da.bytes_out = int(x["bytes_out"])
        da.bytes_in = int(x["bytes_in"])
        da.duration_ms = int(x["duration_s"] * 1000)
        engine.process(env)
        [score] = [s.score for s in engine.take_scores() if s.model_id == "leak.access"]
        return score

    return step


def river_step(model: Any) -> Step:
    """River pipeline on the file's own features, log(v + 0.1)."""
    log = math.log

    def step(x: Features) -> float:
        fx = {k: log(v + 0.1) for k, v in x.items()}
        s = float(model.score_one(fx))
        model.learn_one(fx)
        return s

    return step


def detectors() -> dict[str, Callable[[], Step]]:
    from river import anomaly, preprocessing

    return {
        "AccessScorer()": access_scorer_step,
        "AccessScorer() then RecentEvidence()": session_step,
        "DetectionEngine() leak.access": engine_step,
        "MinMaxScaler | HalfSpaceTrees(seed=7)": lambda: river_step(
            preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)
        ),
        "StandardScaler | OneClassSVM(nu=0.2)": lambda: river_step(
            preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.2)
        ),
    }


def threshold_rates(scores: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    neg = scores[labels == 0]
    pos = scores[labels == 1]
    return {
        str(t): {
            "false_alarm_rate": float((neg > t).mean()),
            "attacks_above": int((pos > t).sum()),
        }
        for t in THRESHOLDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--quick", action="store_true", help="ours only, no river models, no results file"
    )
    args = parser.parse_args(argv)
    events, labels = load(args.data)
    print(f"{len(events)} events, {int(labels.sum())} attacks, file order")
    results: dict[str, Any] = {}
    for name, make in detectors().items():
        if args.quick and name.startswith(("MinMax", "Standard")):
            continue
        r = evaluate(make(), events, labels)
        scores = r.pop("scores")
        if name == "AccessScorer()":
            r["thresholds"] = threshold_rates(scores, labels)
        results[name] = r
    print(f"{'detector':40} {'ROC-AUC':>8} {'AP':>7} {'AUC 1st':>8} {'AUC 2nd':>8} {'µs/event':>9}")
    for name, r in results.items():
        print(
            f"{name:40} {r['roc_auc']:8.4f} {r['average_precision']:7.4f} "
            f"{r['roc_auc_first_half']:8.4f} {r['roc_auc_second_half']:8.4f} "
            f"{r['us_per_event']:9.1f}"
        )
    print("AccessScorer() above threshold: normal events (false alarms) and attacks")
    for t, v in results["AccessScorer()"]["thresholds"].items():
        print(f"  > {t:8}  false alarms {v['false_alarm_rate']:.4%}  attacks {v['attacks_above']}")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "dataset": "ODDS smtp.mat (KDD Cup 99 SMTP), file order, score then learn",
                    "events": len(events),
                    "attacks": int(labels.sum()),
                    "half": len(events) // 2,
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
