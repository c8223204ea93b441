"""An inline SVG chart of an alert's findings: score over event time, the threshold drawn."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from suptech.v1 import findings_pb2

__all__ = ["score_chart"]

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
