"""The data leakage family on the field study: each new incident kind is caught, and each benign
routine that looks like one stays quiet.

One two-week scenario (from Monday 2026-09-21: a make-up Sunday, the quarter's end and the
National Day holiday) holds every variant of the four field incident kinds and every confounder
of ``simulators.confounders``, the data-leakage ones of ``simulators.field_leakage`` included.
Only the data-access side of it is replayed (data accesses, declared windows, calendars; with
the confounders' skewed clocks and re-sent events), through one engine, once for all the tests.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from suptech.detector.logic import DetectionEngine
from suptech.v1 import findings_pb2
from suptech.v1 import telemetry_pb2 as T

from simulators import baseline
from simulators import field_leakage as fl
from simulators.clock import DAY_US, parse_start
from simulators.confounders import Delivery, plan_confounders, select_confounders
from simulators.events import Effects, Stream
from simulators.fleet import build_fleet
from simulators.incidents import GroundTruth, PlanContext
from simulators.scenario import event_id

SEED = 5
DAYS = 14
START = "2026-09-21T00:00:00+08:00"
GRACE_US = 2 * 3600 * 1_000_000
# Streams of the context telemetry that data leakage does not read.
_NOT_DATA_ACCESS = (baseline.metrics_stream, baseline.agent_heartbeat_stream)


@dataclass
class Run:
    incidents: list[GroundTruth]
    benign: list[GroundTruth]
    findings: list[findings_pb2.Finding]
    events: int
    institutions: int


def _telemetry(ctx: PlanContext, delivery: Delivery) -> Iterator[tuple[int, T.TelemetryEnvelope]]:
    streams: list[Stream] = []
    for inst in ctx.fleet.institutions:
        for actor in inst.actors:
            make = (
                baseline.actor_stream if actor.rate_per_hour > 0 else baseline.nightly_batch_stream
            )
            streams.append(make(inst, actor, ctx.start, ctx.end, 1.0, ctx.seed))
    for factory in ctx.effects.streams:
        if isinstance(factory, functools.partial) and factory.func in _NOT_DATA_ACCESS:
            continue
        streams.append(factory())
    merged = heapq.merge(*streams, key=lambda e: e[0])
    wanted = {"data_access", "maintenance", "calendar"}

    def numbered() -> Iterator[tuple[int, T.TelemetryEnvelope]]:
        for n, (t, env) in enumerate(e for e in merged if e[1].WhichOneof("payload") in wanted):
            env.event_id = event_id(ctx.seed, n)
            yield t, env

    return delivery.deliver(numbered())


@pytest.fixture(scope="module")
def run() -> Run:
    return replay()


def replay() -> Run:
    """Plan the field study, replay its data-access telemetry, keep the data leakage findings."""
    start = parse_start(START)
    ctx = PlanContext(build_fleet(SEED, start), SEED, start, start + DAYS * DAY_US, Effects())
    delivery = Delivery()
    benign = plan_confounders(ctx, select_confounders("all"), delivery)
    incidents = [
        *(fl.thin_exfiltration_variant(ctx, f"thin-{v}", v) for v in fl.THIN_VARIANTS),
        *(fl.data_class_new_channel_variant(ctx, f"class-{v}", v) for v in fl.CLASS_VARIANTS),
        fl.partner_records_ratio(ctx, "ratio"),
        fl.lateral_spread(ctx, "spread"),
    ]
    engine = DetectionEngine()
    findings: list[findings_pb2.Finding] = []
    n = 0
    for _, env in _telemetry(ctx, delivery):
        findings.extend(engine.process(env))
        n += 1
    findings.extend(engine.advance(ctx.end * 1000))
    leaks = [
        f
        for f in findings
        if f.family == findings_pb2.FAMILY_DATA_LEAKAGE and f.phase != findings_pb2.PHASE_CLEAR
    ]
    institutions = len(engine.leakage.institutions)
    return Run(incidents, [g for g in benign if g.family == "data_leakage"], leaks, n, institutions)


def _on(f: findings_pb2.Finding, g: GroundTruth) -> bool:
    t = f.event_time.ToMicroseconds()
    if f.institution_id != g.institution_id or not g.start_us <= t <= g.end_us + GRACE_US:
        return False
    if g.entity_kind == "institution":
        return True
    return f.entity_id in {g.entity_id, *g.extra.get("affected_systems", [])}


def _incident(run: Run, incident_id: str) -> GroundTruth:
    return next(g for g in run.incidents if g.incident_id == incident_id)


@pytest.mark.parametrize("variant", fl.THIN_VARIANTS)
def test_thin_exfiltration_is_caught_by_its_cumulative_excess(run: Run, variant: str) -> None:
    g = _incident(run, f"thin-{variant}")
    found = {f.rule_id or f.model_id for f in run.findings if _on(f, g)}
    # The drift of daily exports out catches both; a new destination is also a rule of its own
    # once the institution's first week is over.
    assert "leak.slow_drip" in found or "leak.new_destination" in found, g.description
    if variant == "known_destination":
        assert "leak.new_destination" not in found


@pytest.mark.parametrize("variant", fl.CLASS_VARIANTS)
def test_a_data_class_where_it_never_went_is_a_finding(run: Run, variant: str) -> None:
    g = _incident(run, f"class-{variant}")
    found = [f for f in run.findings if _on(f, g) and f.rule_id == "leak.new_data_class"]
    assert found, g.description
    assert found[0].grade >= findings_pb2.GRADE_SIGNIFICANT


def test_partner_returning_many_more_records_per_query_is_caught(run: Run) -> None:
    g = _incident(run, "ratio")
    found = [f for f in run.findings if _on(f, g) and f.model_id == "leak.records_ratio"]
    assert found, g.description
    # Same query rate: the rate detector has nothing to say, the ratio does.
    assert not [f for f in run.findings if _on(f, g) and f.model_id == "leak.actor_rate"]
    assert found[0].contributions[0].observed > 4 * found[0].contributions[0].baseline


def test_lateral_spread_to_systems_never_touched_is_caught(run: Run) -> None:
    g = _incident(run, "spread")
    found = [f for f in run.findings if _on(f, g) and f.model_id == "leak.lateral_spread"]
    assert found, g.description
    assert found[0].score >= 2


def _benign_kinds() -> list[str]:
    kinds = [*fl.LEAKAGE_CONFOUNDERS, "month_end_batch", "holiday_week", "makeup_day"]
    return [*kinds, "clock_skew", "duplicate_events"]


@pytest.mark.parametrize("kind", _benign_kinds())
def test_benign_routine_stays_quiet(run: Run, kind: str) -> None:
    truths = [g for g in run.benign if g.kind == kind]
    assert truths, f"the scenario has no {kind}"
    loud = [
        (g.kind, f.rule_id or f.model_id, f.summary)
        for g in truths
        for f in run.findings
        if _on(f, g) and not any(_on(f, i) for i in run.incidents)
    ]
    assert not loud


def test_the_whole_fortnight_has_few_false_alarms(run: Run) -> None:
    false = [f for f in run.findings if not any(_on(f, g) for g in run.incidents)]
    assert len(false) / run.institutions / DAYS <= 0.1, [f.summary for f in false]
    assert run.institutions == 13 and run.events > 100_000


def _transfer(n: int, t_s: int, system: str, country: str) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=f"x{n}", institution_id="bank-1")
    env.event_time.FromSeconds(t_s)
    env.data_access.CopyFrom(
        T.DataAccessEvent(
            system_id=system,
            actor_pseudonym=f"{n:064x}",
            channel=T.CHANNEL_BATCH,
            operation=T.OPERATION_TRANSFER,
            records=40,
            bytes_out=20_000,
            destination_kind=T.DESTINATION_KIND_CROSS_BORDER,
            destination_pseudonym=f"{n + 1:02x}" * 32,
            destination_country=country,
        )
    )
    return env


def test_a_batch_window_for_one_system_marks_only_that_systems_findings() -> None:
    engine = DetectionEngine()
    t0 = 1_790_000_000
    window = baseline.maintenance_window(
        "bank-1", t0 * 1_000_000, "w1", T.WINDOW_KIND_BATCH, (t0 + 86_400) * 1_000_000,
        (t0 + 90_000) * 1_000_000, ["bank-1-dw"], "month-end close",
    )  # fmt: skip
    window.event_id = "w1"
    engine.process(window)
    engine.process(_transfer(0, t0, "bank-1-core", "HK"))  # the institution's first day
    inside = engine.process(_transfer(1, t0 + 86_500, "bank-1-dw", "US"))
    beside = engine.process(_transfer(2, t0 + 86_600, "bank-1-core", "SG"))
    [marked] = [f for f in inside if f.rule_id == "leak.new_destination"]
    [plain] = [f for f in beside if f.rule_id == "leak.new_destination"]
    assert marked.declared_window_id == "w1" and marked.grade < plain.grade
    assert not plain.declared_window_id and "declared window" not in plain.summary


def _mail(n: int, t_s: int, bytes_out: int, bytes_in: int) -> T.TelemetryEnvelope:
    """One send of a mail gateway's single actor to the one external destination it uses."""
    env = T.TelemetryEnvelope(event_id=f"m{n}", institution_id="bank-2")
    env.event_time.FromSeconds(t_s)
    env.data_access.CopyFrom(
        T.DataAccessEvent(
            system_id="bank-2-mail",
            actor_pseudonym="a" * 64,
            channel=T.CHANNEL_API,
            operation=T.OPERATION_TRANSFER,
            bytes_out=bytes_out,
            bytes_in=bytes_in,
            duration_ms=1000,
            destination_kind=T.DESTINATION_KIND_EXTERNAL,
            destination_pseudonym="d" * 64,
        )
    )
    return env


def test_the_score_of_an_ordinary_send_right_after_a_glaring_one_carries_its_suspicion() -> None:
    """The published leak.access score of a send of the usual size is high right after a send
    unlike anything the actor did (the session's evidence), and low for the same send in the
    actor's routine, before it and twenty sends after it."""
    rng = random.Random(4)
    engine = DetectionEngine()
    t0 = 1_790_000_000

    def score(n: int, bytes_out: int, bytes_in: int) -> float:
        engine.process(_mail(n, t0 + 60 * n, bytes_out, bytes_in))
        [s] = [s.score for s in engine.take_scores() if s.model_id == "leak.access"]
        return s

    for n in range(600):
        score(n, int(rng.lognormvariate(7.0, 0.4)), int(rng.lognormvariate(5.8, 0.1)))
    usual = (1100, 330)
    before = score(600, *usual)
    assert score(601, 6, 120) > 0.99999  # six bytes out: nothing like its sends
    after = score(602, *usual)
    for n in range(603, 623):
        score(n, int(rng.lognormvariate(7.0, 0.4)), int(rng.lognormvariate(5.8, 0.1)))
    later = score(623, *usual)
    assert before < 0.9 and later < 0.9
    assert after > 0.999
