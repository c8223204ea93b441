"""The vendor stage: fed only one vendor's facts it finds what one engine seeing every
institution finds (concentration, a shared outage), and stays quiet on coincidences."""

from __future__ import annotations

import pickle
from collections import defaultdict

import pytest
from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.logic.vendor_stage import VendorStage, vendor_fact_key
from suptech.v1 import findings_pb2
from suptech.v1 import telemetry_pb2 as T
from suptech.v1 import vendor_facts_pb2 as VF

S = 1_000_000_000
T0 = 1_790_000_000 * S
INTERVAL = 900
BANKS = 8
# Banks 0-5 run their core system on cloud Nimbus, which they cannot control; 6 and 7 on clouds
# of their own. Every core system runs CommonOS (controllable, so no concentration risk); the
# other systems run CrmOS on CrmCloud.
NIMBUS = range(6)


def cloud(bank: int, system: str) -> str:
    if system != "core":
        return "CrmCloud"
    return "Nimbus" if bank in NIMBUS else f"Cloud-{bank}"


def posture(
    bank: int, system: str, i: int, availability: float = 0.999, errors: float = 0.001
) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=f"p-{bank}-{system}-{i}", institution_id=f"bank-{bank}")
    env.event_time.FromNanoseconds(T0 + i * INTERVAL * S + bank * 20 * S + len(system) * S)
    c = cloud(bank, system)
    env.it_posture.CopyFrom(
        T.ITPostureReport(
            system_id=system,
            tier=T.SYSTEM_TIER_CORE if system == "core" else T.SYSTEM_TIER_GENERAL,
            availability=availability,
            latency_ms_p95=100.0,
            error_rate=errors,
            interval_seconds=INTERVAL,
            components=[
                T.Component(
                    layer=T.LAYER_CLOUD,
                    vendor=c,
                    product=c,
                    independently_controllable=c != "Nimbus",
                ),
                T.Component(
                    layer=T.LAYER_OS,
                    vendor="CommonOS" if system == "core" else "CrmOS",
                    product="OS",
                    independently_controllable=True,
                ),
            ],
        )
    )
    return env


def scenario() -> list[T.TelemetryEnvelope]:
    """Two days of reports from a core and a general system per bank, with the confounders:
    at report 60 banks 6 and 7 fail at the same time for reasons of their own (a shared OS is all
    they have in common); at reports 80-90 every system's health wobbles (availability 95%,
    errors 3%: the popular OS vendor under all of them); at report 120 Nimbus goes down for an
    hour (four reports), taking the core systems of banks 0-5 with it."""
    events = []
    for i in range(192):
        for bank in range(BANKS):
            for system in ("core", "crm"):
                kw: dict[str, float] = {}
                if i == 60 and bank in (6, 7):
                    kw = {"availability": 0.3}
                elif 80 <= i <= 90:
                    kw = {"availability": 0.95, "errors": 0.03}
                elif 120 <= i < 124 and bank in NIMBUS and system == "core":
                    kw = {"availability": 0.5}
                events.append(posture(bank, system, i, **kw))
    return events


def vendor_findings(fs: list[findings_pb2.Finding]) -> list[tuple[object, ...]]:
    return [
        (
            f.finding_id,
            f.rule_id,
            f.entity_id,
            f.grade,
            f.summary,
            tuple(f.related_institution_ids),
            f.event_time.ToNanoseconds(),
            tuple(f.evidence_event_ids),
        )
        for f in fs
        if f.rule_id.startswith("it.vendor")
    ]


def replay(
    engine: DetectionEngine, events: list[T.TelemetryEnvelope]
) -> list[findings_pb2.Finding]:
    out = []
    for env in events:
        out += engine.process(env)
    return out


def facts_by_key(events: list[T.TelemetryEnvelope]) -> dict[bytes, list[VF.VendorFact]]:
    """What a worker with the engine in external mode sends to the vendor topic: each fact under
    its key, a fact without one to every partition (here: every key's stream)."""
    engine = DetectionEngine(EngineConfig(external_vendor_stage=True))
    facts = []
    for env in events:
        found = engine.process(env)
        assert not vendor_findings(found)  # it decides no vendor finding itself
        facts += engine.take_vendor_facts()
    keys = {k for f in facts if (k := vendor_fact_key(f)) is not None}
    streams: dict[bytes, list[VF.VendorFact]] = defaultdict(list)
    for f in facts:
        key = vendor_fact_key(f)
        for k in keys if key is None else [key]:
            streams[k].append(f)
    return streams


def stage_findings(facts: list[VF.VendorFact], stage: VendorStage) -> list[findings_pb2.Finding]:
    return [finding for f in facts for finding in stage.findings(f)]


def test_one_vendors_facts_find_what_the_single_engine_finds() -> None:
    events = scenario()
    whole = vendor_findings(replay(DetectionEngine(), events))
    # The outage of Nimbus and its concentration, and nothing on the shared OS or the
    # coincidences beside them.
    assert [(r[1], r[2]) for r in whole] == [
        ("it.vendor_concentration", "Nimbus"),
        ("it.vendor_outage", "Nimbus"),
    ]
    outage = whole[1]
    assert outage[5] == tuple(f"bank-{b}" for b in NIMBUS)
    assert outage[3] == findings_pb2.GRADE_CRITICAL
    streams = facts_by_key(events)
    assert set(streams) == {b"Nimbus", b"CommonOS", b"CrmOS", b"CrmCloud", b"Cloud-6", b"Cloud-7"}
    by_stage = {k: vendor_findings(stage_findings(fs, VendorStage())) for k, fs in streams.items()}
    assert by_stage[b"Nimbus"] == whole
    # Six of the eight systems on CommonOS failed, but all on Nimbus: the blame is Nimbus's.
    assert all(by_stage[k] == [] for k in streams if k != b"Nimbus")
    common = VendorStage()
    stage_findings(streams[b"CommonOS"], common)
    assert "Nimbus" in common.vendors["CommonOS"].deferred


def test_coincidences_alone_make_no_vendor_finding() -> None:
    # Without the Nimbus outage: two unrelated outages at once, then the popular OS wobbling.
    events = [e for e in scenario() if not e.event_id.endswith(("-120", "-121", "-122", "-123"))]
    found = replay(DetectionEngine(), events)
    assert [(r[1], r[2]) for r in vendor_findings(found)] == [("it.vendor_concentration", "Nimbus")]
    # The coincidences were seen, as outages of their own systems.
    outages = {(f.institution_id, f.entity_id) for f in found if f.rule_id == "it.outage"}
    assert outages == {("bank-6", "core"), ("bank-7", "core")}
    for key, facts in facts_by_key(events).items():
        stage = VendorStage()
        assert [f.rule_id for f in stage_findings(facts, stage)] == (
            ["it.vendor_concentration"] if key == b"Nimbus" else []
        )


def test_stage_snapshot_round_trip_mid_outage_gives_the_same_findings() -> None:
    facts = facts_by_key(scenario())[b"Nimbus"]
    whole = vendor_findings(stage_findings(facts, VendorStage()))
    first_outage = next(i for i, f in enumerate(facts) if f.kind == VF.VENDOR_FACT_KIND_OUTAGE)
    stage = VendorStage()
    part = stage_findings(facts[: first_outage + 3], stage)
    blob = stage.snapshot()
    restored = VendorStage.restore(blob)
    assert restored.stats() == stage.stats() and restored.snapshot() == blob
    part += stage_findings(facts[first_outage + 3 :], restored)
    assert vendor_findings(part) == whole and len(whole) == 2
    with pytest.raises(ValueError, match="unknown version"):
        VendorStage.restore(blob.replace(b'"version":1', b'"version":99'))


def test_a_version_7_engine_snapshot_keeps_its_vendor_state() -> None:
    """An engine saved before the vendor stage (its IT-autonomy family held the vendor state)
    restores into the in-process stage: the outage under way is still blamed on Nimbus once."""
    events = scenario()
    whole = vendor_findings(replay(DetectionEngine(), events))
    cut = next(i for i, e in enumerate(events) if e.event_id == "p-0-core-121")
    engine = DetectionEngine()
    part = replay(engine, events[:cut])
    state = dict(engine.__dict__)
    state["_out"] = []
    stage = state.pop("vendor_stage")
    del state["_vendor_facts"]
    old = state["autonomy"]
    old.core_institutions = set(stage.core_institutions)
    old.vendor_core = {n: set(v.core) for n, v in stage.vendors.items() if v.core}
    old.vendor_flagged = {n: v.flagged for n, v in stage.vendors.items() if v.flagged}
    old.vendor_hits = {n: dict(v.hits) for n, v in stage.vendors.items() if v.hits}
    old.vendor_outages = {n: v.blamed_ns for n, v in stage.vendors.items() if v.blamed_ns >= 0}
    assert old.vendor_hits["Nimbus"] and not old.vendor_outages  # mid-outage, not yet blamed
    restored = DetectionEngine.restore(pickle.dumps((7, state)))
    assert not hasattr(restored.autonomy, "vendor_core")
    assert restored.stats()["vendors"] == 6 and restored.stats()["core_institutions"] == BANKS
    part += replay(restored, events[cut:])
    assert vendor_findings(part) == whole


def test_facts_of_an_unknown_version_are_refused_and_counted() -> None:
    facts = facts_by_key(scenario())[b"Nimbus"]
    stage = VendorStage()
    for f in facts:
        f.version = 2
        assert stage.findings(f) == []
    assert stage.stats()["vendor_facts_refused"] == len(facts)
    assert stage.stats()["vendors"] == 0
