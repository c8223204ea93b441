"""How findings become alerts: plain functions, no database and no Kafka.

A finding joins the open alert of its group — same institution, family, entity and detector —
when its event time lies within the grouping window of that alert; otherwise it opens a new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from suptech.v1 import findings_pb2

__all__ = [
    "MATCHER_NAMES",
    "detector_id",
    "group_key",
    "invalid_reason",
    "joins_group",
    "grown_grade",
    "silence_matches",
    "is_quiet",
    "alert_attributes",
]

MAX_GRADE = findings_pb2.GRADE_CRITICAL
MATCHER_NAMES = frozenset(
    {"institution_id", "family", "entity_kind", "entity_id", "detector_id", "grade"}
)

# Column widths of the store (models.py): longer values could never be stored.
_MAX_LENGTHS = {
    "finding_id": 256,
    "institution_id": 128,
    "entity_kind": 64,
    "entity_id": 256,
    "rule_id": 256,
    "model_id": 256,
}


# What a Timestamp (and a Python datetime) can hold: 0001-01-01 to 9999-12-31T23:59:59.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def detector_id(finding: findings_pb2.Finding) -> str:
    """The rule or model that made the finding (exactly one is set)."""
    return finding.rule_id or finding.model_id


def group_key(finding: findings_pb2.Finding) -> str:
    return "|".join(
        (
            finding.institution_id,
            str(finding.family),
            finding.entity_kind,
            finding.entity_id,
            detector_id(finding),
        )
    )


def invalid_reason(finding: findings_pb2.Finding) -> str | None:
    """Why a decoded finding cannot become an alert, or None when it can."""
    if not finding.finding_id:
        return "finding_id is empty"
    for name, limit in _MAX_LENGTHS.items():
        if len(getattr(finding, name)) > limit:
            return f"{name} is longer than {limit} characters"
    if finding.family not in findings_pb2.Family.values() or finding.family == 0:
        return f"family {finding.family} is not a known family"
    if not finding.institution_id:
        return "institution_id is empty"
    if not finding.entity_id:
        return "entity_id is empty"
    if bool(finding.rule_id) == bool(finding.model_id):
        return "exactly one of rule_id and model_id must be set"
    if finding.grade not in findings_pb2.Grade.values():
        return f"grade {finding.grade} is not a known grade"
    if not finding.HasField("event_time"):
        return "event_time is missing"
    if not _MIN_SECONDS <= finding.event_time.seconds <= _MAX_SECONDS:
        return f"event_time {finding.event_time.seconds}s is outside years 1-9999"
    return None


def joins_group(
    first_seen: datetime, last_seen: datetime, event_time: datetime, window_s: float
) -> bool:
    """Whether a finding at ``event_time`` belongs to an alert spanning first..last seen.

    Late findings are accepted as well as new ones, as long as they are within the window of
    the span, so an out-of-order replay groups the same way as the live stream.
    """
    window = timedelta(seconds=window_s)
    return first_seen - window <= event_time <= last_seen + window


def grown_grade(max_finding_grade: int, finding_count: int, thresholds: Sequence[int]) -> int:
    """The alert's grade: its worst finding's, one level up per growth threshold reached."""
    base = max(max_finding_grade, findings_pb2.GRADE_GENERAL)
    steps = sum(1 for t in thresholds if finding_count >= t)
    return min(base + steps, MAX_GRADE)


def alert_attributes(
    *,
    institution_id: str,
    family: int,
    entity_kind: str,
    entity_id: str,
    detector_id: str,
    grade: int,
) -> dict[str, str]:
    """The attributes a silence matcher can name, as strings (enums by name and by number)."""
    return {
        "institution_id": institution_id,
        "family": str(family),
        "entity_kind": entity_kind,
        "entity_id": entity_id,
        "detector_id": detector_id,
        "grade": str(grade),
    }


def _matches_value(name: str, expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    # Enums may be written by name ("FAMILY_SANDBOX") as well as by number.
    if name == "family" and expected in findings_pb2.Family.keys():
        return str(findings_pb2.Family.Value(expected)) == actual
    if name == "grade" and expected in findings_pb2.Grade.keys():
        return str(findings_pb2.Grade.Value(expected)) == actual
    return False


def silence_matches(matchers: Iterable[Mapping[str, str]], attributes: Mapping[str, str]) -> bool:
    """True when every matcher equals the alert's attribute (an empty list matches nothing)."""
    matched = False
    for m in matchers:
        name, value = m["name"], m["value"]
        if name not in attributes or not _matches_value(name, value, attributes[name]):
            return False
        matched = True
    return matched


def is_quiet(last_seen: datetime, now: datetime, quiet_s: float) -> bool:
    """Whether an alert has had no finding for the quiet period and may resolve itself."""
    return now - last_seen >= timedelta(seconds=quiet_s)
