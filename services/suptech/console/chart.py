"""Inline SVG charts of an alert: the entity's per-event scores around it (observed and
expected value above, score and threshold below, the alert's findings marked) or, when the
service holds no scores of the entity, its findings' scores against their thresholds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from suptech.v1 import findings_pb2

__all__ = ["ChartLabels", "entity_chart", "pick_model", "score_chart"]

W, H, PAD = 640, 220, 36


def score_chart(findings: Sequence[findings_pb2.Finding], score_label: str, thr_label: str) -> str:
    """SVG markup; an empty string when no finding has an event time."""
    pts = sorted(
        (f.event_time.ToSeconds(), f.score, f.threshold)
        for f in findings
        if f.HasField("event_time")
    )
    if not pts:
        return ""
    t0, t1 = pts[0][0], pts[-1][0]
    values = [p[1] for p in pts] + [p[2] for p in pts]
    # Scores sit near their threshold: scale to the values, not from zero, or both lines merge.
    margin = (max(values) - min(values)) * 0.2 or abs(max(values)) * 0.05 or 1.0
    top, bottom = max(values) + margin, min(values) - margin

    def x(t: float) -> float:
        return PAD + (W - 2 * PAD) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * (v - bottom) / (top - bottom)

    line = " ".join(f"{x(t):.1f},{y(s):.1f}" for t, s, _ in pts)
    thr = " ".join(f"{x(t):.1f},{y(th):.1f}" for t, _, th in pts)
    if len(pts) == 1:
        thr = f"{PAD},{y(pts[0][2]):.1f} {W - PAD},{y(pts[0][2]):.1f}"
    dots = "".join(
        f'<circle class="pt" cx="{x(t):.1f}" cy="{y(s):.1f}" r="4"><title>{s:.3f}</title></circle>'
        for t, s, _ in pts
    )
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'aria-label="{escape(score_label)}">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<text x="4" y="{y(max(values)):.1f}" class="tick">{max(values):.2f}</text>'
        f'<text x="4" y="{y(min(values)):.1f}" class="tick">{min(values):.2f}</text>'
        f'<polyline class="threshold" points="{thr}"/>'
        f'<polyline class="score" points="{line}"/>{dots}'
        f'<text x="{W - PAD - 150}" y="16" class="legend score-l">— {escape(score_label)}</text>'
        f'<text x="{W - PAD - 150}" y="32" class="legend thr-l">- - {escape(thr_label)}</text>'
        "</svg>"
    )


@dataclass(frozen=True)
class ChartLabels:
    title: str
    observed: str
    expected: str
    score: str
    threshold: str
    finding: str


# The entity chart: a value panel above a score panel, sharing the time axis.
EW, PANEL_H, GAP, LEFT, RIGHT = 720, 140, 34, 64, 16


def pick_model(
    scores: Sequence[findings_pb2.AnomalyScore], findings: Sequence[findings_pb2.Finding]
) -> list[findings_pb2.AnomalyScore]:
    """The scores of one model: the alert's findings' model if it scored, else the busiest one
    (two models' scores on one line would read as one jagged series)."""
    if not scores:
        return []
    mine = {f.model_id for f in findings if f.model_id}
    counts = Counter(s.model_id for s in scores)
    chosen = next((m for m, _ in counts.most_common() if m in mine), counts.most_common(1)[0][0])
    return [s for s in scores if s.model_id == chosen]


def _scale(values: Sequence[float]) -> tuple[float, float]:
    hi, lo = max(values), min(values)
    margin = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
    return hi + margin, lo - margin


def entity_chart(
    scores: Sequence[findings_pb2.AnomalyScore],
    findings: Sequence[findings_pb2.Finding],
    labels: ChartLabels,
    when: Callable[[int], str],
) -> str:
    """SVG markup of per-event scores (oldest first); ``when`` formats an event time (ns) for
    the axis. An empty string when there are no scores."""
    if not scores:
        return ""
    ts = [s.event_time.ToNanoseconds() for s in scores]
    pts = list(zip(ts, scores, strict=True))
    marks = [f.event_time.ToNanoseconds() for f in findings if f.HasField("event_time")]
    t0, t1 = min(ts + marks), max(ts + marks)
    # Univariate models say what they saw and expected; others leave both 0: no value panel.
    values = any(s.observed or s.expected for s in scores)
    panels = 2 if values else 1
    height = GAP + panels * (PANEL_H + GAP)

    def x(t: int) -> float:
        return LEFT + (EW - LEFT - RIGHT) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.5)

    parts: list[str] = []
    top = GAP
    if values:
        series = [s.observed for s in scores] + [s.expected for s in scores]
        parts.append(_panel(top, series, "value-panel"))
        y = _y(top, series)
        parts.append(_line("expected", [(x(t), y(s.expected)) for t, s in pts]))
        parts.append(_line("observed", [(x(t), y(s.observed)) for t, s in pts]))
        top += PANEL_H + GAP
    series = [s.score for s in scores] + [s.threshold for s in scores]
    parts.append(_panel(top, series, "score-panel"))
    y = _y(top, series)
    thr = [(x(t), y(s.threshold)) for t, s in pts]
    if len(thr) == 1:
        thr = [(LEFT, thr[0][1]), (EW - RIGHT, thr[0][1])]
    parts.append(_line("threshold", thr))
    parts.append(_line("score", [(x(t), y(s.score)) for t, s in pts]))
    parts.extend(
        f'<circle class="alarm" cx="{x(t):.1f}" cy="{y(s.score):.1f}" r="3">'
        f"<title>{escape(s.event_id)}: {s.score:.4f} / {s.threshold:.4f}</title></circle>"
        for t, s in pts
        if s.alarm
    )
    bottom = top + PANEL_H
    parts.extend(
        f'<line class="finding-mark" x1="{x(t):.1f}" y1="{GAP}" x2="{x(t):.1f}" y2="{bottom}">'
        f"<title>{escape(labels.finding)}: {escape(when(t))}</title></line>"
        for t in marks
    )
    parts.append(
        f'<text x="{LEFT}" y="{height - 8}" class="tick">{escape(when(t0))}</text>'
        f'<text x="{EW - RIGHT}" y="{height - 8}" class="tick end">{escape(when(t1))}</text>'
    )
    parts.append(_legend(labels, values))
    return (
        f'<svg class="chart scores-chart" role="img" viewBox="0 0 {EW} {height}" width="{EW}" '
        f'height="{height}" aria-label="{escape(labels.title)}" data-scores="{len(scores)}">'
        + "".join(parts)
        + "</svg>"
    )


def _legend(labels: ChartLabels, values: bool) -> str:
    legend = [
        ("score-l", "—", labels.score),
        ("thr-l", "- -", labels.threshold),
        ("mark-l", "|", labels.finding),
    ]
    if values:
        legend = [("obs-l", "—", labels.observed), ("exp-l", "- -", labels.expected), *legend]
    return "".join(
        f'<text x="{LEFT + i * 130}" y="16" class="legend {cls}">{sym} {escape(text)}</text>'
        for i, (cls, sym, text) in enumerate(legend)
    )


def _y(top: float, series: Sequence[float]) -> Callable[[float], float]:
    hi, lo = _scale(series)
    return lambda v: top + PANEL_H * (hi - v) / (hi - lo)


def _panel(top: float, series: Sequence[float], cls: str) -> str:
    """The panel's axes and its highest and lowest values as ticks."""
    y = _y(top, series)
    return (
        f'<g class="{cls}">'
        f'<line x1="{LEFT}" y1="{top + PANEL_H}" x2="{EW - RIGHT}" y2="{top + PANEL_H}" '
        'class="axis"/>'
        f'<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{top + PANEL_H}" class="axis"/>'
        f'<text x="4" y="{y(max(series)):.1f}" class="tick">{max(series):.4g}</text>'
        f'<text x="4" y="{y(min(series)):.1f}" class="tick">{min(series):.4g}</text></g>'
    )


def _line(cls: str, pts: Sequence[tuple[float, float]]) -> str:
    points = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
    return f'<polyline class="{cls}" points="{points}"/>'
