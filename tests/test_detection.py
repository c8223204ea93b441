"""The detection engine on small synthetic streams: hard rules, warm-up, bursts, replays."""

from __future__ import annotations

import random

from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.replay import replay
from suptech.v1 import findings_pb2, sandbox_pb2
from suptech.v1 import telemetry_pb2 as T

S = 1_000_000_000
T0 = 1_790_000_000 * S  # a Monday-ish epoch in 2026; office hours below are UTC+8
HOUR = 3600 * S


def access(
    n: int,
    t: int,
    actor: str = "a" * 64,
    records: int = 3,
    op: int = T.OPERATION_QUERY,
    dest: int = T.DESTINATION_KIND_INTERNAL,
    dest_id: str = "",
    c3: int = 0,
    inst: str = "bank-1",
) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=f"e{n}", institution_id=inst)
    env.event_time.FromNanoseconds(t)
    env.data_access.CopyFrom(
        T.DataAccessEvent(
            system_id="core",
            actor_pseudonym=actor,
            channel=T.CHANNEL_CONSOLE,
            operation=op,
            records=records,
            bytes_out=records * 500,
            destination_kind=dest,
            destination_pseudonym=dest_id,
            fields=T.FieldsByClass(c2=2, c3=c3),
        )
    )
    return env


def office_stream(days: int = 3, start_n: int = 0) -> list[T.TelemetryEnvelope]:
    """An employee querying a few records every 10 minutes in office hours (UTC+8 09-18)."""
    rng = random.Random(5)
    out = []
    n = start_n
    for d in range(days):
        for m in range(0, 9 * 60, 10):
            t = T0 + d * 24 * HOUR + HOUR + m * 60 * S  # 01:00 UTC = 09:00 local
            out.append(access(n, t, records=rng.randint(1, 6)))
            n += 1
    return out


def run(events: list[T.TelemetryEnvelope], engine: DetectionEngine | None = None) -> list[str]:
    return [f.rule_id or f.model_id for f in replay(events, engine=engine)]


def ids(events: list[T.TelemetryEnvelope], **kw: object) -> list[str]:
    return [f.finding_id for f in replay(events, engine=DetectionEngine(EngineConfig(**kw)))]


def test_c3_leaving_the_institution_is_critical_and_internal_c3_is_not() -> None:
    base = office_stream(1)
    t = base[-1].event_time.ToNanoseconds() + 60 * S
    out = replay(
        [
            *base,
            access(
                9000,
                t,
                records=10,
                op=T.OPERATION_EXPORT,
                dest=T.DESTINATION_KIND_EXTERNAL,
                dest_id="ff" * 32,
                c3=2,
            ),
        ]
    )
    c3 = [f for f in out if f.rule_id == "leak.c3_outbound"]
    assert len(c3) == 1 and c3[0].grade == findings_pb2.GRADE_CRITICAL
    assert c3[0].evidence_event_ids == ["e9000"]
    inside = replay([*base, access(9000, t, records=10, c3=2)])
    assert not [f for f in inside if f.rule_id == "leak.c3_outbound"]


def test_new_cross_border_destination_after_warmup_only() -> None:
    base = office_stream(2)
    t = base[-1].event_time.ToNanoseconds() + 60 * S
    xb = access(
        9000,
        t,
        records=40,
        op=T.OPERATION_TRANSFER,
        dest=T.DESTINATION_KIND_CROSS_BORDER,
        dest_id="ab" * 32,
    )
    assert "leak.new_destination" in run([*base, xb])
    # Within the institution's first day nothing is "new" yet: it is learning what is normal.
    early = access(
        9000,
        T0 + 2 * HOUR,
        records=40,
        op=T.OPERATION_TRANSFER,
        dest=T.DESTINATION_KIND_CROSS_BORDER,
        dest_id="ab" * 32,
    )
    assert "leak.new_destination" not in run([*office_stream(1), early])


def test_warmup_suppresses_early_alerts() -> None:
    # A 5000-record export as the very first moves of a brand new actor: no per-actor alert.
    events = [
        access(i, T0 + HOUR + i * 60 * S, records=5000, op=T.OPERATION_EXPORT) for i in range(5)
    ]
    assert "leak.actor_volume" not in run(events)


def bulk_burst(n_events: int, start_n: int, t0: int) -> list[T.TelemetryEnvelope]:
    return [
        access(
            start_n + i,
            t0 + i * 2 * S,
            records=2000 + (i % 7) * 100,
            op=T.OPERATION_EXPORT,
            dest=T.DESTINATION_KIND_PARTNER,
            dest_id="cd" * 32,
        )
        for i in range(n_events)
    ]


def with_exports(days: int) -> list[T.TelemetryEnvelope]:
    base = office_stream(days)
    # Normal habit: a 40-record export to the partner twice a day.
    extra = [
        access(
            5000 + d * 2 + k,
            T0 + d * 24 * HOUR + HOUR + (2 + 4 * k) * HOUR + 30 * S,
            records=40 + k,
            op=T.OPERATION_EXPORT,
            dest=T.DESTINATION_KIND_PARTNER,
            dest_id="cd" * 32,
        )
        for d in range(days)
        for k in range(2)
    ]
    return sorted(base + extra, key=lambda e: e.event_time.ToNanoseconds())


def test_1500_event_burst_is_flagged_through_its_end() -> None:
    base = with_exports(6)
    t0 = base[-1].event_time.ToNanoseconds() + HOUR
    burst = bulk_burst(1500, 20_000, t0)
    engine = DetectionEngine(EngineConfig(coalesce_window_ns=HOUR // 2))
    replay(base, engine=engine)
    flagged = [bool(engine.process(e)) or False for e in burst]
    actor = engine.leakage.actors[("bank-1", "a" * 64)]
    x = {"records": 8.0, "bytes": 14.0}
    assert actor.move is not None
    # Not learned as normal: the last event of the burst still scores far above threshold,
    # and a finding opened in each coalescing window the burst spans (50 minutes, 2 windows).
    assert actor.move.score_one(x) > engine.config.z_threshold
    assert sum(flagged) >= 2
    assert actor.move.baseline("records") < 5.0


def posture(
    n: int,
    t: int,
    system: str = "core",
    inst: str = "bank-1",
    latency: float = 100.0,
    errors: float = 0.001,
    availability: float = 0.999,
    vendors: tuple[str, ...] = (),
) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=f"p-{inst}-{system}-{n}", institution_id=inst)
    env.event_time.FromNanoseconds(t)
    env.it_posture.CopyFrom(
        T.ITPostureReport(
            system_id=system,
            tier=T.SYSTEM_TIER_CORE,
            availability=availability,
            latency_ms_p95=latency,
            error_rate=errors,
            interval_seconds=900,
            components=[
                T.Component(
                    layer=T.LAYER_CLOUD, vendor=v, product=v, independently_controllable=True
                )
                for v in vendors
            ],
        )
    )
    return env


def health_findings(shift: dict[str, float]) -> tuple[list[int], DetectionEngine]:
    engine = DetectionEngine(EngineConfig(health_warmup=50, rebaseline_after=12))
    rng = random.Random(3)
    found = []
    for i in range(24 * 4 * 10):
        kw = dict(latency=100.0 + rng.gauss(0, 2), errors=0.001 + rng.gauss(0, 0.0002))
        if i >= 24 * 4 * 7:
            kw = {k: v * shift.get(k, 1.0) for k, v in kw.items()}
        out = engine.process(posture(i, T0 + i * 900 * S, **kw))  # type: ignore[arg-type]
        # A clear ends the condition; it is not an alarm.
        found += [
            i
            for f in out
            if f.model_id == "it.health_anomaly" and f.phase != findings_pb2.PHASE_CLEAR
        ]
    return found, engine


def test_latency_only_regime_change_is_adopted_without_an_alert() -> None:
    # A resized cluster: latency settles 1.7x higher for good, errors unchanged.
    found, engine = health_findings({"latency": 1.7})
    assert found == []
    assert engine.autonomy.systems[("bank-1", "core")].n == 24 * 4 * 10


def test_error_rate_jump_is_seen_then_becomes_the_new_normal() -> None:
    found, _ = health_findings({"errors": 50.0})  # 0.1% -> 5% errors
    shift_at = 24 * 4 * 7
    assert found and all(shift_at <= i < shift_at + 24 for i in found)


def test_outage_cascade_in_one_institution_is_one_root_and_one_cascade_finding() -> None:
    engine = DetectionEngine()
    systems = ["core", "mbank", "crm", "pay"]
    events = []
    for i in range(8):
        for k, sys_id in enumerate(systems):
            t = T0 + i * 900 * S + k * 10 * S
            # The core fails at report 4, its dependents one report later.
            down = (i >= 4 and sys_id == "core") or i >= 5
            events.append(posture(i, t, system=sys_id, availability=0.4 if down else 0.999))
    found = [(f.rule_id or f.model_id, f.entity_id) for f in replay(events, engine=engine)]
    assert found == [("it.outage", "core"), ("it.outage_cascade", "core")]
    assert engine.stats()["cascade_findings_folded"] >= 2


def test_shared_outage_blames_the_vendor_whose_systems_all_failed() -> None:
    # Five institutions run on cloud "Nimbus" and an OS used by everyone; Nimbus goes down.
    events = []
    for i in range(6):
        for b in range(8):
            on_nimbus = b < 5
            down = on_nimbus and i >= 3
            events.append(
                posture(
                    i,
                    T0 + i * 900 * S + b * 20 * S,
                    inst=f"bank-{b}",
                    availability=0.5 if down else 0.999,
                    vendors=("Nimbus", "CommonOS") if on_nimbus else ("Other", "CommonOS"),
                )
            )
    vendor = [f for f in replay(events) if f.rule_id == "it.vendor_outage"]
    assert [f.entity_id for f in vendor] == ["Nimbus"]
    assert list(vendor[0].related_institution_ids) == [f"bank-{b}" for b in range(5)]


def test_partner_scraping_of_ordinary_queries_is_caught_by_its_rate() -> None:
    partner = "b" * 64
    rng = random.Random(9)
    events = []
    n = 0
    for h in range(48):  # two days of ~6 small queries an hour
        for _ in range(rng.randint(3, 9)):
            t = T0 + h * HOUR + rng.randrange(3600) * S
            events.append(access(n, t, actor=partner, records=rng.randint(2, 6)))
            n += 1
    events.sort(key=lambda e: e.event_time.ToNanoseconds())
    t0 = T0 + 48 * HOUR
    # Then 200 queries an hour, each of an unremarkable size.
    scrape = [access(n + i, t0 + i * 18 * S, actor=partner, records=5) for i in range(200)]
    found = replay(events + scrape)
    rate = [f for f in found if f.model_id == "leak.actor_rate"]
    assert len(rate) == 1 and rate[0].entity_id == partner
    assert not [f for f in replay(events) if f.model_id == "leak.actor_rate"]


def sandbox_report(n: int, t: int, **kw: object) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=f"s{n}", institution_id="fin-1")
    env.event_time.FromNanoseconds(t)
    fields = dict(
        test_id="sbx-1",
        app_id="app-1",
        active_users=500,
        cumulative_users=800,
        transaction_count=40,
        transaction_amount_fen=100_000,
        max_transaction_amount_fen=5_000,
        complaints=1,
        features_in_use=["pay"],
        interval_seconds=3600,
    )
    fields.update(kw)
    env.sandbox.CopyFrom(T.SandboxMetricsReport(**fields))  # type: ignore[arg-type]
    return env


def registry() -> sandbox_pb2.SandboxTest:
    test = sandbox_pb2.SandboxTest(
        test_id="sbx-1",
        institution_id="fin-1",
        app_id="app-1",
        user_cap=1000,
        single_amount_cap_fen=10_000,
        daily_amount_cap_fen=5_000_000,
        approved_features=["pay"],
    )
    test.start_time.FromNanoseconds(T0 - 24 * HOUR)
    test.end_time.FromNanoseconds(T0 + 30 * 24 * HOUR)
    return test


def sandbox_rules(**kw: object) -> set[str]:
    events = [sandbox_report(i, T0 + i * HOUR) for i in range(5)]
    events.append(sandbox_report(99, T0 + 5 * HOUR, **kw))
    return {f.rule_id for f in replay(events, [registry()]) if f.rule_id}


def test_sandbox_boundaries_are_hard_rules() -> None:
    assert sandbox_rules() == set()
    assert sandbox_rules(cumulative_users=1001) == {"sandbox.user_cap"}
    assert sandbox_rules(max_transaction_amount_fen=10_001) == {"sandbox.single_amount_cap"}
    assert sandbox_rules(transaction_amount_fen=6_000_000) == {"sandbox.daily_amount_cap"}
    assert sandbox_rules(features_in_use=["pay", "loans"]) == {"sandbox.unapproved_feature"}
    assert sandbox_rules(test_id="sbx-unknown") == {"sandbox.unregistered_test"}
    late = sandbox_report(99, T0 + 31 * 24 * HOUR)
    assert "sandbox.outside_period" in {
        f.rule_id for f in replay([sandbox_report(0, T0), late], [registry()])
    }


def test_silent_app_is_a_finding_once() -> None:
    events = [sandbox_report(i, T0 + i * HOUR) for i in range(10)]
    engine = DetectionEngine()
    out = replay(events, [registry()], engine=engine)
    out += engine.advance(T0 + 20 * HOUR)
    out += engine.advance(T0 + 30 * HOUR)
    silent = [f for f in out if f.rule_id == "silence.app"]
    assert len(silent) == 1 and silent[0].entity_id == "app-1"


def test_finding_ids_stable_across_replays_and_duplicates_ignored() -> None:
    events = [*with_exports(4)]
    t0 = events[-1].event_time.ToNanoseconds() + HOUR
    events += bulk_burst(50, 30_000, t0)
    first = ids(events)
    assert first and first == ids(events)
    assert ids(events + events[-30:]) == first


def test_snapshot_restore_mid_stream_matches_uninterrupted_run() -> None:
    events = with_exports(4)
    events += bulk_burst(50, 30_000, events[-1].event_time.ToNanoseconds() + HOUR)
    whole = ids(events)
    engine = DetectionEngine()
    half = len(events) // 2
    part = [f.finding_id for f in replay(events[:half], engine=engine)]
    restored = DetectionEngine.restore(engine.snapshot(), EngineConfig())
    part += [f.finding_id for f in replay(events[half:], engine=restored)]
    assert part == whole


def test_late_events_within_lateness_give_the_same_rule_findings() -> None:
    events = with_exports(3)
    t = events[-1].event_time.ToNanoseconds()
    events += [
        access(
            40_000 + i,
            t + i * 30 * S,
            records=10,
            op=T.OPERATION_EXPORT,
            dest=T.DESTINATION_KIND_EXTERNAL,
            dest_id="ee" * 32,
            c3=1,
        )
        for i in range(6)
    ]
    shuffled = list(events)
    rng = random.Random(1)
    # Swap neighbours: each event arrives at most a minute late.
    for i in range(0, len(shuffled) - 1, 2):
        if rng.random() < 0.5:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]

    def rules(evs: list[T.TelemetryEnvelope]) -> set[tuple[str, str]]:
        return {(f.rule_id, f.finding_id) for f in replay(evs) if f.rule_id}

    assert rules(events) == rules(shuffled) != set()
