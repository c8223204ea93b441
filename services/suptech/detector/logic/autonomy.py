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


# Degradation a user notices is unavailability, errors and incidents; latency alone is a capacity
# regime (a resized cluster) that re-baselines instead of alerting. Floors are the smallest effect
# worth a finding: 0.5 points of availability or errors, 20% latency, one incident.
_HEALTH_FLOORS = {
    "unavailability_pct": 0.5,
    "log_latency_x5": 1.0,
    "error_pct": 0.5,
    "incidents": 1.0,
}
_SERVICE_FEATURES = ("unavailability_pct", "error_pct", "incidents")


class _System:
    __slots__ = ("tier", "index", "inventory", "vendors", "health", "q", "n", "components")

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
            floors=_HEALTH_FLOORS,
        )
        self.q = 0.0
        self.n = 0
        # Copy of the last report's components: an unchanged inventory (nearly every report)
        # compares equal in C and skips the index and inventory work.
        self.components: list[telemetry_pb2.Component] = []


class _Cascade:
    """An institution's open disruption: the first system that failed and those that followed."""

    __slots__ = ("root", "start_ns", "last_ns", "dependents")

    def __init__(self, root: str, t: int) -> None:
        self.root = root
        self.start_ns = t
        self.last_ns = t
        self.dependents: list[str] = []


class AutonomyFamily:
    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.systems: dict[tuple[str, str], _System] = {}
        # vendor -> institutions with a core system depending on it
        self.vendor_core: dict[str, set[str]] = {}
        self.vendor_flagged: dict[str, int] = {}
        # vendor -> {(institution, system): (first, last) event time of its current outage}
        self.vendor_hits: dict[str, dict[tuple[str, str], tuple[int, int]]] = {}
        # vendor -> event time it was reported as the cause of a shared outage
        self.vendor_outages: dict[str, int] = {}
        self.cascades: dict[str, _Cascade] = {}
        self.core_institutions: set[str] = set()
        self.folded = 0

    def stats(self) -> dict[str, int]:
        return {
            "it_systems": len(self.systems),
            "vendors": len(self.vendor_core),
            "cascade_findings_folded": self.folded,
        }

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
        tier = rep.tier
        s.tier = tier
        core = tier == telemetry_pb2.SYSTEM_TIER_CORE
        tier_grade = _TIER_GRADE.get(tier, findings_pb2.GRADE_GENERAL)

        comps = rep.components
        if comps and comps != s.components:
            s.components = [telemetry_pb2.Component(layer=c.layer) for c in comps]
            for mine, c in zip(s.components, comps, strict=True):
                mine.CopyFrom(c)
            self._inventory(s, list(comps), inst_id, sys_id, core, tier_grade, t, eid, emit)

        # Health against the system's own hour-of-day/weekday rhythm; larger is worse for all.
        availability = rep.availability
        x = {
            "t": t / 1e9,
            "unavailability_pct": (1.0 - availability) * 100.0,
            "log_latency_x5": 5.0 * math.log1p(max(rep.latency_ms_p95, 0.0)),
            "error_pct": rep.error_rate * 100.0,
            "incidents": float(rep.incidents),
        }
        z = s.health.score_learn_one(x)
        score = max(z.values(), default=0.0)
        service = max((z.get(k, 0.0) for k in _SERVICE_FEATURES), default=0.0)
        thr = max(cfg.z_threshold, s.q)
        hit = False
        outage = availability < cfg.outage_availability and rep.interval_seconds > 0
        s.n += 1
        if outage:
            hit = True
            self._system_hit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "system",
                    sys_id,
                    "it.outage",
                    True,
                    1.0 - availability,
                    1.0 - cfg.outage_availability,
                    findings_pb2.GRADE_CRITICAL if core else tier_grade,
                    f"Outage of {sys_id}: availability {availability:.1%} over "
                    f"{rep.interval_seconds}s, {rep.incidents} incidents",
                    t,
                    [eid],
                    [("availability", availability, 1.0, 1.0)],
                ),
                emit,
            )
        # A lone bad report is noise; a run of them is a degradation. Latency alone is not.
        elif (
            s.n >= cfg.health_warmup
            and service > thr
            and s.health.shifted_run >= cfg.health_persist
        ):
            hit = True
            contrib = s.health.contributions(x)
            self._system_hit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "system",
                    sys_id,
                    "it.health_anomaly",
                    False,
                    service,
                    thr,
                    grade_for(service, thr),
                    f"Health of {sys_id} far from its usual level at this hour: "
                    + ", ".join(
                        f"{k} {o:.3g} vs {b:.3g}" for k, (o, b) in contrib.items() if o > b
                    ),
                    t,
                    [eid],
                    [(k, o, b, max(o - b, 0.0)) for k, (o, b) in contrib.items()],
                ),
                emit,
            )
        if not hit and s.n > cfg.warmup_events:
            s.q = update_quantile(s.q, score, cfg.false_alarm_budget, 0.05)
        if outage:
            # Only hard outages count towards a shared-vendor outage: health wobbles at two
            # institutions sharing a popular vendor are a coincidence, not a systemic event.
            interval_ns = rep.interval_seconds * 1_000_000_000
            self._vendor_outage(inst_id, sys_id, s.vendors, t, interval_ns, eid, emit)

    def _inventory(
        self,
        s: _System,
        comps: list[telemetry_pb2.Component],
        inst_id: str,
        sys_id: str,
        core: bool,
        tier_grade: int,
        t: int,
        eid: str,
        emit: Emit,
    ) -> None:
        cfg = self.cfg
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

    def _system_hit(self, c: Candidate, emit: Emit) -> None:
        """Report a failing system, folding a cascade inside one institution into one finding.

        Systems of an institution that fail within ``cascade_window_ns`` of an open disruption
        are its dependents: the first of them makes one ``it.outage_cascade`` finding on the
        root system (the dependents named in it), the rest add nothing a supervisor needs.
        """
        inst_id, sys_id, t = c.institution_id, c.entity_id, c.event_time_ns
        cas = self.cascades.get(inst_id)
        if cas is None or t - cas.last_ns > self.cfg.cascade_window_ns:
            self.cascades[inst_id] = _Cascade(sys_id, t)
            emit(c)
            return
        cas.last_ns = max(cas.last_ns, t)
        if sys_id == cas.root:
            emit(c)
            return
        if sys_id in cas.dependents:
            self.folded += 1
            return
        cas.dependents.append(sys_id)
        if len(cas.dependents) > 1:
            self.folded += 1
            return
        emit(
            Candidate(
                FAMILY,
                inst_id,
                "system",
                cas.root,
                "it.outage_cascade",
                True,
                1.0,
                1.0,
                c.grade,
                f"Disruption of {cas.root} spread to {sys_id} within "
                f"{(t - cas.start_ns) // 60_000_000_000} minutes ({c.summary})",
                t,
                c.evidence,
                [("dependent_systems", 1.0, 0.0, 1.0)],
                basis=f"since{cas.start_ns}",
            )
        )

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
        self,
        inst_id: str,
        sys_id: str,
        vendors: frozenset[str],
        t: int,
        interval_ns: int,
        eid: str,
        emit: Emit,
    ) -> None:
        """Blame one vendor for outages at several institutions at once.

        The decision waits one report interval after a vendor's first failed system, so every
        system it serves has reported; then the vendor with the largest share of its systems
        down (ties: the one explaining more failures) is the cause, and the other vendors of
        those systems (the OS, the chips under the same cloud) are not blamed as well.
        """
        cfg = self.cfg
        window = cfg.vendor_outage_window_ns
        # A vendor already blamed for an outage in the window explains this system too.
        if any(t - self.vendor_outages.get(v, -window - 1) <= window for v in vendors):
            return
        best: tuple[float, int, str, list[str]] | None = None
        for v in vendors:
            hits = self.vendor_hits.setdefault(v, {})
            seen = hits.get((inst_id, sys_id))
            if seen is None or t - seen[1] > window:
                hits[(inst_id, sys_id)] = (t, t)
            else:
                hits[(inst_id, sys_id)] = (seen[0], t)
            for k in [k for k, (_, last) in hits.items() if t - last > window]:
                del hits[k]
            insts = sorted({i for i, _ in hits})
            if len(insts) < cfg.vendor_outage_min_institutions:
                continue
            if t - min(first for first, _ in hits.values()) < interval_ns:
                continue
            footprint = sum(1 for s in self.systems.values() if v in s.vendors)
            coverage = len(hits) / max(footprint, 1)
            if coverage < cfg.vendor_outage_coverage:
                continue
            cand = (-coverage, -len(hits), v, insts)
            if best is None or cand < best:
                best = cand
        if best is None:
            return
        coverage, failed, v, recent = -best[0], -best[1], best[2], best[3]
        self.vendor_outages[v] = t
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
                f"within {window // 60_000_000_000} minutes ({failed} systems, {coverage:.0%} of "
                f"those using it)",
                t,
                [eid],
                [("institutions", float(len(recent)), 0.0, 1.0)],
                related=recent,
            )
        )
