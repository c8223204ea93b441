"""IT autonomy family: controllability index, health against its own rhythm, shared vendors."""

from __future__ import annotations

import math
from collections.abc import Callable

from suptech.detector.logic.candidate import SYSTEMIC_INSTITUTION, Candidate, grade_for
from suptech.detector.logic.config import EngineConfig
from suptech.detector.logic.seasonal import SeasonalBaseline
from suptech.detector.logic.threshold import update_quantile
from suptech.v1 import findings_pb2, telemetry_pb2

__all__ = ["LAYER_WEIGHTS", "TIER_WEIGHTS", "AutonomyFamily", "controllability_index"]

FAMILY = findings_pb2.FAMILY_IT_AUTONOMY
Emit = Callable[[Candidate], None]

# Layers whose loss of control is hardest to work around weigh most.
LAYER_WEIGHTS: dict[int, float] = {
    telemetry_pb2.LAYER_CHIP: 3.0,
    telemetry_pb2.LAYER_SERVER: 2.0,
    telemetry_pb2.LAYER_OS: 3.0,
    telemetry_pb2.LAYER_DATABASE: 3.0,
    telemetry_pb2.LAYER_MIDDLEWARE: 2.0,
    telemetry_pb2.LAYER_CORE_APPLICATION: 3.0,
    telemetry_pb2.LAYER_CLOUD: 2.0,
}
TIER_WEIGHTS: dict[int, float] = {
    telemetry_pb2.SYSTEM_TIER_CORE: 3.0,
    telemetry_pb2.SYSTEM_TIER_IMPORTANT: 2.0,
    telemetry_pb2.SYSTEM_TIER_GENERAL: 1.0,
}
_TIER_GRADE: dict[int, int] = {
    telemetry_pb2.SYSTEM_TIER_CORE: findings_pb2.GRADE_MAJOR,
    telemetry_pb2.SYSTEM_TIER_IMPORTANT: findings_pb2.GRADE_SIGNIFICANT,
}


def controllability_index(components: list[telemetry_pb2.Component]) -> float:
    """Layer-weighted share of components the institution independently controls (1.0 if none)."""
    total = 0.0
    ok = 0.0
    for c in components:
        w = LAYER_WEIGHTS.get(c.layer, 1.0)
        total += w
        if c.independently_controllable:
            ok += w
    return ok / total if total else 1.0


def _component_key(c: telemetry_pb2.Component) -> str:
    return f"{c.layer}/{c.vendor}/{c.product}"


class _System:
    __slots__ = ("tier", "index", "inventory", "vendors", "health", "q", "n")

    def __init__(self, cfg: EngineConfig) -> None:
        self.tier = 0
        self.index = -1.0
        self.inventory: frozenset[str] = frozenset()
        self.vendors: frozenset[str] = frozenset()
        self.health = SeasonalBaseline(
            alpha=0.1,
            floor=0.05,
            min_slot=2,
            threshold=cfg.z_threshold,
            rebaseline_after=cfg.rebaseline_after,
            utc_offset_hours=cfg.utc_offset_hours,
        )
        self.q = 0.0
        self.n = 0


class AutonomyFamily:
    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.systems: dict[tuple[str, str], _System] = {}
        # vendor -> institutions with a core system depending on it
        self.vendor_core: dict[str, set[str]] = {}
        self.vendor_flagged: dict[str, int] = {}
        # vendor -> {institution: last event time it had an outage or health anomaly}
        self.vendor_hits: dict[str, dict[str, int]] = {}
        self.core_institutions: set[str] = set()

    def stats(self) -> dict[str, int]:
        return {"it_systems": len(self.systems), "vendors": len(self.vendor_core)}

    def institution_index(self, inst_id: str) -> float:
        """Tier-weighted controllability index of an institution's systems."""
        total = 0.0
        acc = 0.0
        for (i, _), s in self.systems.items():
            if i == inst_id and s.index >= 0:
                w = TIER_WEIGHTS.get(s.tier, 1.0)
                total += w
                acc += w * s.index
        return acc / total if total else 1.0

    def process(self, env: telemetry_pb2.TelemetryEnvelope, t: int, emit: Emit) -> None:
        cfg = self.cfg
        rep = env.it_posture
        inst_id = env.institution_id
        sys_id = rep.system_id
        eid = env.event_id
        key = (inst_id, sys_id)
        s = self.systems.get(key)
        if s is None:
            s = self.systems[key] = _System(cfg)
        s.tier = rep.tier
        core = rep.tier == telemetry_pb2.SYSTEM_TIER_CORE
        comps = list(rep.components)
        tier_grade = _TIER_GRADE.get(rep.tier, findings_pb2.GRADE_GENERAL)

        if comps:
            index = controllability_index(comps)
            inventory = frozenset(_component_key(c) for c in comps)
            if s.index >= 0 and index < s.index - cfg.controllability_drop:
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "system",
                        sys_id,
                        "it.controllability_regression",
                        True,
                        s.index - index,
                        cfg.controllability_drop,
                        tier_grade,
                        f"Controllability index of {sys_id} fell from {s.index:.2f} to {index:.2f}",
                        t,
                        [eid],
                        [("controllability_index", index, s.index, 1.0)],
                    )
                )
            if core and s.inventory:
                new = [
                    c
                    for c in comps
                    if not c.independently_controllable and _component_key(c) not in s.inventory
                ]
                if new:
                    names = ", ".join(f"{c.vendor} {c.product}" for c in new[:3])
                    emit(
                        Candidate(
                            FAMILY,
                            inst_id,
                            "system",
                            sys_id,
                            "it.new_uncontrollable_core",
                            True,
                            float(len(new)),
                            0.0,
                            findings_pb2.GRADE_MAJOR,
                            f"New component not independently controllable in core system "
                            f"{sys_id}: {names}",
                            t,
                            [eid],
                            [("uncontrollable_components", float(len(new)), 0.0, 1.0)],
                        )
                    )
            s.index = index
            if inventory != s.inventory:
                s.inventory = inventory
                s.vendors = frozenset(c.vendor for c in comps)
                if core:
                    # Concentration risk is dependence on what the institutions cannot control.
                    foreign = frozenset(c.vendor for c in comps if not c.independently_controllable)
                    self._concentration(inst_id, foreign, t, eid, emit)

        # Health against the system's own hour-of-day/weekday rhythm; larger is worse for all.
        x = {
            "t": t / 1e9,
            "unavailability_pct": (1.0 - rep.availability) * 100.0,
            "log_latency_x5": 5.0 * math.log1p(max(rep.latency_ms_p95, 0.0)),
            "error_pct": rep.error_rate * 100.0,
            "incidents": float(rep.incidents),
        }
        score = s.health.score_one(x)
        thr = max(cfg.z_threshold, s.q)
        hit = False
        outage = False
        if rep.availability < cfg.outage_availability and rep.interval_seconds > 0:
            hit = outage = True
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "system",
                    sys_id,
                    "it.outage",
                    True,
                    1.0 - rep.availability,
                    1.0 - cfg.outage_availability,
                    findings_pb2.GRADE_CRITICAL if core else tier_grade,
                    f"Outage of {sys_id}: availability {rep.availability:.1%} over "
                    f"{rep.interval_seconds}s, {rep.incidents} incidents",
                    t,
                    [eid],
                    [("availability", rep.availability, 1.0, 1.0)],
                )
            )
        s.n += 1
        s.health.learn_one(x)
        persistent = s.health.shifted_run >= cfg.health_persist
        # A lone bad report is noise; a run of them is a degradation.
        if not hit and s.n >= cfg.health_warmup and score > thr and persistent:
            hit = True
            contrib = s.health.contributions(x)
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "system",
                    sys_id,
                    "it.health_anomaly",
                    False,
                    score,
                    thr,
                    grade_for(score, thr),
                    f"Health of {sys_id} far from its usual level at this hour: "
                    + ", ".join(
                        f"{k} {o:.3g} vs {b:.3g}" for k, (o, b) in contrib.items() if o > b
                    ),
                    t,
                    [eid],
                    [(k, o, b, max(o - b, 0.0)) for k, (o, b) in contrib.items()],
                )
            )
        if not hit and s.n > cfg.warmup_events:
            s.q = update_quantile(s.q, score, cfg.false_alarm_budget, 0.05)
        if outage:
            # Only hard outages count towards a shared-vendor outage: health wobbles at two
            # institutions sharing a popular vendor are a coincidence, not a systemic event.
            self._vendor_outage(inst_id, s.vendors, t, eid, emit)

    def _concentration(
        self, inst_id: str, vendors: frozenset[str], t: int, eid: str, emit: Emit
    ) -> None:
        cfg = self.cfg
        self.core_institutions.add(inst_id)
        for v in vendors:
            insts = self.vendor_core.setdefault(v, set())
            insts.add(inst_id)
            n = len(insts)
            share = n / len(self.core_institutions)
            if (
                n >= cfg.vendor_concentration_min
                and share >= cfg.vendor_concentration_share
                and n > self.vendor_flagged.get(v, 0)
                and len(self.core_institutions) >= cfg.vendor_concentration_min
            ):
                # Once per vendor and level: a larger concentration is news, the same one is not.
                self.vendor_flagged[v] = n * 2
                emit(
                    Candidate(
                        FAMILY,
                        SYSTEMIC_INSTITUTION,
                        "vendor",
                        v,
                        "it.vendor_concentration",
                        True,
                        float(n),
                        float(cfg.vendor_concentration_min),
                        findings_pb2.GRADE_SIGNIFICANT,
                        f"Core systems of {n} institutions ({share:.0%}) depend on vendor {v}",
                        t,
                        [eid],
                        [("institutions", float(n), 0.0, 1.0)],
                        related=sorted(insts),
                        basis=str(n),
                    )
                )

    def _vendor_outage(
        self, inst_id: str, vendors: frozenset[str], t: int, eid: str, emit: Emit
    ) -> None:
        cfg = self.cfg
        qualifying: list[tuple[int, str, list[str]]] = []
        for v in vendors:
            hits = self.vendor_hits.setdefault(v, {})
            hits[inst_id] = t
            for i in [i for i, ht in hits.items() if t - ht > cfg.vendor_outage_window_ns]:
                del hits[i]
            if len(hits) >= cfg.vendor_outage_min_institutions:
                footprint = sum(1 for s in self.systems.values() if v in s.vendors)
                qualifying.append((footprint, v, sorted(hits)))
        # Every vendor the failed systems share qualifies; the one with the smallest footprint
        # is the most specific explanation (an OS used everywhere did not fail only here).
        for _, v, recent in sorted(qualifying)[:1]:
            emit(
                Candidate(
                    FAMILY,
                    SYSTEMIC_INSTITUTION,
                    "vendor",
                    v,
                    "it.vendor_outage",
                    True,
                    float(len(recent)),
                    float(cfg.vendor_outage_min_institutions),
                    findings_pb2.GRADE_CRITICAL,
                    f"Systems of {len(recent)} institutions depending on vendor {v} failed "
                    f"within {cfg.vendor_outage_window_ns // 60_000_000_000} minutes",
                    t,
                    [eid],
                    [("institutions", float(len(recent)), 0.0, 1.0)],
                    related=recent,
                )
            )
