"""What a family detector reports to the engine, and how the engine turns it into a Finding."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from suptech.v1 import findings_pb2

__all__ = ["Candidate", "grade_for", "to_finding"]

# Institution id of cross-institution findings (for example vendor concentration); the
# institutions involved are listed in related_institution_ids.
SYSTEMIC_INSTITUTION = "*"


@dataclass
class Candidate:
    family: int
    institution_id: str
    entity_kind: str
    entity_id: str
    detector_id: str
    is_rule: bool
    score: float
    threshold: float
    grade: int
    summary: str
    event_time_ns: int
    evidence: list[str] = field(default_factory=list)
    # (feature, observed, baseline, weight)
    contributions: list[tuple[str, float, float, float]] = field(default_factory=list)
    related: list[str] = field(default_factory=list)
    # What makes the finding unique besides detector and entity; the coalescing window when None.
    basis: str | None = None
    # Set by the engine's condition tracking for statistical detectors (findings_pb2.Phase).
    phase: int = 0
    condition_id: str = ""
    # Declared maintenance / change / batch window the evidence fell in.
    declared_window_id: str = ""


def grade_for(score: float, threshold: float) -> int:
    """Grade of a model finding from how far its score is past its threshold."""
    ratio = score / threshold if threshold > 0 else score
    if ratio < 1.5:
        return findings_pb2.GRADE_GENERAL
    if ratio < 3.0:
        return findings_pb2.GRADE_SIGNIFICANT
    if ratio < 6.0:
        return findings_pb2.GRADE_MAJOR
    return findings_pb2.GRADE_CRITICAL


def finding_id(c: Candidate, basis: str) -> str:
    key = "|".join((c.detector_id, c.institution_id, c.entity_kind, c.entity_id, basis))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def to_finding(
    c: Candidate, basis: str, detected_ns: int, evidence_cap: int
) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=finding_id(c, basis),
        family=c.family,  # type: ignore[arg-type]
        institution_id=c.institution_id,
        entity_kind=c.entity_kind,
        entity_id=c.entity_id,
        score=round(c.score, 6),
        threshold=round(c.threshold, 6),
        grade=c.grade,  # type: ignore[arg-type]
        summary=c.summary,
        evidence_event_ids=c.evidence[:evidence_cap],
        related_institution_ids=c.related,
        phase=c.phase,  # type: ignore[arg-type]
        condition_id=c.condition_id,
        declared_window_id=c.declared_window_id,
    )
    if c.is_rule:
        f.rule_id = c.detector_id
    else:
        f.model_id = c.detector_id
    total = sum(w for _, _, _, w in c.contributions) or 1.0
    for name, observed, baseline, weight in c.contributions:
        f.contributions.add(
            feature=name,
            observed=round(observed, 6),
            baseline=round(baseline, 6),
            weight=round(weight / total, 6),
        )
    f.event_time.FromNanoseconds(c.event_time_ns)
    f.detected_time.FromNanoseconds(detected_ns)
    return f
