"""Detection quality on the field study: incidents the detectors were not built around, among
benign routines that look like them.

    python -m perf.field_quality [--quick] [--seeds 41,42,43] [--days 14]

Each scenario (14 simulated days from Monday 2026-09-21, so it holds a make-up working day, a
month and quarter end and the National Day holiday) carries every field-study incident kind
registered in ``simulators.incidents.KINDS`` by a field module (``simulators.field_autonomy``,
and ``simulators.field_leakage``'s data-leakage kinds when present: kinds are selected by their
planner's module, grouped by family) and every confounder of ``simulators.confounders``. It is
replayed in arrival order through a fresh DetectionEngine; findings are matched to the ground
truth per family as in ``perf.detection_quality`` (a metric stream's finding belongs to its
system); a clear (``PHASE_CLEAR``) is neither true nor false. Reported per family: precision,
recall, F1, false alarms per institution-day (every finding matching no incident, including those
the engine graded down inside a declared window; those are also counted apart), benign alerts
(false findings that fall on a confounder), false findings by detector, and per kind the
incidents detected and missed; then the same families judged without the detectors named by
``--without`` (default ``metric.anomaly``, the metric streams' model, which another module
owns), apart, so each module's share is visible. Writes perf/results/field_quality.json.

The seeds reported (41, 42, 43) were not used while tuning the detectors: 31 to 34 were (the
quick run is seed 31 over 11 days, for iteration, and is not a result).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from suptech.detector.logic import DetectionEngine
from suptech.v1 import findings_pb2

from perf.quality import FAMILIES, field_kinds, matches
from simulators.scenario import generate

START = "2026-09-21T00:00:00+08:00"
TUNING_SEEDS = (31, 32, 33, 34)
REPORT_SEEDS = (41, 42, 43)
RESULTS = Path(__file__).parent / "results" / "field_quality.json"


def evaluate(seed: int, days: int, kinds: list[str], without: frozenset[str]) -> dict[str, Any]:
    """Replay one scenario; judge its findings, and again without the ``without`` detectors."""
    sc = generate(seed=seed, days=days, incidents=kinds, start=START, confounders="all")
    envs = [env for _, env in sc.timed_envelopes()]
    engine = DetectionEngine()
    for test in sc.registry:
        engine.upsert_sandbox_test(test)
    findings: list[findings_pb2.Finding] = []
    began = time.perf_counter()
    for env in envs:
        findings.extend(engine.process(env))
    findings.extend(engine.advance(max(e.event_time.ToNanoseconds() for e in envs)))
    elapsed = time.perf_counter() - began
    findings = [f for f in findings if f.phase != findings_pb2.PHASE_CLEAR]
    out: dict[str, Any] = {"seed": seed, "events": len(envs), "events_per_s": len(envs) / elapsed}
    out.update(judge(sc, findings, days))
    if without:
        kept = [f for f in findings if (f.rule_id or f.model_id) not in without]
        out["without"] = judge(sc, kept, days)
    return out


def judge(sc: Any, findings: list[findings_pb2.Finding], days: int) -> dict[str, Any]:
    """Per family: incidents detected, true and false findings; per kind; benign alerts."""
    app_of_test = {t.test_id: t.app_id for t in sc.registry}
    truths = [g for g in sc.ground_truth if not g.benign]
    benign = [g for g in sc.ground_truth if g.benign]
    n_inst = len(sc.fleet.institutions)
    out: dict[str, Any] = {"kinds": {}, "benign_by_kind": {}, "false_findings": []}
    for g in truths:
        out["kinds"].setdefault(g.kind, {"family": g.family, "incidents": 0, "detected": 0})
        out["kinds"][g.kind]["incidents"] += 1
    for fam in FAMILIES.values():
        fs = [f for f in findings if FAMILIES[f.family] == fam]
        gs = [g for g in truths if g.family == fam]
        first: dict[str, int] = {}
        tp = declared = benign_hits = 0
        false_by: dict[str, int] = {}
        for f in fs:
            t_us = f.event_time.ToMicroseconds()
            hit = [g for g in gs if matches(f, g, t_us, app_of_test)]
            for g in hit:
                first[g.incident_id] = min(first.get(g.incident_id, t_us), t_us)
            if hit:
                tp += 1
                continue
            det = f.rule_id or f.model_id
            false_by[det] = false_by.get(det, 0) + 1
            declared += bool(f.declared_window_id)
            on = sorted({g.kind for g in benign if matches(f, g, t_us, app_of_test)})
            if on:
                benign_hits += 1
                for kind in on:
                    out["benign_by_kind"][kind] = out["benign_by_kind"].get(kind, 0) + 1
            out["false_findings"].append(
                {"detector": det, "entity": f.entity_id, "on": on, "summary": f.summary[:160]}
            )
        for g in gs:
            if g.incident_id in first:
                out["kinds"][g.kind]["detected"] += 1
                out["kinds"][g.kind].setdefault("delays_s", []).append(
                    (first[g.incident_id] - g.start_us) / 1e6
                )
        out[fam] = {
            "incidents": len(gs),
            "detected": len(first),
            "findings": len(fs),
            "true_findings": tp,
            "declared_window_findings": declared,
            "benign_alerts": benign_hits,
            "false_by_detector": false_by,
            "false_alarms_per_institution_day": (len(fs) - tp) / n_inst / days,
            "missed": sorted(g.kind for g in gs if g.incident_id not in first),
        }
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fam in FAMILIES.values():
        rs = [r[fam] for r in runs]
        inc = sum(r["incidents"] for r in rs)
        det = sum(r["detected"] for r in rs)
        nf = sum(r["findings"] for r in rs)
        tp = sum(r["true_findings"] for r in rs)
        recall = det / inc if inc else 1.0
        precision = tp / nf if nf else 1.0
        false_by: dict[str, int] = {}
        for r in rs:
            for det_id, n in r["false_by_detector"].items():
                false_by[det_id] = false_by.get(det_id, 0) + n
        out[fam] = {
            "incidents": inc,
            "detected": det,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "false_alarms_per_institution_day": statistics.mean(
                r["false_alarms_per_institution_day"] for r in rs
            ),
            "declared_window_findings": sum(r["declared_window_findings"] for r in rs),
            "benign_alerts": sum(r["benign_alerts"] for r in rs),
            "false_findings_by_detector": false_by,
            "missed": [m for r in rs for m in r["missed"]],
        }
    return out


def per_kind(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in runs:
        for kind, k in r["kinds"].items():
            o = out.setdefault(kind, {"family": k["family"], "incidents": 0, "detected": 0})
            o["incidents"] += k["incidents"]
            o["detected"] += k["detected"]
            o.setdefault("delays_s", []).extend(k.get("delays_s", []))
    for o in out.values():
        delays = sorted(o.pop("delays_s"))
        o["delay_median_s"] = statistics.median(delays) if delays else None
    return out


def _table(summary: dict[str, Any]) -> None:
    print(
        f"{'family':13s} {'inc':>4s} {'det':>4s} {'P':>5s} {'R':>5s} {'F1':>5s} "
        f"{'FA/inst-day':>11s} {'declared':>8s} {'benign':>6s}  false findings by detector"
    )
    for fam, s in summary.items():
        print(
            f"{fam:13s} {s['incidents']:4d} {s['detected']:4d} {s['precision']:5.2f} "
            f"{s['recall']:5.2f} {s['f1']:5.2f} {s['false_alarms_per_institution_day']:11.3f} "
            f"{s['declared_window_findings']:8d} {s['benign_alerts']:6d}  "
            f"{s['false_findings_by_detector']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tuning seed 31, 11 days")
    parser.add_argument("--seeds", help="comma list of seeds (default: the reporting seeds)")
    parser.add_argument("--days", type=int, help="simulated days (default 14; quick 11)")
    parser.add_argument(
        "--without",
        default="metric.anomaly",
        help="detectors (comma list) to judge the families without as well, apart (default: "
        "the metric streams' model, which another module owns); empty for none",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    without = frozenset(d for d in args.without.split(",") if d)
    seeds = [TUNING_SEEDS[0]] if args.quick else list(REPORT_SEEDS)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    days = args.days or (11 if args.quick else 14)
    kinds = field_kinds()
    runs = [evaluate(s, days, kinds, without) for s in seeds]
    summary = summarise(runs)
    kinds_table = per_kind(runs)
    benign: dict[str, int] = {}
    for r in runs:
        for kind, n in r["benign_by_kind"].items():
            benign[kind] = benign.get(kind, 0) + n
    speed = statistics.mean(r["events_per_s"] for r in runs)
    print(f"seeds {seeds}, {days} days from {START}, {len(kinds)} field kinds, all confounders")
    _table(summary)
    print(f"{'kind':34s} {'family':13s} {'det/inc':>7s} {'median delay s':>14s}")
    for kind, k in kinds_table.items():
        delay = "-" if k["delay_median_s"] is None else f"{k['delay_median_s']:.0f}"
        print(f"{kind:34s} {k['family']:13s} {k['detected']:>3d}/{k['incidents']:<3d} {delay:>14s}")
    print(f"benign alerts by confounder: {benign}")
    summary_without: dict[str, Any] = {}
    if without:
        summary_without = summarise([r["without"] for r in runs])
        print(f"the same without {sorted(without)} (judged apart, not a result of its own):")
        _table(summary_without)
    print(
        f"engine speed {speed:,.0f} events/s (one core, in process, {runs[0]['events']:,} events)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "seeds": seeds,
                "days": days,
                "start": START,
                "kinds": kinds,
                "families": summary,
                "without": sorted(without),
                "families_without": summary_without,
                "per_kind": kinds_table,
                "benign_alerts_by_confounder": benign,
                "events_per_s": speed,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
