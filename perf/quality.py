"""How the quality benchmarks judge findings against the simulator's ground truth (one place)."""

from __future__ import annotations

from suptech.v1 import findings_pb2

from simulators.incidents import KINDS, GroundTruth

__all__ = ["FAMILIES", "GRACE_US", "matches", "library_kinds", "field_kinds"]

FAMILIES = {
    findings_pb2.FAMILY_DATA_LEAKAGE: "data_leakage",
    findings_pb2.FAMILY_IT_AUTONOMY: "it_autonomy",
    findings_pb2.FAMILY_SANDBOX: "sandbox",
}
# A finding up to two hours after an incident's end still counts as its detection.
GRACE_US = 2 * 3600 * 1_000_000


def library_kinds() -> list[str]:
    """The original incident library's kinds (``perf.detection_quality``)."""
    return [k for k, (_, planner) in KINDS.items() if planner.__module__ == "simulators.incidents"]


def field_kinds() -> list[str]:
    """Incident kinds registered by the field-study modules (``perf.field_quality``)."""
    return [k for k, (_, planner) in KINDS.items() if planner.__module__ != "simulators.incidents"]


def matches(
    f: findings_pb2.Finding, g: GroundTruth, t_us: int, app_of_test: dict[str, str]
) -> bool:
    """Whether finding ``f`` (event time ``t_us``) is about incident or confounder ``g``."""
    if FAMILIES.get(f.family) != g.family or not (g.start_us <= t_us <= g.end_us + GRACE_US):
        return False
    insts = {g.institution_id, *g.extra.get("affected_institutions", [])} - {""}
    if f.institution_id not in insts and not insts & set(f.related_institution_ids):
        return False
    if g.entity_kind == "institution":
        return True
    entities = {g.entity_id, app_of_test.get(g.entity_id, ""), *g.extra.get("affected_systems", [])}
    if g.entity_kind == "vendor":
        return f.entity_id in entities or f.entity_kind == "system"
    # A metric stream (system/name or system/component/name) belongs to its system.
    entity = f.entity_id.split("/", 1)[0] if f.entity_kind == "metric" else f.entity_id
    return entity in entities or f.entity_kind == "institution"
