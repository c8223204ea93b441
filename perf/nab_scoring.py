"""NAB (Numenta Anomaly Benchmark v1.1) scoring, reimplemented in plain Python.

    python -m perf.nab_scoring            # prove the scorer against NAB's published scores

The rules are those of NAB's ``nab/sweeper.py`` (the scorer behind the published v1.1 results):

- The probationary period is ``min(floor(0.15 * rows), 0.15 * 5000)`` rows, computed from the
  file's length; detections in it do not count and neither do windows that lie entirely in it.
- A window's first detection earns ``tpWeight * S(-(right - i + 1) / width) / S(-1)`` where
  ``S(x) = 2 / (1 + exp(5x)) - 1`` (the scaled sigmoid, ``-1`` beyond ``x >= 3``), ``width`` is
  the window's row count and ``right`` its last row: exactly ``tpWeight`` at the window's first
  row, falling towards 0 at its end. Later detections in the same window earn nothing.
- A detection outside every window costs ``fpWeight * S(|i - prev_right| / (prev_width - 1))``
  against the closest preceding window (a small loss just after it), ``-fpWeight`` if there is no
  preceding window.
- A window without a detection costs ``-fnWeight``.
- Normalised score = ``100 * (raw - null) / (perfect - null)`` over the same files, where the null
  detector detects nothing (``-fnWeight`` per window) and the perfect one detects every window at
  its first row (``+tpWeight`` per window). NAB applies this to the whole corpus; here it is also
  applied to a category's or a file's summed scores (undefined for a set without windows).

A detection is a row whose anomaly score is ``>= threshold`` (the threshold NAB optimised for the
detector, in ``config/thresholds.json``).

The dataset lives in ``../shared/datasets/nab`` beside the project (``NAB_ROOT`` overrides it);
it is read in place, never copied.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAB_ROOT = Path(os.environ.get("NAB_ROOT", REPO.parent / "shared" / "datasets" / "nab"))

PROBATION_PERCENT = 0.15
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

Profile = dict[str, float]  # tpWeight, fpWeight, fnWeight (NAB's CostMatrix)
Window = tuple[datetime, datetime]


def parse_ts(s: str) -> datetime:
    """NAB timestamp (``2014-04-10 07:15:00`` or with ``.000000``) as a naive datetime."""
    return datetime.fromisoformat(s.strip())


def scaled_sigmoid(x: float) -> float:
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5x) - 1``, clamped to ``-1`` for ``x >= 3``."""
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> float:
    """NAB's ``_getProbationaryLength``: rows ``i < this`` are probationary."""
    return min(math.floor(percent * n_rows), percent * 5000)


@dataclass
class FileScore:
    score: float
    tp: int  # detections (rows) inside windows, as NAB counts them
    fp: int  # detections outside windows
    tn: int
    fn: int
    windows: int  # windows with at least one scorable row (the null/perfect basis)
    detected: int  # windows with a detection

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _window_rows(
    timestamps: Sequence[datetime], windows: Iterable[Window]
) -> list[tuple[int, int]]:
    """(first row, last row) of each window, windows with no row dropped, in time order."""
    out = []
    for start, end in sorted(windows):
        lo = bisect_left(timestamps, start)
        hi = bisect_right(timestamps, end) - 1
        if hi >= lo:
            out.append((lo, hi))
    return out


def score_file_detail(
    timestamps: Sequence[datetime],
    detections: Sequence[bool],
    windows: Iterable[Window],
    profile: Profile,
    probation: float | None = None,
) -> FileScore:
    """Raw NAB score of one file and its counts. ``timestamps`` sorted ascending."""
    n = len(timestamps)
    if len(detections) != n:
        raise ValueError("timestamps and detections differ in length")
    tp_w, fp_w, fn_w = profile["tpWeight"], profile["fpWeight"], profile["fnWeight"]
    prob = probation_length(n) if probation is None else probation
    first_row = math.ceil(prob)  # first scorable row index
    rows = _window_rows(timestamps, windows)
    scorable = [(lo, hi) for lo, hi in rows if hi >= first_row]
    score = 0.0
    tp = fp = 0
    detected = 0
    in_window = sum(hi - max(lo, first_row) + 1 for lo, hi in scorable)
    # Walk rows window by window: the gap before window k, then window k.
    prev: tuple[int, int] | None = None
    # Windows wholly in probation still count as "preceding window" for FPs.
    k = 0
    i = first_row
    det = detections
    while i < n:
        nxt = rows[k] if k < len(rows) else None
        if nxt is not None and nxt[1] < i:  # window already over (probation)
            prev = nxt
            k += 1
            continue
        if nxt is not None and nxt[0] <= i:  # inside window nxt
            lo, hi = nxt
            width = float(hi - lo + 1)
            best = None
            for j in range(i, hi + 1):
                if det[j]:
                    tp += 1
                    if best is None:
                        best = tp_w * scaled_sigmoid(-(hi - j + 1) / width) / _MAX_TP
            if best is None:
                score -= fn_w
            else:
                score += best
                detected += 1
            prev = nxt
            k += 1
            i = hi + 1
            continue
        stop = nxt[0] if nxt is not None else n
        for j in range(i, stop):
            if det[j]:
                fp += 1
                if prev is None:
                    score -= fp_w
                else:
                    pw = prev[1] - prev[0] + 1
                    if pw <= 1:  # NAB divides by zero here; never happens in the corpus
                        score -= fp_w
                    else:
                        score += fp_w * scaled_sigmoid(abs(prev[1] - j) / float(pw - 1))
        i = stop
    n_scored = n - first_row if n > first_row else 0
    return FileScore(
        score=score,
        tp=tp,
        fp=fp,
        tn=n_scored - in_window - fp,
        fn=in_window - tp,
        windows=len(scorable),
        detected=detected,
    )


def score_file(
    timestamps: Sequence[datetime],
    detections: Sequence[bool],
    windows: Iterable[Window],
    profile: Profile,
) -> float:
    """Raw NAB score of one file (see the module docstring for the rules)."""
    return score_file_detail(timestamps, detections, windows, profile).score


def null_score(n_windows: int, profile: Profile) -> float:
    """Raw score of the detector that detects nothing."""
    return -profile["fnWeight"] * n_windows


def perfect_score(n_windows: int, profile: Profile) -> float:
    """Raw score of the detector that detects every window at its first row."""
    return profile["tpWeight"] * n_windows


def normalise(raw: float, n_windows: int, profile: Profile) -> float | None:
    """NAB's normalised score ``100 (raw - null) / (perfect - null)``; None without windows."""
    null = null_score(n_windows, profile)
    span = perfect_score(n_windows, profile) - null
    if span <= 0:
        return None
    return 100.0 * (raw - null) / span


# --- the corpus --------------------------------------------------------------------------------


def load_profiles(root: Path = NAB_ROOT) -> dict[str, Profile]:
    with open(root / "config" / "profiles.json") as f:
        raw = json.load(f)
    return {
        k: {w: float(v["CostMatrix"][w]) for w in ("tpWeight", "fpWeight", "fnWeight")}
        for k, v in raw.items()
    }


def load_windows(root: Path = NAB_ROOT) -> dict[str, list[Window]]:
    with open(root / "labels" / "combined_windows.json") as f:
        raw = json.load(f)
    return {k: [(parse_ts(a), parse_ts(b)) for a, b in v] for k, v in raw.items()}


def data_files(root: Path = NAB_ROOT) -> list[str]:
    """Relative paths (``category/file.csv``) of every series under ``data/``."""
    base = root / "data"
    return sorted(str(p.relative_to(base)) for p in base.glob("*/*.csv"))


def read_series(path: Path) -> tuple[list[datetime], list[float]]:
    ts: list[datetime] = []
    vs: list[float] = []
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        it, iv = header.index("timestamp"), header.index("value")
        for row in r:
            ts.append(parse_ts(row[it]))
            vs.append(float(row[iv]))
    return ts, vs


def read_scores_column(
    path: Path, column: str = "anomaly_score"
) -> tuple[list[datetime], list[float]]:
    ts: list[datetime] = []
    vs: list[float] = []
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        for row in r:
            ts.append(parse_ts(row["timestamp"]))
            vs.append(float(row[column]))
    return ts, vs


def read_published(path: Path) -> dict[str, dict[str, float]]:
    """A ``<detector>_<profile>_scores.csv``: file -> {Score, TP, FP, FN, TN, Total_Count}."""
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["File"] in ("", "Totals") or not row["File"].endswith(".csv"):
                continue
            out[row["File"]] = {
                k: float(row[k]) for k in ("Score", "TP", "TN", "FP", "FN", "Total_Count")
            }
    return out


def load_thresholds(root: Path = NAB_ROOT) -> dict[str, dict[str, float]]:
    with open(root / "config" / "thresholds.json") as f:
        raw = json.load(f)
    return {d: {p: float(v["threshold"]) for p, v in prof.items()} for d, prof in raw.items()}


def category(rel: str) -> str:
    return rel.split("/", 1)[0]


def summarise(
    per_file: dict[str, float], windows: dict[str, int], profile: Profile
) -> dict[str, dict[str, float | int | None]]:
    """Raw sum, window count and normalised score per category and ``overall``."""
    groups: dict[str, list[str]] = {}
    for rel in per_file:
        groups.setdefault(category(rel), []).append(rel)
    groups = dict(sorted(groups.items()))
    groups["overall"] = list(per_file)
    out: dict[str, dict[str, float | int | None]] = {}
    for name, files in groups.items():
        raw = sum(per_file[f] for f in files)
        nw = sum(windows[f] for f in files)
        out[name] = {
            "raw": raw,
            "windows": nw,
            "files": len(files),
            "score": normalise(raw, nw, profile),
        }
    return out


def reproduce_numenta(root: Path = NAB_ROOT, profile_name: str = "standard") -> dict[str, object]:
    """Score Numenta HTM's published per-row scores with its published threshold; compare with
    its published per-file scores. Returns per-file (ours, published) and the max |difference|."""
    profiles = load_profiles(root)
    prof = profiles[profile_name]
    thr = load_thresholds(root)["numenta"][profile_name]
    published = read_published(root / "results" / "numenta" / f"numenta_{profile_name}_scores.csv")
    windows = load_windows(root)
    rows: dict[str, dict[str, float]] = {}
    for rel in data_files(root):
        cat, name = rel.split("/", 1)
        res = root / "results" / "numenta" / cat / f"numenta_{name}"
        if not res.exists():
            continue
        ts, scores = read_scores_column(res)
        d = score_file_detail(ts, [s >= thr for s in scores], windows.get(rel, []), prof)
        pub = published.get(rel)
        rows[rel] = {
            "ours": d.score,
            "published": pub["Score"] if pub else float("nan"),
            "tp": d.tp,
            "fp": d.fp,
            "pub_tp": pub["TP"] if pub else float("nan"),
            "pub_fp": pub["FP"] if pub else float("nan"),
        }
    diffs = [abs(r["ours"] - r["published"]) for r in rows.values()]
    return {
        "threshold": thr,
        "files": rows,
        "missing": sorted(set(published) - set(rows)),
        "max_abs_diff": max(diffs) if diffs else float("nan"),
    }


def reproduce_null(root: Path = NAB_ROOT, profile_name: str = "standard") -> float:
    """Max |difference| between our empty-detection scores and NAB's published null scores."""
    prof = load_profiles(root)[profile_name]
    published = read_published(root / "results" / "null" / f"null_{profile_name}_scores.csv")
    windows = load_windows(root)
    worst = 0.0
    for rel, pub in published.items():
        p = root / "data" / rel
        if not p.exists():
            continue
        ts, _ = read_series(p)
        s = score_file(ts, [False] * len(ts), windows.get(rel, []), prof)
        worst = max(worst, abs(s - pub["Score"]))
    return worst


def published_table(
    detector: str, root: Path = NAB_ROOT, profile_name: str = "standard"
) -> dict[str, float]:
    """Published per-file standard scores of ``detector`` for the files present under ``data/``."""
    p = root / "results" / detector / f"{detector}_{profile_name}_scores.csv"
    present = set(data_files(root))
    return {k: v["Score"] for k, v in read_published(p).items() if k in present}


def main() -> int:
    if not (NAB_ROOT / "data").is_dir():
        print(f"NAB not found at {NAB_ROOT}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rep = reproduce_numenta()
    files: dict[str, dict[str, float]] = rep["files"]  # type: ignore[assignment]
    for rel, r in sorted(files.items(), key=lambda kv: -abs(kv[1]["ours"] - kv[1]["published"])):
        print(
            f"{rel:60s} ours {r['ours']:9.4f}  published {r['published']:9.4f}"
            f"  tp {r['tp']:.0f}/{r['pub_tp']:.0f} fp {r['fp']:.0f}/{r['pub_fp']:.0f}"
        )
    print(
        f"numenta standard: {len(files)} files, max |ours - published| = {rep['max_abs_diff']:.2e}"
    )
    if rep["missing"]:
        print(f"published but no per-row scores: {rep['missing']}")
    print(f"null standard: max |ours - published| = {reproduce_null():.2e}")
    prof = load_profiles()["standard"]
    windows = load_windows()
    nwin = {}
    for rel in data_files():
        ts, _ = read_series(NAB_ROOT / "data" / rel)
        nwin[rel] = len(_window_rows(ts, windows.get(rel, [])))
    for det in ("numenta", "ARTime", "null"):
        table = published_table(det)
        s = summarise(table, {k: nwin[k] for k in table}, prof)
        print(
            f"{det:8s} published standard, normalised: "
            + "  ".join(
                f"{k}={v['score']:.1f}" if v["score"] is not None else f"{k}=raw {v['raw']:.2f}"
                for k, v in s.items()
            )
        )
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
