"""IT autonomy family: controllability index and its drift, health against its own rhythm and
after changes, vulnerability backlogs; what shared vendors need, stated as vendor facts.

Vendor concentration and shared-vendor outages need every institution's inventory, more than one
partition of telemetry holds: the family states vendor facts (a system's vendors when its
inventory changes, a system down) for :mod:`suptech.detector.logic.vendor_stage` to decide on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from suptech.detector.logic.calendar import InstitutionContext
from suptech.detector.logic.candidate import Candidate, grade_for
from suptech.detector.logic.config import EngineConfig
from suptech.detector.logic.controllability_drift import ControllabilityDrift
from suptech.detector.logic.seasonal import SeasonalBaseline
from suptech.detector.logic.threshold import update_quantile
from suptech.detector.logic.vendor_stage import inventory_facts, outage_facts
from suptech.detector.logic.version_regression import VersionRegression
from suptech.detector.logic.vuln_backlog import VulnBacklog
from suptech.v1 import findings_pb2, telemetry_pb2, vendor_facts_pb2

__all__ = ["LAYER_WEIGHTS", "TIER_WEIGHTS", "AutonomyFamily", "controllability_index"]

FAMILY = findings_pb2.FAMILY_IT_AUTONOMY
Emit = Callable[[Candidate], None]
Facts = Callable[[vendor_facts_pb2.VendorFact], None]


def _drop(fact: vendor_facts_pb2.VendorFact) -> None:
    """Where vendor facts go when nobody takes them (the family driven on its own)."""


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
_GRADE_UP: dict[int, int] = {
    findings_pb2.GRADE_GENERAL: findings_pb2.GRADE_SIGNIFICANT,
    findings_pb2.GRADE_SIGNIFICANT: findings_pb2.GRADE_MAJOR,
    findings_pb2.GRADE_MAJOR: findings_pb2.GRADE_CRITICAL,
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


def _service_z(z: dict[str, float]) -> float:
    """The largest z-score of the service features, unavailability, errors and incidents (0 if
    none is scored yet): what the service's users feel, latency apart."""
    get = z.get
    a = get("unavailability_pct", 0.0)
    b = get("error_pct", 0.0)
    c = get("incidents", 0.0)
    if b > a:
        a = b
    return c if c > a else a


# Oldest unpatched critical vulnerability, in days, that makes a core system's backlog major.
_VULN_OVERDUE_DAYS = 30
# A backlog that has not changed is judged again this often (enough to keep its condition open).
_VULN_RECHECK_NS = 3_600_000_000_000
# Calendar slots are cached per institution for this long (time zones are whole quarter hours).
_SLOT_BUCKET_NS = 15 * 60 * 1_000_000_000


class _System:
    __slots__ = (
        "tier",
        "index",
        "inventory",
        "vendors",
        "health",
        "q",
        "n",
        "components",
        "drift",
        "drift_level",
        "vulns",
        "vulns_seen",
        "regression",
    )

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
        self._new_detectors()

    def _new_detectors(self) -> None:
        self.drift = ControllabilityDrift()
        self.drift_level = 0
        self.vulns = VulnBacklog()
        # (count, oldest age, time) of the last report the backlog was judged on.
        self.vulns_seen = (-1, -1, 0)
        self.regression = VersionRegression()

    def __setstate__(self, state: Any) -> None:
        # Checkpoints from before the drift, backlog and regression detectors start them afresh.
        self._new_detectors()
        slots = state[1] if isinstance(state, tuple) else state
        for key, value in (slots or {}).items():
            setattr(self, key, value)


class _Cascade:
    """An institution's open disruption: the first system that failed and those that followed."""

    __slots__ = ("root", "start_ns", "last_ns", "dependents")

    def __init__(self, root: str, t: int) -> None:
        self.root = root
        self.start_ns = t
        self.last_ns = t
        self.dependents: list[str] = []


class AutonomyFamily:
    context: InstitutionContext | None = None

    def __init__(self, cfg: EngineConfig, context: InstitutionContext | None = None) -> None:
        self.cfg = cfg
        # Calendars (the hour slot of a report) and declared windows (changes to hold judgement
        # over); the engine's, shared.
        self.context = context
        self._slots: dict[str, tuple[int, int]] = {}
        self.systems: dict[tuple[str, str], _System] = {}
        self.cascades: dict[str, _Cascade] = {}
        self.folded = 0

    def stats(self) -> dict[str, int]:
        return {"it_systems": len(self.systems), "cascade_findings_folded": self.folded}

    def take_legacy_vendor_state(self) -> dict[str, Any] | None:
        """What a family restored from before the vendor stage decided vendors with (engine
        snapshots up to version 7), removed from it; None when it holds none."""
        names = ("core_institutions", "vendor_core", "vendor_flagged", "vendor_hits")
        if not all(hasattr(self, n) for n in names):
            return None
        state = {n: self.__dict__.pop(n) for n in names}
        state["vendor_outages"] = self.__dict__.pop("vendor_outages", {})
        state["systems"] = {k: s.vendors for k, s in self.systems.items() if s.vendors}
        return state

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

    def process(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        t: int,
        emit: Emit,
        facts: Facts = _drop,
    ) -> None:
        """Run the family's detectors on one posture report; ``facts`` takes its vendor facts
        (in order with the candidates: the engine's in-process stage reports at once)."""
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
        changed = False
        if comps and comps != s.components:
            changed = bool(s.components)
            s.components = [telemetry_pb2.Component(layer=c.layer) for c in comps]
            for mine, c in zip(s.components, comps, strict=True):
                mine.CopyFrom(c)
            self._inventory(s, list(comps), inst_id, sys_id, core, tier_grade, t, eid, emit, facts)
        if self.context is not None and self.context.windows.get(inst_id):
            declared = self._declared(inst_id, sys_id, t)
            held = declared or self._declared(inst_id, sys_id, t, any_kind=True)
        else:
            declared = held = False  # the common case, without two calls
        seen = s.vulns_seen
        if (
            rep.unpatched_critical_vulns != seen[0]
            or rep.oldest_unpatched_critical_days != seen[1]
            or t - seen[2] >= _VULN_RECHECK_NS
        ):
            self._vulns(s, rep, inst_id, sys_id, core, tier_grade, t, eid, emit)
        self._regression(s, rep, inst_id, sys_id, changed, held, tier_grade, t, eid, emit)

        # Health against the system's own hour-of-day/weekday rhythm; larger is worse for all.
        availability = rep.availability
        p95 = rep.latency_ms_p95
        x = {
            "t": t / 1e9,
            "unavailability_pct": (1.0 - availability) * 100.0,
            "log_latency_x5": 5.0 * math.log1p(p95) if p95 > 0.0 else 0.0,
            "error_pct": rep.error_rate * 100.0,
            "incidents": float(rep.incidents),
        }
        z = s.health.score_learn_one(x)
        score = max(z.values(), default=0.0)
        service = _service_z(z)
        thr = cfg.z_threshold
        if s.q > thr:
            thr = s.q
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
        # A lone bad report is noise; a run of them is a degradation. Latency alone is not. In a
        # window the institution declared for the system, degraded health is what it announced.
        elif (
            not declared
            and s.n >= cfg.health_warmup
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
        if outage and s.vendors:
            # Only hard outages count towards a shared-vendor outage: health wobbles at two
            # institutions sharing a popular vendor are a coincidence, not a systemic event.
            for fact in outage_facts(inst_id, sys_id, s.vendors, t, rep.interval_seconds, eid):
                facts(fact)

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
        facts: Facts,
    ) -> None:
        cfg = self.cfg
        index = controllability_index(comps)
        inventory = frozenset(_component_key(c) for c in comps)
        stepped = s.index >= 0 and index < s.index - cfg.controllability_drop
        self._drift(s, index, stepped, inst_id, sys_id, tier_grade, t, eid, emit)
        if stepped:
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
            old, s.vendors = s.vendors, frozenset(c.vendor for c in comps)
            # Concentration risk is dependence on what the institutions cannot control.
            foreign = (
                frozenset(c.vendor for c in comps if not c.independently_controllable)
                if core
                else None
            )
            for fact in inventory_facts(inst_id, sys_id, old, s.vendors, foreign, t, eid):
                facts(fact)

    def _drift(
        self,
        s: _System,
        index: float,
        stepped: bool,
        inst_id: str,
        sys_id: str,
        tier_grade: int,
        t: int,
        eid: str,
        emit: Emit,
    ) -> None:
        """A slide of the index below the level it held, reported once per ``drop`` it adds.

        A step the report-to-report regression already reports is not reported twice; it still
        counts towards the drift.
        """
        x = {"t": t / 1e9, "index": index}
        drift = s.drift.score_one(x)
        level = int(drift)
        if level < 1:
            s.drift_level = 0
        elif level > s.drift_level:
            s.drift_level = level
            if not stepped:
                ref = s.drift.reference(x["t"])
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "system",
                        sys_id,
                        "it.controllability_drift",
                        False,
                        drift,
                        1.0,
                        _GRADE_UP.get(tier_grade, tier_grade) if level >= 3 else tier_grade,
                        f"Controllability index of {sys_id} has slid to {index:.2f} from the "
                        f"{ref:.2f} it held (step by step: each change alone was small)",
                        t,
                        [eid],
                        [("controllability_index", index, ref, 1.0)],
                        basis=f"ref{round(ref * 1000)}:level{level}",
                    )
                )
        s.drift.learn_one(x)

    def _declared(self, inst_id: str, sys_id: str, t: int, any_kind: bool = False) -> bool:
        """Whether the institution declared a maintenance or change window over the system at
        ``t`` (with ``any_kind``, also a batch window: heavy load it announced)."""
        ctx = self.context
        windows = ctx.windows.get(inst_id) if ctx is not None else None
        if not windows or ctx is None:
            return False
        if not any_kind:
            return bool(ctx.window_at(inst_id, sys_id, FAMILY, t))
        return any(
            w.start_ns <= t <= w.end_ns and (not w.systems or sys_id in w.systems)
            for w in windows.values()
        )

    def _slot(self, inst_id: str, t: int) -> int:
        """Local hour at the institution, +24 on its rest days (its business calendar)."""
        bucket = t // _SLOT_BUCKET_NS
        cached = self._slots.get(inst_id)
        if cached is not None and cached[0] == bucket:
            return cached[1]
        ctx = self.context
        if ctx is None:
            hours = t // 3_600_000_000_000 + self.cfg.utc_offset_hours
            slot = hours % 24 + (24 if (hours // 24 + 3) % 7 >= 5 else 0)
        else:
            slot = ctx.calendar(inst_id).slot(t)
        self._slots[inst_id] = (bucket, slot)
        return slot

    def _vulns(
        self,
        s: _System,
        rep: telemetry_pb2.ITPostureReport,
        inst_id: str,
        sys_id: str,
        core: bool,
        tier_grade: int,
        t: int,
        eid: str,
        emit: Emit,
    ) -> None:
        count = rep.unpatched_critical_vulns
        age = rep.oldest_unpatched_critical_days
        s.vulns_seen = (count, age, t)
        x = {"t": t / 1e9, "count": count, "age_days": age}
        score = s.vulns.score_one(x)
        if score < 1.0:
            s.vulns.learn_one(x)  # frozen while flagged: a backlog is never its new normal
            return
        overdue = count and age >= _VULN_OVERDUE_DAYS
        grade = _GRADE_UP.get(tier_grade, tier_grade) if overdue else tier_grade
        emit(
            Candidate(
                FAMILY,
                inst_id,
                "system",
                sys_id,
                "it.vuln_backlog",
                False,
                score,
                1.0,
                findings_pb2.GRADE_MAJOR if overdue and core else grade,
                f"{count} unpatched critical vulnerabilities in {sys_id}, the oldest {age} days "
                f"old (it usually has at most {s.vulns.usual_count:.0f}, none older than "
                f"{s.vulns.usual_age:.0f} days)",
                t,
                [eid],
                [
                    ("unpatched_critical_vulns", float(count), s.vulns.usual_count, 1.0),
                    ("oldest_unpatched_critical_days", float(age), s.vulns.usual_age, 1.0),
                ],
            )
        )

    def _regression(
        self,
        s: _System,
        rep: telemetry_pb2.ITPostureReport,
        inst_id: str,
        sys_id: str,
        changed: bool,
        held: bool,
        tier_grade: int,
        t: int,
        eid: str,
        emit: Emit,
    ) -> None:
        """Health against its level before the last inventory change; judgement is held over
        any window the institution declared for the system (a change, maintenance, a batch)."""
        det = s.regression
        if not changed and not det.watch:
            # One report in two makes the reference (a slot's mean spans days either way); what
            # the institution announced is not the system's normal either.
            if not held and s.n & 1:
                det.learn_normal(self._slot(inst_id, t), rep.error_rate, rep.latency_ms_p95)
            return
        x = {
            "slot": self._slot(inst_id, t),
            "error": rep.error_rate,
            "latency": rep.latency_ms_p95,
            "change": 1.0 if changed else 0.0,
            "hold": 1.0 if held else 0.0,
        }
        score = det.score_one(x)
        det.learn_one(x)
        if score < 1.0:
            return
        emit(
            Candidate(
                FAMILY,
                inst_id,
                "system",
                sys_id,
                "it.version_regression",
                False,
                score,
                1.0,
                _GRADE_UP.get(tier_grade, tier_grade) if score >= 2.0 else tier_grade,
                f"Health of {sys_id} worse since its inventory changed: error rate "
                f"{rep.error_rate:.2%}, p95 {rep.latency_ms_p95:.0f} ms, "
                f"{det.error_ratio(x):.1f}x and {det.latency_ratio(x):.1f}x their level before "
                f"the change at this hour",
                t,
                [eid],
                [
                    ("error_rate", rep.error_rate, rep.error_rate / det.error_ratio(x), 1.0),
                    (
                        "latency_ms_p95",
                        rep.latency_ms_p95,
                        rep.latency_ms_p95 / det.latency_ratio(x),
                        1.0,
                    ),
                ],
            )
        )

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
