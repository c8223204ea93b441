"""The cross-institution view of IT autonomy: one vendor behind many institutions.

A detector worker sees the institutions of its telemetry partitions only, so the IT-autonomy
family does not decide what needs every institution's inventory. It states *vendor facts*
(:class:`suptech.v1.vendor_facts_pb2.VendorFact`, one per vendor, keyed by the vendor with
:func:`vendor_fact_key`) and this stage decides from them:

* ``it.vendor_concentration``: the core systems of at least ``vendor_concentration_min``
  institutions, and ``vendor_concentration_share`` of the institutions with a core system,
  depend on the vendor for a component they cannot control; reported once per vendor and level
  (again only when the count more than doubles).
* ``it.vendor_outage``: systems of at least ``vendor_outage_min_institutions`` institutions that
  depend on the vendor were down within ``vendor_outage_window_ns``, and they are at least
  ``vendor_outage_coverage`` of the systems depending on it (its footprint, kept from inventory
  facts). The decision waits one report interval after the vendor's first failed system, so every
  system it serves has reported.

The stage for one vendor decides from that vendor's facts (plus the CORE_INSTITUTION facts every
partition receives: the market a concentration is a share of). A failed system's fact names all
its vendors, so the OS or the chips under a failed cloud are not blamed as well: a vendor whose
failed systems all use one co-vendor, and whose other systems do not (the co-vendor is narrower
among its systems), leaves the blame to that co-vendor, and ignores for a window the failures of
systems on it. A vendor whose every system uses the co-vendor cannot tell the two apart from its
own facts and is judged on its own.

Where this differs from one engine that saw every vendor (which blamed, per failed system, the
qualifying vendor with the largest share of its systems down): two vendors whose failures are
all on systems using both, each with other systems that did not fail, both leave the blame to
the other, and neither is blamed (one engine blamed the one with the higher share); and two
vendors that each qualify on failures the other does not explain are both blamed (one engine
blamed one per failed system). Telling these apart needs another vendor's footprint and
failures, which only that vendor's stage holds. On the simulator's scenarios the findings are
those of one engine.

Driven by event time only. :meth:`VendorStage.process` returns candidates (the engine reports
them through its own path when the stage runs inside it); a stage running on its own turns them
into findings with :meth:`VendorStage.findings`, which applies the engine's path for these
rule findings: verdicts (:meth:`VendorStage.apply_feedback`), coalescing and ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from suptech.detector.logic.candidate import SYSTEMIC_INSTITUTION, Candidate, to_finding
from suptech.detector.logic.config import DAY_NS, EngineConfig
from suptech.detector.logic.feedback import FeedbackMemory
from suptech.detector.logic.leakage import LeakageFamily
from suptech.v1 import alerts_pb2, findings_pb2, vendor_facts_pb2

__all__ = [
    "FACT_VERSION",
    "VendorStage",
    "core_institution_fact",
    "inventory_facts",
    "outage_facts",
    "vendor_fact_key",
]

FACT_VERSION = 1
# Version of snapshot(); restore() refuses any other.
STATE_VERSION = 1

FAMILY = findings_pb2.FAMILY_IT_AUTONOMY
VF = vendor_facts_pb2
Fact = vendor_facts_pb2.VendorFact
SystemKey = tuple[str, str]


def vendor_fact_key(fact: Fact) -> bytes | None:
    """Kafka key of a fact: its vendor, UTF-8; None for a fact every partition of the topic must
    receive (CORE_INSTITUTION: send it to each partition)."""
    if fact.kind == VF.VENDOR_FACT_KIND_CORE_INSTITUTION:
        return None
    return fact.vendor.encode()


def _fact(
    kind: vendor_facts_pb2.VendorFactKind, vendor: str, inst_id: str, sys_id: str, t: int, eid: str
) -> Fact:
    f = Fact(
        version=FACT_VERSION,
        kind=kind,
        vendor=vendor,
        institution_id=inst_id,
        system_id=sys_id,
        event_id=eid,
    )
    f.event_time.FromNanoseconds(t)
    return f


def core_institution_fact(inst_id: str, t: int, eid: str) -> Fact:
    """The institution has a core system (it counts towards every vendor's market share)."""
    return _fact(VF.VENDOR_FACT_KIND_CORE_INSTITUTION, "", inst_id, "", t, eid)


def inventory_facts(
    inst_id: str,
    sys_id: str,
    old: frozenset[str],
    new: frozenset[str],
    uncontrollable: frozenset[str] | None,
    t: int,
    eid: str,
) -> list[Fact]:
    """Facts of a system's changed inventory: the vendors it depends on now (``uncontrollable``:
    those a core system cannot control; None for a system that is not core) and those it no
    longer does. A core system's facts come after its institution's CORE_INSTITUTION fact."""
    vendors = sorted(new)
    out = [core_institution_fact(inst_id, t, eid)] if uncontrollable is not None else []
    for v in vendors:
        f = _fact(VF.VENDOR_FACT_KIND_SYSTEM, v, inst_id, sys_id, t, eid)
        f.system_vendors.extend(vendors)
        f.core_uncontrollable = uncontrollable is not None and v in uncontrollable
        out.append(f)
    out += [
        _fact(VF.VENDOR_FACT_KIND_RELEASE, v, inst_id, sys_id, t, eid) for v in sorted(old - new)
    ]
    return out


def outage_facts(
    inst_id: str, sys_id: str, vendors: frozenset[str], t: int, interval_s: int, eid: str
) -> list[Fact]:
    """Facts of a system down over its report interval, one per vendor it depends on."""
    names = sorted(vendors)
    out = []
    for v in names:
        f = _fact(VF.VENDOR_FACT_KIND_OUTAGE, v, inst_id, sys_id, t, eid)
        f.system_vendors.extend(names)
        f.interval_seconds = interval_s
        out.append(f)
    return out


class _Vendor:
    """What the stage knows of one vendor."""

    __slots__ = ("systems", "core", "flagged", "hits", "blamed_ns", "deferred", "last_ns")

    def __init__(self) -> None:
        # (institution, system) depending on it -> every vendor of that system
        self.systems: dict[SystemKey, frozenset[str]] = {}
        # institutions whose core systems depend on it for what they cannot control
        self.core: set[str] = set()
        # concentration level already reported (twice the count, as before)
        self.flagged = 0
        # (institution, system) -> (first, last) event time of its current outage
        self.hits: dict[SystemKey, tuple[int, int]] = {}
        # event time it was blamed for a shared outage (-1: never)
        self.blamed_ns = -1
        # co-vendor -> event time the blame was left to it
        self.deferred: dict[str, int] = {}
        self.last_ns = 0

    def empty(self) -> bool:
        return not (self.systems or self.core or self.hits)

    def encode(self) -> dict[str, Any]:
        return {
            "systems": [[i, s, sorted(vs)] for (i, s), vs in self.systems.items()],
            "core": sorted(self.core),
            "flagged": self.flagged,
            "hits": [[i, s, a, b] for (i, s), (a, b) in self.hits.items()],
            "blamed_ns": self.blamed_ns,
            "deferred": self.deferred,
            "last_ns": self.last_ns,
        }

    @classmethod
    def decode(cls, d: dict[str, Any]) -> _Vendor:
        v = cls()
        v.systems = {(i, s): frozenset(vs) for i, s, vs in d["systems"]}
        v.core = set(d["core"])
        v.flagged = int(d["flagged"])
        v.hits = {(i, s): (int(a), int(b)) for i, s, a, b in d["hits"]}
        v.blamed_ns = int(d["blamed_ns"])
        v.deferred = {k: int(x) for k, x in d["deferred"].items()}
        v.last_ns = int(d["last_ns"])
        return v


class VendorStage:
    """Vendor concentration and shared-vendor outages from vendor facts; see the module.

    >>> stage = VendorStage()
    >>> facts = []
    >>> for b in range(5):
    ...     facts += inventory_facts(f"bank-{b}", "core", frozenset(), frozenset({"AWS"}),
    ...                              frozenset({"AWS"}), t=b, eid=f"e{b}")
    >>> found = [c for f in facts for c in stage.process(f)]
    >>> [(c.detector_id, c.entity_id, c.related[-1]) for c in found]
    [('it.vendor_concentration', 'AWS', 'bank-4')]
    >>> found[0].summary
    'Core systems of 5 institutions (100%) depend on vendor AWS'
    >>> stage.stats()["vendors"]
    1
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.cfg = config or EngineConfig()
        self.vendors: dict[str, _Vendor] = {}
        # Institutions with a core system whose inventory was reported.
        self.core_institutions: set[str] = set()
        # For findings(), on its own: verdicts, coalescing and the latest fact time.
        self.feedback = FeedbackMemory()
        self._coalesced: dict[tuple[str, str, str], int] = {}
        self._pruned_window = 0
        self._max_ns = 0
        self._watermark_ns = 0
        self._evicted_day = 0
        self.evicted = 0
        self.refused = 0

    def stats(self) -> dict[str, int]:
        return {
            "vendors": len(self.vendors),
            "vendor_systems": sum(len(v.systems) for v in self.vendors.values()),
            "core_institutions": len(self.core_institutions),
            "vendors_evicted": self.evicted,
            "vendor_facts_refused": self.refused,
        }

    def process(self, fact: Fact) -> list[Candidate]:
        """Take one fact; return the findings it makes, as candidates."""
        if fact.version != FACT_VERSION:
            self.refused += 1
            return []
        t = fact.event_time.seconds * 1_000_000_000 + fact.event_time.nanos
        self._max_ns = max(self._max_ns, t)
        kind = fact.kind
        if kind == VF.VENDOR_FACT_KIND_CORE_INSTITUTION:
            self.core_institutions.add(fact.institution_id)
            return []
        if not fact.vendor:
            self.refused += 1
            return []
        v = self.vendors.get(fact.vendor)
        if v is None:
            v = self.vendors[fact.vendor] = _Vendor()
        v.last_ns = max(v.last_ns, t)
        key = (fact.institution_id, fact.system_id)
        if kind == VF.VENDOR_FACT_KIND_SYSTEM:
            v.systems[key] = frozenset(fact.system_vendors) | {fact.vendor}
            if fact.core_uncontrollable:
                return self._concentration(fact.vendor, v, fact.institution_id, t, fact.event_id)
        elif kind == VF.VENDOR_FACT_KIND_RELEASE:
            v.systems.pop(key, None)
        elif kind == VF.VENDOR_FACT_KIND_OUTAGE:
            return self._outage(fact, v, key, t)
        else:
            self.refused += 1
        return []

    def _concentration(
        self, name: str, v: _Vendor, inst_id: str, t: int, eid: str
    ) -> list[Candidate]:
        cfg = self.cfg
        v.core.add(inst_id)
        self.core_institutions.add(inst_id)
        n = len(v.core)
        market = len(self.core_institutions)
        share = n / market
        if (
            n < cfg.vendor_concentration_min
            or share < cfg.vendor_concentration_share
            or n <= v.flagged
            or market < cfg.vendor_concentration_min
        ):
            return []
        # Once per vendor and level: a larger concentration is news, the same one is not.
        v.flagged = n * 2
        return [
            Candidate(
                FAMILY,
                SYSTEMIC_INSTITUTION,
                "vendor",
                name,
                "it.vendor_concentration",
                True,
                float(n),
                float(cfg.vendor_concentration_min),
                findings_pb2.GRADE_SIGNIFICANT,
                f"Core systems of {n} institutions ({share:.0%}) depend on vendor {name}",
                t,
                [eid],
                [("institutions", float(n), 0.0, 1.0)],
                related=sorted(v.core),
                basis=str(n),
            )
        ]

    def _outage(self, fact: Fact, v: _Vendor, key: SystemKey, t: int) -> list[Candidate]:
        cfg = self.cfg
        window = cfg.vendor_outage_window_ns
        name = fact.vendor
        others = [w for w in fact.system_vendors if w != name]
        # Blamed already, or left to a co-vendor of this system: that explains it too.
        if t - v.blamed_ns <= window and v.blamed_ns >= 0:
            return []
        if any(t - v.deferred.get(w, t - window - 1) <= window for w in others):
            return []
        hits = v.hits
        seen = hits.get(key)
        hits[key] = (t, t) if seen is None or t - seen[1] > window else (seen[0], t)
        for k in [k for k, (_, last) in hits.items() if t - last > window]:
            del hits[k]
        insts = sorted({i for i, _ in hits})
        if len(insts) < cfg.vendor_outage_min_institutions:
            return []
        if t - min(first for first, _ in hits.values()) < fact.interval_seconds * 1_000_000_000:
            return []
        coverage = len(hits) / max(len(v.systems), 1)
        if coverage < cfg.vendor_outage_coverage:
            return []
        culprits = self._narrower(v, others)
        if culprits:
            for w in culprits:
                v.deferred[w] = t
            return []
        v.blamed_ns = t
        return [
            Candidate(
                FAMILY,
                SYSTEMIC_INSTITUTION,
                "vendor",
                name,
                "it.vendor_outage",
                True,
                float(len(insts)),
                float(cfg.vendor_outage_min_institutions),
                findings_pb2.GRADE_CRITICAL,
                f"Systems of {len(insts)} institutions depending on vendor {name} failed "
                f"within {window // 60_000_000_000} minutes ({len(hits)} systems, "
                f"{coverage:.0%} of those using it)",
                t,
                [fact.event_id],
                [("institutions", float(len(insts)), 0.0, 1.0)],
                related=insts,
            )
        ]

    @staticmethod
    def _narrower(v: _Vendor, others: Iterable[str]) -> list[str]:
        """Co-vendors every failed system uses and some of the vendor's systems do not: the
        failures follow them, not the vendor."""
        failed = [v.systems.get(k, frozenset()) for k in v.hits]
        return [
            w
            for w in others
            if all(w in vs for vs in failed)
            and sum(1 for vs in v.systems.values() if w in vs) < len(v.systems)
        ]

    def findings(self, fact: Fact) -> list[findings_pb2.Finding]:
        """:meth:`process`, then the engine's path for its rule findings: a verdict's grade
        boost, one finding per vendor, detector and level or coalescing window, the same ids."""
        out = []
        for c in self.process(fact):
            judged = self.feedback.judge(c)
            if judged is None:
                continue
            window = judged.event_time_ns // self.cfg.coalesce_window_ns
            basis = judged.basis if judged.basis is not None else f"w{window}"
            key = (judged.detector_id, judged.entity_id, basis)
            if key in self._coalesced:
                continue
            self._coalesced[key] = window
            finding = to_finding(judged, basis, self._max_ns, self.cfg.evidence_cap)
            self.feedback.remember(finding)
            out.append(finding)
        return out

    def apply_feedback(self, fb: alerts_pb2.Feedback) -> bool:
        """A supervisor's verdict on a vendor finding (institution ``*``); see ``feedback``."""
        if fb.family != FAMILY or fb.institution_id != SYSTEMIC_INSTITUTION:
            self.feedback.n_ignored += 1
            return False
        return self.feedback.apply(fb, self._max_ns, LeakageFamily(self.cfg))

    def advance(self, watermark_ns: int) -> None:
        """Once per event-time day: forget outage state older than ``idle_evict_ns``, and vendors
        nothing depends on any more; prune the coalescing memory."""
        self._watermark_ns = max(self._watermark_ns, watermark_ns)
        # Late facts land at most a window back; older coalescing keys can go (as the engine's).
        horizon = (watermark_ns - 2 * self.cfg.coalesce_window_ns) // self.cfg.coalesce_window_ns
        if horizon > self._pruned_window:
            self._pruned_window = horizon
            self._coalesced = {k: w for k, w in self._coalesced.items() if w >= horizon}
        if watermark_ns // DAY_NS <= self._evicted_day:
            return
        self._evicted_day = watermark_ns // DAY_NS
        idle_since = watermark_ns - max(self.cfg.idle_evict_ns, self.cfg.vendor_outage_window_ns)
        for name in list(self.vendors):
            v = self.vendors[name]
            v.hits = {k: h for k, h in v.hits.items() if h[1] >= idle_since}
            v.deferred = {w: d for w, d in v.deferred.items() if d >= idle_since}
            if v.empty() and v.last_ns < idle_since:
                del self.vendors[name]
                self.evicted += 1

    def snapshot(self) -> bytes:
        """The stage's state as versioned JSON (no code runs when it is read back)."""
        fb = self.feedback
        state = {
            "version": STATE_VERSION,
            "core_institutions": sorted(self.core_institutions),
            "vendors": {name: v.encode() for name, v in sorted(self.vendors.items())},
            "coalesced": [[d, e, b, w] for (d, e, b), w in self._coalesced.items()],
            "pruned_window": self._pruned_window,
            "max_ns": self._max_ns,
            "watermark_ns": self._watermark_ns,
            "evicted_day": self._evicted_day,
            "evicted": self.evicted,
            "refused": self.refused,
            "feedback": {
                "boosts": [[*k, u] for k, u in fb.boosts.items()],
                "applied": [list(k) for k in fb.applied],
                "counts": [fb.n_applied, fb.n_ignored, fb.n_muted],
            },
        }
        return json.dumps(state, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, blob: bytes, config: EngineConfig | None = None) -> VendorStage:
        """Rebuild a stage from :meth:`snapshot`; ValueError for a version it cannot read (the
        caller starts that state cold)."""
        state = json.loads(blob)
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("vendor stage state of an unknown version")
        stage = cls(config)
        stage.core_institutions = set(state["core_institutions"])
        stage.vendors = {name: _Vendor.decode(d) for name, d in state["vendors"].items()}
        stage._coalesced = {(d, e, b): int(w) for d, e, b, w in state["coalesced"]}
        stage._pruned_window = int(state["pruned_window"])
        stage._max_ns = int(state["max_ns"])
        stage._watermark_ns = int(state["watermark_ns"])
        stage._evicted_day = int(state["evicted_day"])
        stage.evicted = int(state["evicted"])
        stage.refused = int(state["refused"])
        fb = state["feedback"]
        stage.feedback.boosts = {(d, i, k, e): int(u) for d, i, k, e, u in fb["boosts"]}
        stage.feedback.applied = {(a, int(vd)): None for a, vd in fb["applied"]}
        stage.feedback.n_applied, stage.feedback.n_ignored, stage.feedback.n_muted = fb["counts"]
        return stage

    @classmethod
    def from_legacy(
        cls,
        config: EngineConfig,
        systems: dict[SystemKey, frozenset[str]],
        core_institutions: set[str],
        vendor_core: dict[str, set[str]],
        vendor_flagged: dict[str, int],
        vendor_hits: dict[str, dict[SystemKey, tuple[int, int]]],
        vendor_outages: dict[str, int],
    ) -> VendorStage:
        """The stage holding what an IT-autonomy family decided vendors with before this stage
        (engine snapshots up to version 7)."""
        stage = cls(config)
        stage.core_institutions = set(core_institutions)

        def vendor(name: str) -> _Vendor:
            return stage.vendors.setdefault(name, _Vendor())

        for key, vendors in systems.items():
            for name in vendors:
                vendor(name).systems[key] = vendors
        for name, insts in vendor_core.items():
            vendor(name).core = set(insts)
        for name, level in vendor_flagged.items():
            vendor(name).flagged = level
        for name, hits in vendor_hits.items():
            vendor(name).hits = dict(hits)
        for name, t in vendor_outages.items():
            vendor(name).blamed_ns = t
            # Its blame explained the failures of every system on it, for every vendor of them.
            for vendors in [vs for vs in systems.values() if name in vs]:
                for other in vendors - {name}:
                    deferred = vendor(other).deferred
                    deferred[name] = max(deferred.get(name, t), t)
        return stage
