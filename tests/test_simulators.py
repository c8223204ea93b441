"""The simulated fleet: reproducible, rhythmic, and every injected incident visible in its data."""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from suptech.v1 import telemetry_pb2 as tpb

from simulators.clock import HOUR_US, local_hour, local_weekday, parse_start
from simulators.incidents import FAMILIES, KINDS, GroundTruth, select_kinds
from simulators.scenario import Scenario, generate, write

Timed = list[tuple[int, tpb.TelemetryEnvelope]]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(seed=11, days=2, scale=0.25, incidents="all")


@pytest.fixture(scope="module")
def timed(scenario: Scenario) -> Timed:
    return list(scenario.timed_envelopes())


def _truth(scenario: Scenario, kind: str) -> GroundTruth:
    (gt,) = [g for g in scenario.ground_truth if g.kind == kind]
    return gt


def _inside(t: int, gt: GroundTruth) -> bool:
    return gt.start_us <= t <= gt.end_us


def _vendor_outage(scenario: Scenario, t: int, system_id: str) -> bool:
    """Whether an outage that spreads beyond its own entity (shared vendor, cascade) covers
    ``system_id`` at ``t``: a system may be hit by another incident than the one under test."""
    for kind in ("shared_vendor_outage", "outage_cascade"):
        gt = _truth(scenario, kind)
        if _inside(t, gt) and system_id in gt.extra["affected_systems"]:
            return True
    return False


def _access_of(timed: Timed, actor: str) -> Timed:
    return [(t, e) for t, e in timed if e.data_access.actor_pseudonym == actor]


def _posture_of(timed: Timed, system_id: str) -> Timed:
    return [(t, e) for t, e in timed if e.it_posture.system_id == system_id]


def _sandbox_of(timed: Timed, test_id: str) -> Timed:
    return [(t, e) for t, e in timed if e.sandbox.test_id == test_id]


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(generate(seed=5, days=1, scale=0.05, incidents="all"), a)
    write(generate(seed=5, days=1, scale=0.05, incidents="all"), b)
    for name in ("telemetry.jsonl", "ground_truth.jsonl", "sandbox_registry.jsonl", "fleet.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # Another seed: another fleet (vendors, rates, apps) and other incident targets, not merely
    # other event ids.
    mine = generate(seed=5, days=1, scale=0.05, incidents="all")
    other = generate(seed=6, days=1, scale=0.05, incidents="all")

    def content(scen: Scenario) -> list[bytes]:
        out = []
        for env in itertools.islice(scen.envelopes(), 3000):
            env.event_id = ""
            out.append(env.SerializeToString())
        return out

    assert content(mine) != content(other)
    assert [g.entity_id for g in mine.ground_truth] != [g.entity_id for g in other.ground_truth]
    assert mine.registry != other.registry


def test_files_have_the_documented_shape(tmp_path: Path) -> None:
    scen = generate(seed=2, days=1, scale=0.05, incidents="family:sandbox,bulk_export_offhours")
    write(scen, tmp_path)
    lines = (tmp_path / "telemetry.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert {"eventId", "institutionId", "eventTime"} <= set(first)
    times = [datetime.fromisoformat(json.loads(x)["eventTime"]) for x in lines[:5000]]
    assert times == sorted(times)
    truth = [json.loads(x) for x in (tmp_path / "ground_truth.jsonl").read_text().splitlines()]
    assert {t["kind"] for t in truth} == set(select_kinds("family:sandbox")) | {
        "bulk_export_offhours"
    }
    for t in truth:
        assert t["start"].endswith("Z") and t["end"] >= t["start"]
        assert t["family"] in FAMILIES and isinstance(t["benign"], bool)
    registry = (tmp_path / "sandbox_registry.jsonl").read_text().splitlines()
    assert len(registry) == 18 and "userCap" in json.loads(registry[0])
    fleet = json.loads((tmp_path / "fleet.json").read_text())
    assert len(fleet["institutions"]) == 12


def test_incident_selection_rejects_unknown_names() -> None:
    assert select_kinds("none") == []
    assert len(select_kinds("all")) == len(KINDS)
    with pytest.raises(ValueError, match="unknown incident kind"):
        select_kinds("bulk_export,nonsense")
    with pytest.raises(ValueError, match="unknown incident family"):
        select_kinds("family:weather")


def test_every_envelope_is_sane(scenario: Scenario, timed: Timed) -> None:
    institutions = {i.institution_id for i in scenario.fleet.institutions}
    ids = set()
    last = 0
    for t, env in timed:
        assert env.event_id and env.institution_id in institutions
        assert env.WhichOneof("payload") is not None
        assert env.event_time.ToMicroseconds() == t >= last
        assert scenario.start_us <= t < scenario.end_us
        last = t
        ids.add(env.event_id)
    assert len(ids) == len(timed)
    kinds = Counter(env.WhichOneof("payload") for _, env in timed)
    assert set(kinds) == {"data_access", "it_posture", "sandbox", "heartbeat"}


def test_every_kind_has_ground_truth_with_telemetry_entity_ids(
    scenario: Scenario, timed: Timed
) -> None:
    assert [g.kind for g in scenario.ground_truth] == list(KINDS)
    per_family = Counter(g.family for g in scenario.ground_truth)
    assert all(per_family[f] >= 4 for f in FAMILIES)
    assert [g.kind for g in scenario.ground_truth if g.benign] == ["latency_regime_shift"]
    actors = {e.data_access.actor_pseudonym for _, e in timed}
    systems = {e.it_posture.system_id for _, e in timed}
    tests = {e.sandbox.test_id for _, e in timed}
    apps = {e.heartbeat.source_id for _, e in timed}
    vendors = {c.vendor for _, e in timed for c in e.it_posture.components}
    known = {"actor": actors, "system": systems, "test": tests, "app": apps, "vendor": vendors}
    for g in scenario.ground_truth:
        assert g.entity_id in known[g.entity_kind], g.kind
        assert scenario.start_us <= g.start_us < g.end_us <= scenario.end_us


def test_weekday_business_hours_are_far_busier_than_nights(
    scenario: Scenario, timed: Timed
) -> None:
    culprits = {g.entity_id for g in scenario.ground_truth}
    per_hour: Counter[tuple[int, int]] = Counter()
    for t, env in timed:
        if env.WhichOneof("payload") == "data_access":
            if env.data_access.actor_pseudonym not in culprits:
                per_hour[((t + 8 * HOUR_US) // (24 * HOUR_US), local_hour(t))] += 1
    busy = [n for (_, h), n in per_hour.items() if 10 <= h <= 16 and h != 12]
    night = [per_hour.get((d, h), 0) for d in {d for d, _ in per_hour} for h in (3, 4, 5)]
    assert statistics.mean(busy) > 8 * max(1.0, statistics.mean(night))


def test_bulk_export_is_a_long_off_hours_burst_far_above_normal(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "bulk_export_offhours")
    mine = _access_of(timed, gt.entity_id)
    burst = [e.data_access for t, e in mine if _inside(t, gt)]
    normal = [e.data_access for t, e in mine if not _inside(t, gt)]
    assert len(burst) >= 1500 and all(1 <= local_hour(t) <= 4 for t, e in mine if _inside(t, gt))
    assert statistics.median(d.records for d in burst) > 20 * statistics.median(
        d.records for d in normal
    )
    exports = [d for d in burst if d.destination_kind == tpb.DESTINATION_KIND_EXTERNAL]
    assert len(exports) >= 1500 and len({d.destination_pseudonym for d in exports}) == 1
    # Over 1000 of the actor's events in a row belong to the burst.
    assert mine.index(next(x for x in mine if _inside(x[0], gt))) + 1500 <= len(mine)


def test_slow_drip_goes_to_a_destination_never_seen_before(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "slow_drip_exfiltration")
    drip = [e.data_access for t, e in _access_of(timed, gt.entity_id) if _inside(t, gt)]
    leaks = [d for d in drip if d.destination_kind == tpb.DESTINATION_KIND_EXTERNAL]
    dests = {d.destination_pseudonym for d in leaks}
    assert len(dests) >= 1 and sum(d.records for d in leaks if d.records >= 100) >= 300
    before = {e.data_access.destination_pseudonym for t, e in timed if t < gt.start_us}
    assert dests - before


def test_partner_scraping_is_many_times_the_partners_normal_rate(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "partner_api_scraping")
    mine = _access_of(timed, gt.entity_id)
    inside = [e for t, e in mine if _inside(t, gt)]
    hours = (gt.end_us - gt.start_us) / HOUR_US
    outside_weekday = [
        e for t, e in mine if not _inside(t, gt) and local_weekday(t) < 5 and 9 <= local_hour(t)
    ]
    assert len(inside) >= 1200
    assert len(inside) / hours > 10 * max(1, len(outside_weekday)) / 9
    assert {e.data_access.channel for e in inside} == {tpb.CHANNEL_PARTNER}


def test_cross_border_transfer_moves_personal_data_abroad(scenario: Scenario, timed: Timed) -> None:
    gt = _truth(scenario, "cross_border_transfer")
    moved = [
        e
        for t, e in _access_of(timed, gt.entity_id)
        if _inside(t, gt) and e.data_access.destination_kind == tpb.DESTINATION_KIND_CROSS_BORDER
    ]
    assert len(moved) >= 20
    for e in moved:
        assert e.data_access.destination_country not in ("", "HK")
        assert e.data_access.fields.c2 > 0 and e.data_access.records >= 1000
        assert e.classification.data_class == tpb.DATA_CLASS_C2


def test_c3_data_leaves_the_institution_only_in_the_incident(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "c3_auth_data_exfil")
    c3_out = [
        (t, e)
        for t, e in timed
        if e.data_access.fields.c3 > 0
        and e.data_access.destination_kind != tpb.DESTINATION_KIND_INTERNAL
    ]
    assert len(c3_out) >= 10
    assert all(e.data_access.actor_pseudonym == gt.entity_id and _inside(t, gt) for t, e in c3_out)
    assert all(e.classification.data_class == tpb.DATA_CLASS_C3 for _, e in c3_out)


def _db_controllable(env: tpb.TelemetryEnvelope) -> bool:
    (db,) = [c for c in env.it_posture.components if c.layer == tpb.LAYER_DATABASE]
    return db.independently_controllable


def test_controllability_regression_swaps_the_database(scenario: Scenario, timed: Timed) -> None:
    gt = _truth(scenario, "controllability_regression")
    reports = _posture_of(timed, gt.entity_id)
    assert all(_db_controllable(e) for t, e in reports if t < gt.start_us)
    after = [e for t, e in reports if t >= gt.start_us]
    assert after and not any(_db_controllable(e) for e in after)
    assert reports[0][1].it_posture.tier == tpb.SYSTEM_TIER_CORE


def test_new_uncontrollable_component_appears_in_a_core_system(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "new_uncontrollable_component")
    reports = _posture_of(timed, gt.entity_id)

    def foreign(env: tpb.TelemetryEnvelope) -> set[str]:
        return {c.product for c in env.it_posture.components if not c.independently_controllable}

    before = set().union(*(foreign(e) for t, e in reports if t < gt.start_us))
    after = [foreign(e) for t, e in reports if t >= gt.start_us]
    assert after and all(a - before for a in after)


def test_outage_cascade_takes_down_the_origin_then_its_dependents(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "outage_cascade")
    origin = _posture_of(timed, gt.entity_id)
    assert min(e.it_posture.availability for t, e in origin if _inside(t, gt)) < 0.5
    assert (
        min(
            e.it_posture.availability
            for t, e in origin
            if not _inside(t, gt) and not _vendor_outage(scenario, t, gt.entity_id)
        )
        > 0.99
    )
    assert any(e.it_posture.incidents for t, e in origin if _inside(t, gt))
    for system_id in gt.extra["affected_systems"]:
        hit = [
            e.it_posture.availability for t, e in _posture_of(timed, system_id) if _inside(t, gt)
        ]
        assert min(hit) < 0.95


def test_shared_vendor_outage_hits_several_institutions_at_once(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "shared_vendor_outage")
    down = {
        e.institution_id
        for t, e in timed
        if _inside(t, gt)
        and e.it_posture.availability < 0.8
        and any(c.vendor == gt.entity_id for c in e.it_posture.components)
    }
    assert len(down) >= 3 and down == set(gt.extra["affected_institutions"])


def test_benign_latency_shift_is_permanent_and_nothing_else_changes(
    scenario: Scenario, timed: Timed
) -> None:
    gt = _truth(scenario, "latency_regime_shift")
    assert gt.benign
    reports = _posture_of(timed, gt.entity_id)

    def busy(after: bool) -> list[float]:
        return [
            e.it_posture.latency_ms_p95
            for t, e in reports
            if (t >= gt.start_us) == after and 10 <= local_hour(t) <= 16
        ]

    assert statistics.median(busy(True)) > 1.4 * statistics.median(busy(False))
    assert (
        min(
            e.it_posture.availability
            for t, e in reports
            if t >= gt.start_us and not _vendor_outage(scenario, t, gt.entity_id)
        )
        > 0.99
    )


def _test_of(scenario: Scenario, test_id: str) -> object:
    (test,) = [t for t in scenario.registry if t.test_id == test_id]
    return test


def test_sandbox_boundaries_hold_except_where_an_incident_breaks_them(
    scenario: Scenario, timed: Timed
) -> None:
    caps = {t.test_id: t for t in scenario.registry}
    breaches: dict[str, set[str]] = {}
    for _, e in timed:
        if e.WhichOneof("payload") != "sandbox":
            continue
        m, cap = e.sandbox, caps[e.sandbox.test_id]
        if m.cumulative_users > cap.user_cap:
            breaches.setdefault("user_cap_breach", set()).add(m.test_id)
        if m.max_transaction_amount_fen > cap.single_amount_cap_fen:
            breaches.setdefault("amount_cap_breach", set()).add(m.test_id)
        if set(m.features_in_use) - set(cap.approved_features):
            breaches.setdefault("scope_creep", set()).add(m.test_id)
        if m.fund_loss_fen:
            breaches.setdefault("fund_loss", set()).add(m.test_id)
    expected = {
        k: {_truth(scenario, k).entity_id}
        for k in ("user_cap_breach", "amount_cap_breach", "scope_creep", "fund_loss")
    }
    assert breaches == expected
    for kind in expected:
        gt = _truth(scenario, kind)
        reports = _sandbox_of(timed, gt.entity_id)
        assert any(_inside(t, gt) for t, _ in reports)


def test_amount_breach_also_passes_the_daily_cap(scenario: Scenario, timed: Timed) -> None:
    gt = _truth(scenario, "amount_cap_breach")
    cap = next(t for t in scenario.registry if t.test_id == gt.entity_id)
    day = gt.start_us - (gt.start_us + 8 * HOUR_US) % (24 * HOUR_US)
    total = sum(
        e.sandbox.transaction_amount_fen
        for t, e in _sandbox_of(timed, gt.entity_id)
        if day <= t < day + 24 * HOUR_US
    )
    assert total > cap.daily_amount_cap_fen
    for test in scenario.registry:
        if test.test_id == gt.entity_id:
            continue
        per_day: Counter[int] = Counter()
        for t, e in _sandbox_of(timed, test.test_id):
            per_day[(t + 8 * HOUR_US) // (24 * HOUR_US)] += e.sandbox.transaction_amount_fen
        assert max(per_day.values(), default=0) < test.daily_amount_cap_fen


def test_complaint_surge_is_tenfold(scenario: Scenario, timed: Timed) -> None:
    gt = _truth(scenario, "complaint_surge")
    reports = _sandbox_of(timed, gt.entity_id)
    inside = [e.sandbox.complaints for t, e in reports if _inside(t, gt)]
    outside = [e.sandbox.complaints for t, e in reports if not _inside(t, gt)]
    assert statistics.mean(inside) > 5 * max(0.5, statistics.mean(outside))


def test_silent_app_stops_metrics_and_heartbeats(scenario: Scenario, timed: Timed) -> None:
    gt = _truth(scenario, "silent_app")
    assert gt.entity_kind == "app"
    mine = [
        t
        for t, e in timed
        if e.sandbox.app_id == gt.entity_id or e.heartbeat.source_id == gt.entity_id
    ]
    assert mine and max(mine) < gt.start_us
    assert gt.start_us - max(mine) <= 3600 * 1_000_000


def test_start_time_and_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        parse_start("2026-11-02T00:00:00")
    with pytest.raises(ValueError, match="days"):
        generate(days=0)
    with pytest.raises(ValueError, match="scale"):
        generate(scale=0)
