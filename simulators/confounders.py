"""Benign things that look like incidents and must not alarm, with their ground truth
(``benign=True``): the routine of a real fleet that a detector tuned on a quiet simulator mistakes
for trouble.

``generate(..., confounders="all")`` plans them before the incidents. Planning any of them also
makes the fleet send its context telemetry (``Fleet.sends_context``): a business calendar from
every institution at the start, and a metrics exporter (CPU and p99 latency every 5 minutes, plus
the exporter's own heartbeats, ``source_id`` = system id) on each bank's core system, each large
bank's data warehouse and each payment firm's switch (15 systems, about 8.6k events a day).

Kinds (family they could be mistaken in):

- ``weekly_batch`` (it_autonomy): every Saturday 02:00-04:30 the large banks' data warehouses
  run a heavy job: p95 x2.5-3, errors x1.5, CPU up (recurring, not declared).
- ``month_end_batch`` (it_autonomy, data_leakage): the last day of each month 20:00-24:00 the
  banks' core systems are under month-end close (p95 x1.8, errors x1.3) and the nightly batch
  account makes 30 large internal extracts; declared as a BATCH window three days ahead.
- ``quarter_end_batch`` (it_autonomy): on a quarter's last day 18:00-03:00 the data warehouses
  and payment switches run the quarterly close (p95 x2.5, errors x1.5), declared as a BATCH
  window five days ahead.
- ``holiday_week`` (all three): a public holiday week (National Day, 1-7 October, when the
  period has it; else a synthetic week): every institution's calendar says so and office
  activity is that of a Sunday.
- ``makeup_day`` (all three): a weekend day worked in exchange for the holidays, declared in
  the calendar: weekday activity on a Saturday or Sunday.
- ``declared_maintenance`` (it_autonomy): twice, a night MAINTENANCE window declared 1-2 days
  ahead; inside it the system is down for 30 minutes, then sends nothing (posture, metrics,
  agent heartbeats) for 40.
- ``declared_change_upgrade`` (it_autonomy): a CHANGE window declared that morning: a
  component's version changes, errors x4 and p95 x1.6 for 50 minutes inside it, then normal on
  the new version.
- ``benign_version_patch`` (it_autonomy): an undeclared minor version bump in business hours;
  health does not change.
- ``new_system`` (it_autonomy): a new important system (a digital-RMB wallet) starts reporting
  a third of the way in or later: its first weeks of reports.
- ``sandbox_steady_growth`` (sandbox): an app grows 7-9% a day, within caps the register
  raised for it.
- ``clock_skew`` (all three): one institution's clock runs 3-9 s ahead or behind from some day
  on.
- ``duplicate_events`` (all three): one institution's SDK re-sends 30 minutes of events 2-10
  minutes later (same event ids).

Entity ids are those of the telemetry; institution-wide confounders have ``entity_kind``
``institution`` (and one ground truth per family they can confuse).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from suptech.v1 import telemetry_pb2 as tpb

from simulators import baseline, events
from simulators.clock import (
    CST,
    DAY_US,
    HOUR_US,
    MINUTE_US,
    SECOND_US,
    local_day_start,
    local_weekday,
)
from simulators.events import PostureState, Stream
from simulators.fleet import ComponentSpec, Institution, System
from simulators.incidents import FAMILIES, GroundTruth, PlanContext

__all__ = [
    "CONFOUNDERS",
    "Delivery",
    "metric_systems",
    "plan_confounders",
    "select_confounders",
]

E = tpb
IT = "it_autonomy"
LEAK = "data_leakage"
SANDBOX = "sandbox"


@dataclass
class Delivery:
    """What happens to telemetry between the institution and the regulator: clocks that are
    off, batches re-sent, reports not sent during maintenance."""

    # institution -> (from us, skew us): its clock is off by skew from then on.
    skew: dict[str, tuple[int, int]] = field(default_factory=dict)
    # (institution, from us, to us, delay us): its events of that span are sent again later.
    resend: list[tuple[str, int, int, int]] = field(default_factory=list)
    # (payload kind, entity id, from us, to us): reports of that stream not sent in the span.
    gaps: list[tuple[str, str, int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.skew or self.resend or self.gaps)

    def drop_gaps(self, merged: Iterator[tuple[int, tpb.TelemetryEnvelope]]) -> Stream:
        """The merged streams without the reports that fall in a gap."""
        if not self.gaps:
            yield from merged
            return
        lo = min(a for _, _, a, _ in self.gaps)
        hi = max(b for _, _, _, b in self.gaps)
        for t, env in merged:
            if lo <= t < hi and self._in_gap(t, env):
                continue
            yield t, env

    def _in_gap(self, t: int, env: tpb.TelemetryEnvelope) -> bool:
        kind = env.WhichOneof("payload")
        entity = {
            "it_posture": env.it_posture.system_id,
            "metrics": env.metrics.system_id,
            "heartbeat": env.heartbeat.source_id,
            "sandbox": env.sandbox.app_id,
        }.get(kind or "", None)
        return any(k == kind and e == entity and a <= t < b for k, e, a, b in self.gaps)

    def deliver(self, numbered: Iterator[tuple[int, tpb.TelemetryEnvelope]]) -> Stream:
        """Numbered envelopes as the regulator receives them: skewed clocks, and re-sent copies
        (same event id, original event time) at their arrival position."""
        pending: list[tuple[int, int, tpb.TelemetryEnvelope]] = []
        seq = 0
        for t, env in numbered:
            while pending and pending[0][0] <= t:
                _, _, dup = heapq.heappop(pending)
                yield dup.event_time.ToMicroseconds(), dup
            inst = env.institution_id
            skew = self.skew.get(inst)
            if skew is not None and t >= skew[0]:
                t += skew[1]
                env.event_time.FromMicroseconds(t)
            for who, a, b, delay in self.resend:
                if who == inst and a <= t < b:
                    dup = tpb.TelemetryEnvelope()
                    dup.CopyFrom(env)
                    seq += 1
                    heapq.heappush(pending, (t + delay, seq, dup))
            yield t, env
        while pending:
            _, _, dup = heapq.heappop(pending)
            yield dup.event_time.ToMicroseconds(), dup


ConfounderPlanner = Callable[[PlanContext, str, Delivery], list[GroundTruth]]


def _benign(
    cid: str,
    family: str,
    kind: str,
    institution_id: str,
    entity_kind: str,
    entity_id: str,
    start_us: int,
    end_us: int,
    text: str,
    extra: dict[str, Any] | None = None,
) -> GroundTruth:
    return GroundTruth(
        cid,
        family,
        kind,
        institution_id,
        entity_kind,
        entity_id,
        start_us,
        end_us,
        f"BENIGN: {text}",
        benign=True,
        extra=extra or {},
    )


def _everywhere(
    ctx: PlanContext, cid: str, kind: str, insts: list[str], t0: int, t1: int, text: str
) -> list[GroundTruth]:
    """One institution-wide benign truth per family, per institution."""
    return [
        _benign(f"{cid}-{fam}-{inst}", fam, kind, inst, "institution", inst, t0, t1, text)
        for fam in FAMILIES
        for inst in insts
    ]


def _local_day(t_us: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(t_us / SECOND_US, CST).date()


def _day_start(d: datetime.date) -> int:
    return int(datetime.datetime(d.year, d.month, d.day, tzinfo=CST).timestamp()) * SECOND_US


def _days(ctx: PlanContext) -> list[int]:
    """Local day starts of the period."""
    out, day = [], local_day_start(ctx.start)
    while day < ctx.end:
        out.append(day)
        day += DAY_US
    return out


def _load_mod(
    spans: list[tuple[int, int]], latency_x: float, error_x: float
) -> Callable[[int, PostureState], None]:
    def mod(t: int, s: PostureState) -> None:
        for a, b in spans:
            if a <= t < b:
                s.latency_ms *= latency_x
                s.error_rate *= error_x
                return

    return mod


def _declare(
    ctx: PlanContext,
    inst: str,
    sent: int,
    wid: str,
    kind: int,
    t0: int,
    t1: int,
    systems: list[str],
    reason: str,
) -> None:
    sent = max(ctx.start, sent)

    def stream() -> Stream:
        yield sent, baseline.maintenance_window(inst, sent, wid, kind, t0, t1, systems, reason)

    ctx.effects.streams.append(stream)


# --- the context telemetry --------------------------------------------------------------------


def metric_systems(inst: Institution) -> list[System]:
    """Systems with a metrics exporter: core systems, large banks' warehouses, payment switches."""
    return [
        s
        for s in inst.systems
        if s.system_id.endswith(("-core", "-dw", "-switch"))
        and not (inst.kind != "large_bank" and s.system_id.endswith("-dw"))
    ]


def _context_telemetry(ctx: PlanContext) -> None:
    ctx.fleet.sends_context = True
    start, end, seed, effects = ctx.start, ctx.end, ctx.seed, ctx.effects
    for inst in ctx.fleet.institutions:
        for system in metric_systems(inst):
            system.metrics = True
            effects.streams.append(
                functools.partial(baseline.metrics_stream, inst, system, start, end, seed, effects)
            )
            effects.streams.append(
                functools.partial(
                    baseline.agent_heartbeat_stream, inst, system, start, end, seed, effects
                )
            )


def _calendars(ctx: PlanContext) -> None:
    """Every institution sends its business calendar a few seconds into the period."""
    for inst in ctx.fleet.institutions:
        t = ctx.start + (inst.offset_s % 60 + 1) * SECOND_US
        zone = "Asia/Hong_Kong" if inst.institution_id == "pay-04" else "Asia/Shanghai"
        holidays = sorted(_local_day(d).isoformat() for d in inst.rest_days)
        working = sorted(_local_day(d).isoformat() for d in inst.work_days)

        def stream(
            iid: str = inst.institution_id,
            t: int = t,
            zone: str = zone,
            holidays: list[str] = holidays,
            working: list[str] = working,
        ) -> Stream:
            yield t, baseline.business_calendar(iid, t, zone, holidays, working)

        ctx.effects.streams.append(stream)


# --- batch jobs -------------------------------------------------------------------------------


def weekly_batch(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("weekly_batch")
    out = []
    for inst in ctx.fleet.institutions:
        for system in inst.systems:
            if not system.system_id.endswith("-dw"):
                continue
            ctx.take(system.system_id)
            spans = [
                (d + 2 * HOUR_US, d + 4 * HOUR_US + 30 * MINUTE_US)
                for d in _days(ctx)
                if local_weekday(d + HOUR_US) == 5
            ]
            x = rng.uniform(2.5, 3.0)
            ctx.effects.on_posture(system.system_id, _load_mod(spans, x, 1.5))
            for k, (a, b) in enumerate(spans):
                out.append(
                    _benign(
                        f"{cid}-{system.system_id}-{k}",
                        IT,
                        "weekly_batch",
                        inst.institution_id,
                        "system",
                        system.system_id,
                        max(a, ctx.start),
                        min(b, ctx.end),
                        f"the warehouse's weekly Saturday-night job: p95 x{x:.1f}, errors x1.5, "
                        f"CPU up for 2.5 hours, every week (not declared).",
                    )
                )
    return out


def _month_ends(ctx: PlanContext, quarter: bool) -> list[int]:
    out = []
    for d in _days(ctx):
        day = _local_day(d)
        if (day + datetime.timedelta(days=1)).day == 1 and (not quarter or day.month % 3 == 0):
            out.append(d)
    return out


def month_end_batch(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("month_end_batch")
    out: list[GroundTruth] = []
    for d in _month_ends(ctx, quarter=False):
        t0, t1 = d + 20 * HOUR_US, min(d + DAY_US, ctx.end)
        for inst in ctx.fleet.institutions:
            if inst.kind == "payment":
                continue
            core = inst.systems[0]
            wid = f"{cid}-{inst.institution_id}-{_local_day(d).isoformat()}"
            _declare(
                ctx,
                inst.institution_id,
                d - 3 * DAY_US,
                wid,
                E.WINDOW_KIND_BATCH,
                t0,
                t1,
                [core.system_id],
                "month-end close",
            )
            ctx.effects.on_posture(core.system_id, _load_mod([(t0, t1)], 1.8, 1.3))
            batch = next(a for a in inst.actors if a.rate_per_hour == 0)
            times = sorted(t0 + rng.randrange(3 * HOUR_US) for _ in range(30))
            ctx.effects.streams.append(_extracts(inst, batch, times, f"{wid}:extracts"))
            text = "month-end close, declared as a BATCH window three days ahead"
            out.append(
                _benign(
                    wid,
                    IT,
                    "month_end_batch",
                    inst.institution_id,
                    "system",
                    core.system_id,
                    t0,
                    t1,
                    f"{text}: the core system under load (p95 x1.8, errors x1.3).",
                    {"declared_window_id": wid},
                )
            )
            out.append(
                _benign(
                    f"{wid}-extracts",
                    LEAK,
                    "month_end_batch",
                    inst.institution_id,
                    "actor",
                    batch.pseudonym,
                    t0,
                    t1,
                    f"{text}: the nightly batch account makes 30 large internal extracts.",
                    {"declared_window_id": wid},
                )
            )
    return out


def _extracts(inst: Institution, actor: Any, times: list[int], seed: str) -> Callable[[], Stream]:
    def stream() -> Stream:
        rng = random.Random(seed)
        for t in times:
            records = rng.randint(20_000, 60_000)
            yield (
                t,
                events.data_access(
                    inst.institution_id,
                    t,
                    system_id=actor.systems[0],
                    actor_pseudonym=actor.pseudonym,
                    role=actor.role,
                    channel=E.CHANNEL_BATCH,
                    operation=E.OPERATION_EXPORT,
                    records=records,
                    c1=3,
                    c2=6,
                    bytes_out=records * 9 * rng.randint(80, 110),
                ),
            )

    return stream


def quarter_end_batch(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    out: list[GroundTruth] = []
    for d in _month_ends(ctx, quarter=True):
        t0, t1 = d + 18 * HOUR_US, min(d + 27 * HOUR_US, ctx.end)
        for inst in ctx.fleet.institutions:
            systems = [s for s in inst.systems if s.system_id.endswith(("-dw", "-switch"))]
            if not systems:
                continue
            wid = f"{cid}-{inst.institution_id}-{_local_day(d).isoformat()}"
            ids = [s.system_id for s in systems]
            _declare(
                ctx,
                inst.institution_id,
                d - 5 * DAY_US,
                wid,
                E.WINDOW_KIND_BATCH,
                t0,
                t1,
                ids,
                "quarter-end close",
            )
            for s in systems:
                ctx.effects.on_posture(s.system_id, _load_mod([(t0, t1)], 2.5, 1.5))
                out.append(
                    _benign(
                        f"{wid}-{s.system_id}",
                        IT,
                        "quarter_end_batch",
                        inst.institution_id,
                        "system",
                        s.system_id,
                        t0,
                        t1,
                        "quarter-end close, declared as a BATCH window five days ahead: nine "
                        "hours of p95 x2.5, errors x1.5, CPU up.",
                        {"declared_window_id": wid},
                    )
                )
    return out


# --- calendar ---------------------------------------------------------------------------------


def _holiday_week(ctx: PlanContext) -> tuple[list[int], list[int], str]:
    """(rest days, make-up working days, name): National Day when the period has it."""
    first, last = _local_day(ctx.start), _local_day(ctx.end - 1)
    for year in sorted({first.year, last.year}):
        oct1 = datetime.date(year, 10, 1)
        week = [oct1 + datetime.timedelta(days=k) for k in range(7)]
        if week[-1] >= first and week[0] <= last:
            before = oct1 - datetime.timedelta(days=(oct1.weekday() + 1) % 7 or 7)
            after = week[-1] + datetime.timedelta(days=(5 - week[-1].weekday()) % 7 or 7)
            return (
                [_day_start(d) for d in week],
                [_day_start(before), _day_start(after)],
                f"National Day {year}",
            )
    days = _days(ctx)
    monday = next(
        (d for d in days[len(days) * 2 // 5 :] if local_weekday(d + HOUR_US) == 0), days[-1]
    )
    return [monday + k * DAY_US for k in range(5)], [monday - DAY_US], "a public holiday week"


def holiday_week(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rest, work, name = _holiday_week(ctx)
    for inst in ctx.fleet.institutions:
        inst.rest_days.update(rest)
        inst.work_days.update(work)
    t0, t1 = max(min(rest), ctx.start), min(max(rest) + DAY_US, ctx.end)
    if t0 >= t1:
        return []
    insts = [i.institution_id for i in ctx.fleet.institutions]
    return _everywhere(
        ctx,
        cid,
        "holiday_week",
        insts,
        t0,
        t1,
        f"{name}: every institution's business calendar declares it; office activity is that "
        f"of a Sunday.",
    )


def makeup_day(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rest, work, name = _holiday_week(ctx)
    out = []
    for d in work:
        for inst in ctx.fleet.institutions:
            inst.work_days.add(d)
            inst.rest_days.update(rest)  # a make-up day is worked for a holiday
        if ctx.start <= d < ctx.end:
            insts = [i.institution_id for i in ctx.fleet.institutions]
            out += _everywhere(
                ctx,
                f"{cid}-{_local_day(d).isoformat()}",
                "makeup_day",
                insts,
                d,
                d + DAY_US,
                f"a weekend day worked in exchange for {name} (declared in the calendar): "
                f"weekday activity.",
            )
    return out


# --- declared windows and changes --------------------------------------------------------------


def _pick_system(ctx: PlanContext, rng: random.Random, ok: Callable[[System], bool]) -> System:
    pool = [s for s in ctx.fleet.systems() if ok(s)]
    system: System = rng.choice(ctx.free(pool, lambda s: s.system_id))
    ctx.take(system.system_id)
    return system


def _day(ctx: PlanContext, rng: random.Random) -> int:
    days = _days(ctx)
    return rng.choice(days[max(1, len(days) // 3) :] or days)


def declared_maintenance(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("declared_maintenance")
    out = []
    for k in range(2):
        system = _pick_system(ctx, rng, lambda s: s.tier != E.SYSTEM_TIER_GENERAL)
        d = _day(ctx, rng)
        w0, w1 = d + HOUR_US, d + 3 * HOUR_US
        wid = f"{cid}-{k}"
        _declare(
            ctx,
            system.institution_id,
            d - rng.randint(1, 2) * DAY_US,
            wid,
            E.WINDOW_KIND_MAINTENANCE,
            w0,
            w1,
            [system.system_id],
            "storage firmware upgrade",
        )
        down0, down1 = w0 + 10 * MINUTE_US, w0 + 40 * MINUTE_US
        quiet1 = down1 + 40 * MINUTE_US

        def mod(t: int, s: PostureState, a: int = down0, b: int = down1) -> None:
            if a <= t < b:
                s.availability = 0.2
                s.error_rate = max(s.error_rate, 0.3)
                s.incidents = max(s.incidents, 1 if t < a + 5 * MINUTE_US else 0)

        ctx.effects.on_posture(system.system_id, mod)
        for kind in ("it_posture", "metrics", "heartbeat"):
            delivery.gaps.append((kind, system.system_id, down1, quiet1))
        out.append(
            _benign(
                wid,
                IT,
                "declared_maintenance",
                system.institution_id,
                "system",
                system.system_id,
                w0,
                w1,
                "a MAINTENANCE window declared 1-2 days ahead: 30 minutes down, then 40 minutes "
                "without any report or heartbeat, then normal.",
                {"declared_window_id": wid},
            )
        )
    return out


def _bump(c: ComponentSpec, rng: random.Random) -> ComponentSpec:
    return dataclasses.replace(c, version=f"{c.version}.{rng.randint(1, 30)}")


def _version_change(
    system: System, t_c: int, new: ComponentSpec, old: ComponentSpec
) -> Callable[[int, PostureState], None]:
    def mod(t: int, s: PostureState) -> None:
        if t >= t_c:
            s.components = [new if c == old else c for c in s.components]

    return mod


def declared_change_upgrade(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("declared_change_upgrade")
    system = _pick_system(ctx, rng, lambda s: s.tier != E.SYSTEM_TIER_GENERAL)
    old = rng.choice([c for c in system.components if c.layer != E.LAYER_CHIP])
    new = _bump(old, rng)
    d = _day(ctx, rng)
    w0, w1 = d + 22 * HOUR_US, d + 24 * HOUR_US - MINUTE_US
    t_c = w0 + 10 * MINUTE_US
    _declare(
        ctx,
        system.institution_id,
        d,
        cid,
        E.WINDOW_KIND_CHANGE,
        w0,
        w1,
        [system.system_id],
        f"upgrade {old.product} to {new.version}",
    )
    ctx.effects.on_posture(system.system_id, _version_change(system, t_c, new, old))
    ctx.effects.on_posture(system.system_id, _load_mod([(t_c, t_c + 50 * MINUTE_US)], 1.6, 4.0))
    return [
        _benign(
            cid,
            IT,
            "declared_change_upgrade",
            system.institution_id,
            "system",
            system.system_id,
            w0,
            w1,
            f"a CHANGE window declared that morning: {old.product} {old.version} -> "
            f"{new.version}; errors x4 and p95 x1.6 for 50 minutes inside it, then normal.",
            {"declared_window_id": cid},
        )
    ]


def benign_version_patch(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("benign_version_patch")
    system = _pick_system(ctx, rng, lambda s: True)
    old = rng.choice([c for c in system.components if c.layer != E.LAYER_CHIP])
    new = _bump(old, rng)
    t_c = _day(ctx, rng) + rng.randint(10, 16) * HOUR_US
    ctx.effects.on_posture(system.system_id, _version_change(system, t_c, new, old))
    return [
        _benign(
            cid,
            IT,
            "benign_version_patch",
            system.institution_id,
            "system",
            system.system_id,
            t_c,
            min(t_c + DAY_US, ctx.end),
            f"an undeclared minor patch ({old.product} {old.version} -> {new.version}) in "
            f"business hours; health does not change.",
        )
    ]


def new_system(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("new_system")
    inst = rng.choice([i for i in ctx.fleet.institutions if i.kind != "payment"])
    domestic = [
        ComponentSpec(E.LAYER_CHIP, "HiSilicon", "Kunpeng 920", "920", True),
        ComponentSpec(E.LAYER_SERVER, "Huawei", "TaiShan 200", "2280", True),
        ComponentSpec(E.LAYER_OS, "openEuler", "openEuler", "22.03 LTS", True),
        ComponentSpec(E.LAYER_DATABASE, "OceanBase", "OceanBase", "4.2", True),
        ComponentSpec(E.LAYER_MIDDLEWARE, "TongTech", "TongWeb", "7.0", True),
        ComponentSpec(E.LAYER_CORE_APPLICATION, "in-house", "e-CNY wallet", "1", True),
        ComponentSpec(E.LAYER_CLOUD, "Huawei Cloud", "HCS", "8.3", True),
    ]
    system = System(
        system_id=f"{inst.institution_id}-ecny",
        institution_id=inst.institution_id,
        name="digital RMB wallet",
        tier=E.SYSTEM_TIER_IMPORTANT,
        components=domestic,
        base_latency_ms=rng.uniform(100.0, 160.0),
        base_error_rate=rng.uniform(0.001, 0.004),
        unpatched_vulns=rng.choice([0, 1]),
        migration_status=E.MIGRATION_STATUS_COMPLETED,
        offset_s=rng.randrange(300),
    )
    first = _day(ctx, rng) + rng.randint(9, 11) * HOUR_US
    start, end, seed, effects = first, ctx.end, ctx.seed, ctx.effects
    effects.streams.append(lambda: baseline.posture_stream(inst, system, start, end, seed, effects))
    ctx.take(system.system_id)
    return [
        _benign(
            cid,
            IT,
            "new_system",
            inst.institution_id,
            "system",
            system.system_id,
            first,
            ctx.end,
            "a new important system goes live and sends its first weeks of posture reports.",
        )
    ]


# --- sandbox ----------------------------------------------------------------------------------


def sandbox_steady_growth(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("sandbox_steady_growth")
    app = rng.choice(ctx.free(ctx.fleet.apps(), lambda a: a.app_id))
    ctx.take(app.app_id)
    app.daily_growth = rng.uniform(0.07, 0.09)
    # The register allows for it: the regulator approved a larger pilot.
    app.user_cap *= 4
    app.daily_cap_fen *= 4
    return [
        _benign(
            cid,
            SANDBOX,
            "sandbox_steady_growth",
            app.institution_id,
            "test",
            app.test_id,
            ctx.start,
            ctx.end,
            f"the app grows {app.daily_growth:.0%} a day, complaints and transactions with it, "
            f"within caps the register raised for it.",
            {"app_id": app.app_id, "test_id": app.test_id},
        )
    ]


# --- delivery ---------------------------------------------------------------------------------


def clock_skew(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("clock_skew")
    inst = rng.choice(ctx.fleet.institutions)
    t0 = _day(ctx, rng) + rng.randrange(DAY_US)
    skew = rng.randint(3, 9) * rng.choice([-1, 1]) * SECOND_US
    delivery.skew[inst.institution_id] = (t0, skew)
    return _everywhere(
        ctx,
        cid,
        "clock_skew",
        [inst.institution_id],
        t0,
        ctx.end,
        f"the institution's clock runs {skew / SECOND_US:+.0f} s off from then on.",
    )


def duplicate_events(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("duplicate_events")
    inst = rng.choice(ctx.fleet.institutions)
    t0 = _day(ctx, rng) + rng.randint(9, 17) * HOUR_US
    t1 = t0 + 30 * MINUTE_US
    delivery.resend.append((inst.institution_id, t0, t1, rng.randint(2, 10) * MINUTE_US))
    return _everywhere(
        ctx,
        cid,
        "duplicate_events",
        [inst.institution_id],
        t0,
        min(t1 + HOUR_US, ctx.end),
        "the SDK re-sends 30 minutes of events (same event ids) after a lost acknowledgement.",
    )


CONFOUNDERS: dict[str, ConfounderPlanner] = {
    "weekly_batch": weekly_batch,
    "month_end_batch": month_end_batch,
    "quarter_end_batch": quarter_end_batch,
    "holiday_week": holiday_week,
    "makeup_day": makeup_day,
    "declared_maintenance": declared_maintenance,
    "declared_change_upgrade": declared_change_upgrade,
    "benign_version_patch": benign_version_patch,
    "new_system": new_system,
    "sandbox_steady_growth": sandbox_steady_growth,
    "clock_skew": clock_skew,
    "duplicate_events": duplicate_events,
}
# The data-leakage routines of the field study (simulators.field_leakage) join them.
from simulators.field_leakage import LEAKAGE_CONFOUNDERS as _LEAKAGE  # noqa: E402

CONFOUNDERS.update(_LEAKAGE)


def select_confounders(spec: str | list[str]) -> list[str]:
    """``all`` | ``none`` | comma list of confounder kinds; returned in library order."""
    tokens = spec if isinstance(spec, list) else [t.strip() for t in spec.split(",")]
    wanted: set[str] = set()
    for token in tokens:
        if token == "all":
            wanted.update(CONFOUNDERS)
        elif token in CONFOUNDERS:
            wanted.add(token)
        elif token not in ("", "none"):
            raise ValueError(f"unknown confounder {token!r}; known: {sorted(CONFOUNDERS)}")
    return [k for k in CONFOUNDERS if k in wanted]


def plan_confounders(ctx: PlanContext, kinds: list[str], delivery: Delivery) -> list[GroundTruth]:
    """Plan the confounders (and, if any, the context telemetry); their ground truth."""
    if not kinds:
        return []
    _context_telemetry(ctx)
    out: list[GroundTruth] = []
    for n, kind in enumerate(kinds, start=1):
        out += CONFOUNDERS[kind](ctx, f"benign-{ctx.seed}-{n:02d}-{kind}", delivery)
    _calendars(ctx)
    return out
