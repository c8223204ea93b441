"""The library of injected incidents, with their ground truth.

Each incident kind is a planner: given the fleet and the simulated period it picks its target
(with its own seeded generator, so selecting a subset of kinds does not move the others), records
the ground truth, and registers its effects (extra event streams, or modifiers of the normal
reports). Entity ids in the ground truth are exactly those of the telemetry: actor pseudonym,
system_id, test_id, app_id or vendor name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suptech.v1 import telemetry_pb2 as tpb

from simulators import events
from simulators.clock import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    SECOND_US,
    iso_utc,
    local_day_start,
    local_weekday,
    office_activity,
)
from simulators.events import Effects, PostureState, SandboxState, Stream
from simulators.fleet import (
    VENDORS,
    Actor,
    App,
    ComponentSpec,
    Fleet,
    Institution,
    System,
    pseudonymise,
)
from simulators.fleet import institution_key as _key

__all__ = [
    "GroundTruth",
    "PlanContext",
    "KINDS",
    "FAMILIES",
    "select_kinds",
    "plan_incidents",
]

E = tpb


@dataclass
class GroundTruth:
    incident_id: str
    family: str
    kind: str
    institution_id: str
    entity_kind: str
    entity_id: str
    start_us: int
    end_us: int
    description: str
    benign: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "incident_id": self.incident_id,
            "family": self.family,
            "kind": self.kind,
            "institution_id": self.institution_id,
            "entity_kind": self.entity_kind,
            "entity_id": self.entity_id,
            "start": iso_utc(self.start_us),
            "end": iso_utc(self.end_us),
            "benign": self.benign,
            "description": self.description,
        }
        out.update(self.extra)
        return out


@dataclass
class PlanContext:
    fleet: Fleet
    seed: int
    start: int
    end: int
    effects: Effects
    used: set[str] = field(default_factory=set)
    # Onset windows already taken, per family: two outages at the same minute would make it
    # impossible to tell which finding belongs to which incident.
    booked: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def slot(self, family: str, draw: Callable[[], int], onset_us: int = HOUR_US) -> int:
        """A start time from ``draw`` whose onset overlaps no other incident of the family."""
        taken = self.booked.setdefault(family, [])
        margin = 30 * MINUTE_US
        t0 = draw()
        for _ in range(40):
            if all(t0 + onset_us + margin <= a or b + margin <= t0 for a, b in taken):
                break
            t0 = draw()
        taken.append((t0, t0 + min(onset_us, 3 * HOUR_US)))
        return t0

    @property
    def days(self) -> int:
        return max(1, (self.end - self.start) // DAY_US)

    def rng(self, kind: str) -> random.Random:
        return random.Random(f"incident:{self.seed}:{kind}")

    def day(self, rng: random.Random, weekday: bool = False) -> int:
        """A day late enough for baselines to have formed (day >= a third of the period)."""
        earliest = min(self.days - 1, max(1, self.days // 3))
        days = list(range(earliest, self.days))
        if weekday:
            days = [d for d in days if local_weekday(self.at(d, 12)) < 5] or days
        return rng.choice(days)

    def at(self, day: int, hour: int, minute: int = 0) -> int:
        t = local_day_start(self.start) + day * DAY_US + hour * HOUR_US + minute * MINUTE_US
        return min(max(t, self.start), self.end - HOUR_US)

    def clamp(self, t: int) -> int:
        return min(t, self.end - SECOND_US)

    def free(self, candidates: list[Any], ident: Callable[[Any], str]) -> list[Any]:
        out = [c for c in candidates if ident(c) not in self.used]
        if not out:
            raise ValueError("the fleet has no free entity left for this incident")
        return out

    def take(self, entity_id: str) -> None:
        self.used.add(entity_id)


Planner = Callable[[PlanContext, str], GroundTruth]


def _pick_actor(
    ctx: PlanContext, rng: random.Random, role: int, kinds: tuple[str, ...] = ()
) -> tuple[Institution, Actor]:
    pool = [
        (inst, a)
        for inst in ctx.fleet.institutions
        if not kinds or inst.kind in kinds
        for a in inst.actors
        if a.role == role and a.rate_per_hour > 0
    ]
    inst, actor = rng.choice(ctx.free(pool, lambda p: p[1].pseudonym))
    ctx.take(actor.pseudonym)
    return inst, actor


def _export_events(
    inst: Institution,
    actor: Actor,
    times: list[int],
    seed: str,
    *,
    operation: int,
    channel: int,
    records: tuple[int, int],
    c2: tuple[int, int],
    c3: tuple[int, int] = (0, 0),
    destination_kind: int,
    destination_raw: str,
    country: str = "",
) -> Callable[[], Stream]:
    system = actor.systems[0]
    dest = pseudonymise(_key(inst.institution_id), destination_raw)

    def stream() -> Stream:
        rng = random.Random(seed)
        for t in times:
            n = rng.randint(*records)
            f2, f3 = rng.randint(*c2), rng.randint(*c3)
            yield (
                t,
                events.data_access(
                    inst.institution_id,
                    t,
                    system_id=system,
                    actor_pseudonym=actor.pseudonym,
                    role=actor.role,
                    channel=channel,
                    operation=operation,
                    records=n,
                    c1=3,
                    c2=f2,
                    c3=f3,
                    bytes_out=n * (3 + f2 + f3) * rng.randint(90, 130),
                    destination_kind=destination_kind,
                    destination_pseudonym=dest,
                    destination_country=country,
                ),
            )

    return stream


def _spaced(rng: random.Random, t0: int, n: int, gap_s: tuple[float, float], end: int) -> list[int]:
    times, t = [], t0
    for _ in range(n):
        if t >= end:
            break
        times.append(t)
        t += int(rng.uniform(*gap_s) * SECOND_US)
    return times


# --- data leakage -------------------------------------------------------------------------------


def bulk_export_offhours(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("bulk_export_offhours")
    inst, actor = _pick_actor(ctx, rng, E.ACTOR_ROLE_EMPLOYEE, ("large_bank", "small_bank"))
    t0 = ctx.slot(
        "data_leakage", lambda: ctx.at(ctx.day(rng), rng.randint(1, 3), rng.randint(0, 59)), HOUR_US
    )
    times = _spaced(rng, t0, 1500, (1.5, 2.5), ctx.end)
    ctx.effects.streams.append(
        _export_events(
            inst,
            actor,
            times,
            f"{incident_id}:events",
            operation=E.OPERATION_EXPORT,
            channel=E.CHANNEL_BATCH,
            records=(800, 3000),
            c2=(6, 10),
            destination_kind=E.DESTINATION_KIND_EXTERNAL,
            destination_raw=f"external:cloud-drive/{actor.raw_id}",
        )
    )
    return GroundTruth(
        incident_id,
        "data_leakage",
        "bulk_export_offhours",
        inst.institution_id,
        "actor",
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"An employee exports customer records in bulk between 01:00 and 04:00 local to a "
        f"new external destination: {len(times)} export events of 800-3000 records each "
        f"(normal exports ~50 records).",
    )


def slow_drip_exfiltration(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("slow_drip_exfiltration")
    inst, actor = _pick_actor(ctx, rng, E.ACTOR_ROLE_EMPLOYEE)
    earliest = min(ctx.days - 1, max(1, ctx.days // 3))
    t0 = ctx.at(earliest, 9)
    stop = min(ctx.end, t0 + 3 * DAY_US)
    times = []
    t = t0
    while t < stop:
        if office_activity(t) >= 0.7 and rng.random() < 0.6:
            times.append(t + rng.randrange(HOUR_US))
        t += HOUR_US
    times = [x for x in times if x < ctx.end] or [t0 + HOUR_US]
    ctx.effects.streams.append(
        _export_events(
            inst,
            actor,
            times,
            f"{incident_id}:events",
            operation=E.OPERATION_EXPORT,
            channel=E.CHANNEL_CONSOLE,
            records=(100, 250),
            c2=(5, 7),
            destination_kind=E.DESTINATION_KIND_EXTERNAL,
            destination_raw=f"external:webmail/{actor.raw_id}",
        )
    )
    return GroundTruth(
        incident_id,
        "data_leakage",
        "slow_drip_exfiltration",
        inst.institution_id,
        "actor",
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"Slow drip over up to three days: {len(times)} modest exports (100-250 records) in "
        f"business hours, all to one new external webmail destination.",
    )


def partner_api_scraping(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("partner_api_scraping")
    inst, actor = _pick_actor(ctx, rng, E.ACTOR_ROLE_PARTNER)
    t0 = ctx.slot(
        "data_leakage",
        lambda: ctx.at(ctx.day(rng, weekday=True), rng.randint(10, 13), rng.randint(0, 59)),
        6 * HOUR_US,
    )
    times = _spaced(rng, t0, 1200, (14.0, 22.0), ctx.end)

    def stream() -> Stream:
        r = random.Random(f"{incident_id}:events")
        for t in times:
            n = r.randint(40, 120)
            yield (
                t,
                events.data_access(
                    inst.institution_id,
                    t,
                    system_id=actor.systems[0],
                    actor_pseudonym=actor.pseudonym,
                    role=actor.role,
                    channel=E.CHANNEL_PARTNER,
                    operation=E.OPERATION_QUERY,
                    records=n,
                    c1=2,
                    c2=r.randint(3, 5),
                    bytes_out=n * 7 * r.randint(80, 110),
                    destination_kind=E.DESTINATION_KIND_PARTNER,
                    destination_pseudonym=actor.partner_destination,
                ),
            )

    ctx.effects.streams.append(stream)
    return GroundTruth(
        incident_id,
        "data_leakage",
        "partner_api_scraping",
        inst.institution_id,
        "actor",
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"A partner's API credential pages through customer records: {len(times)} queries "
        f"(~200/hour, 40-120 records each, normal ~8/hour of ~4 records).",
    )


def cross_border_transfer(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("cross_border_transfer")
    inst, actor = _pick_actor(ctx, rng, E.ACTOR_ROLE_EMPLOYEE)
    t0 = ctx.slot(
        "data_leakage",
        lambda: ctx.at(ctx.day(rng, weekday=True), rng.randint(10, 15), rng.randint(0, 59)),
        2 * HOUR_US,
    )
    times = _spaced(rng, t0, 40, (120.0, 240.0), ctx.end)
    country = rng.choice(["US", "SG", "GB"])
    ctx.effects.streams.append(
        _export_events(
            inst,
            actor,
            times,
            f"{incident_id}:events",
            operation=E.OPERATION_TRANSFER,
            channel=E.CHANNEL_BATCH,
            records=(1000, 5000),
            c2=(6, 9),
            destination_kind=E.DESTINATION_KIND_CROSS_BORDER,
            destination_raw=f"xborder:offshore-analytics-{country.lower()}",
            country=country,
        )
    )
    return GroundTruth(
        incident_id,
        "data_leakage",
        "cross_border_transfer",
        inst.institution_id,
        "actor",
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"Personal data (C2, 1000-5000 records per event, {len(times)} transfers) sent to a "
        f"new cross-border destination in {country} without a security assessment.",
        extra={"destination_country": country},
    )


def c3_auth_data_exfil(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("c3_auth_data_exfil")
    inst, actor = _pick_actor(ctx, rng, E.ACTOR_ROLE_ADMIN)
    t0 = ctx.slot("data_leakage", lambda: ctx.at(ctx.day(rng), 20, rng.randint(0, 30)), HOUR_US)
    times = _spaced(rng, t0, 30, (60.0, 180.0), ctx.end)
    ctx.effects.streams.append(
        _export_events(
            inst,
            actor,
            times,
            f"{incident_id}:events",
            operation=E.OPERATION_EXPORT,
            channel=E.CHANNEL_CONSOLE,
            records=(200, 800),
            c2=(2, 4),
            c3=(2, 3),
            destination_kind=E.DESTINATION_KIND_EXTERNAL,
            destination_raw=f"external:paste-site/{actor.raw_id}",
        )
    )
    return GroundTruth(
        incident_id,
        "data_leakage",
        "c3_auth_data_exfil",
        inst.institution_id,
        "actor",
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"An administrator exports authentication data (C3: passwords/PIN hashes) out of the "
        f"institution: {len(times)} exports to an external destination (C3 normally never "
        f"leaves).",
    )


# --- IT autonomy and control ------------------------------------------------------------------


def _pick_system(
    ctx: PlanContext, rng: random.Random, ok: Callable[[System], bool]
) -> tuple[Institution, System]:
    pool = [(inst, s) for inst in ctx.fleet.institutions for s in inst.systems if ok(s)]
    inst, system = rng.choice(ctx.free(pool, lambda p: p[1].system_id))
    ctx.take(system.system_id)
    return inst, system


def _outage_mod(
    t0: int, t1: int, availability: float, error_rate: float, latency_x: float
) -> Callable[[int, PostureState], None]:
    def mod(t: int, s: PostureState) -> None:
        if t0 <= t < t1:
            wobble = ((t // SECOND_US) % 7) / 100  # deterministic variety between reports
            s.availability = min(s.availability, availability + wobble)
            s.error_rate = max(s.error_rate, error_rate - wobble)
            s.latency_ms *= latency_x
            if t < t0 + 5 * MINUTE_US:
                s.incidents = max(s.incidents, 1)

    return mod


def controllability_regression(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("controllability_regression")

    def ok(s: System) -> bool:
        return s.tier == E.SYSTEM_TIER_CORE and any(
            c.layer == E.LAYER_DATABASE and c.controllable for c in s.components
        )

    inst, system = _pick_system(ctx, rng, ok)
    t0 = ctx.slot("it_autonomy", lambda: ctx.at(ctx.day(rng), 23, rng.randint(0, 30)))
    old = next(c for c in system.components if c.layer == E.LAYER_DATABASE)
    new = ComponentSpec(E.LAYER_DATABASE, "Oracle", "Oracle Database", "19c", False)

    def mod(t: int, s: PostureState) -> None:
        if t >= t0:
            s.components = [new if c.layer == E.LAYER_DATABASE else c for c in s.components]

    ctx.effects.on_posture(system.system_id, mod)
    return GroundTruth(
        incident_id,
        "it_autonomy",
        "controllability_regression",
        inst.institution_id,
        "system",
        system.system_id,
        t0,
        ctx.end,
        f"Core system swaps its controllable database ({old.vendor} {old.product}) for a "
        f"non-controllable one (Oracle Database 19c) in a night change window.",
    )


def new_uncontrollable_component(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("new_uncontrollable_component")

    def ok(s: System) -> bool:
        return s.tier == E.SYSTEM_TIER_CORE and "IBM" not in s.vendors()

    inst, system = _pick_system(ctx, rng, ok)
    t0 = ctx.slot("it_autonomy", lambda: ctx.at(ctx.day(rng), 22, rng.randint(0, 59)), HOUR_US)
    added = ComponentSpec(E.LAYER_MIDDLEWARE, "IBM", "WebSphere MQ", "9.3", False)

    def mod(t: int, s: PostureState) -> None:
        if t >= t0:
            s.components = [*s.components, added]

    ctx.effects.on_posture(system.system_id, mod)
    return GroundTruth(
        incident_id,
        "it_autonomy",
        "new_uncontrollable_component",
        inst.institution_id,
        "system",
        system.system_id,
        t0,
        ctx.end,
        "A non-controllable component (IBM WebSphere MQ) appears in a core system's inventory.",
    )


def outage_cascade(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("outage_cascade")
    inst, origin = _pick_system(ctx, rng, lambda s: s.tier == E.SYSTEM_TIER_CORE)
    t0 = ctx.slot(
        "it_autonomy",
        lambda: ctx.at(ctx.day(rng, weekday=True), rng.randint(10, 16), rng.randint(0, 59)),
        HOUR_US,
    )
    t1 = ctx.clamp(t0 + 45 * MINUTE_US)
    ctx.effects.on_posture(origin.system_id, _outage_mod(t0, t1, 0.35, 0.3, 6.0))
    dependents = [s for s in inst.systems if s is not origin and s.tier != E.SYSTEM_TIER_GENERAL]
    d0, d1 = t0 + 10 * MINUTE_US, ctx.clamp(t0 + 55 * MINUTE_US)
    for s in dependents:
        ctx.effects.on_posture(s.system_id, _outage_mod(d0, d1, 0.9, 0.06, 2.5))
    return GroundTruth(
        incident_id,
        "it_autonomy",
        "outage_cascade",
        inst.institution_id,
        "system",
        origin.system_id,
        t0,
        d1,
        f"Core system outage for 45 minutes (availability ~0.35, errors ~30%), cascading "
        f"10 minutes later into {len(dependents)} dependent systems of the same institution.",
        extra={"affected_systems": [s.system_id for s in dependents]},
    )


def shared_vendor_outage(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("shared_vendor_outage")
    clouds = {v[0] for v in VENDORS[E.LAYER_CLOUD]}
    reach = {v: i for v, i in ctx.fleet.vendor_institutions().items() if v in clouds}
    vendor = max(sorted(reach), key=lambda v: len(reach[v]))
    if len(reach[vendor]) < 3:
        raise ValueError(f"no cloud vendor shared by 3 institutions in this fleet: {reach}")
    t0 = ctx.slot(
        "it_autonomy",
        lambda: ctx.at(ctx.day(rng, weekday=True), rng.randint(10, 16), rng.randint(0, 59)),
        HOUR_US,
    )
    t1 = ctx.clamp(t0 + HOUR_US)
    systems = [s for s in ctx.fleet.systems() if vendor in s.vendors()]
    for s in systems:
        ctx.effects.on_posture(s.system_id, _outage_mod(t0, t1, 0.55, 0.25, 4.0))
    ctx.take(vendor)
    return GroundTruth(
        incident_id,
        "it_autonomy",
        "shared_vendor_outage",
        "",
        "vendor",
        vendor,
        t0,
        t1,
        f"{vendor} outage for one hour degrades {len(systems)} systems across "
        f"{len(reach[vendor])} institutions at once (systemic concentration).",
        extra={
            "affected_institutions": sorted(reach[vendor]),
            "affected_systems": [s.system_id for s in systems],
        },
    )


def latency_regime_shift(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("latency_regime_shift")
    inst, system = _pick_system(ctx, rng, lambda s: s.tier != E.SYSTEM_TIER_GENERAL)
    t0 = ctx.slot("it_autonomy", lambda: ctx.at(ctx.day(rng), 3, rng.randint(0, 59)), HOUR_US)

    def mod(t: int, s: PostureState) -> None:
        if t >= t0:
            s.latency_ms *= 1.7

    ctx.effects.on_posture(system.system_id, mod)
    return GroundTruth(
        incident_id,
        "it_autonomy",
        "latency_regime_shift",
        inst.institution_id,
        "system",
        system.system_id,
        t0,
        ctx.end,
        "BENIGN: the cluster was resized in a change window; p95 latency settles 1.7x higher "
        "for good, availability and errors unchanged. A detector should adapt, not alert.",
        benign=True,
    )


# --- sandbox ----------------------------------------------------------------------------------


def _pick_app(ctx: PlanContext, rng: random.Random) -> App:
    app: App = rng.choice(ctx.free(ctx.fleet.apps(), lambda a: a.app_id))
    ctx.take(app.app_id)
    return app


def _sandbox_truth(
    ctx: PlanContext, incident_id: str, kind: str, app: App, t0: int, t1: int, text: str
) -> GroundTruth:
    return GroundTruth(
        incident_id,
        "sandbox",
        kind,
        app.institution_id,
        "app" if kind == "silent_app" else "test",
        app.app_id if kind == "silent_app" else app.test_id,
        t0,
        t1,
        text,
        extra={"app_id": app.app_id, "test_id": app.test_id},
    )


def user_cap_breach(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("user_cap_breach")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot("sandbox", lambda: ctx.at(ctx.day(rng), rng.randint(10, 14)), HOUR_US)

    def mod(t: int, s: SandboxState) -> None:
        if t >= t0:
            hours = (t - t0) / HOUR_US
            users = int(app.user_cap * (1.02 + 0.01 * hours))
            if users > s.cumulative_users:
                s.active_users = int(s.active_users * users / max(1, s.cumulative_users))
                s.cumulative_users = users

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        ctx,
        incident_id,
        "user_cap_breach",
        app,
        t0,
        ctx.end,
        f"A marketing push takes cumulative users past the approved cap of {app.user_cap}.",
    )


def amount_cap_breach(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("amount_cap_breach")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot("sandbox", lambda: ctx.at(ctx.day(rng), rng.randint(11, 15)), 3 * HOUR_US)
    t1 = ctx.clamp(t0 + 3 * HOUR_US)

    def mod(t: int, s: SandboxState) -> None:
        if t0 <= t < t1:
            s.max_amount_fen = int(app.single_cap_fen * (1.5 + (t // SECOND_US) % 10 / 10))
            s.amount_fen += app.daily_cap_fen // 2
            s.tx_count += 40

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        ctx,
        incident_id,
        "amount_cap_breach",
        app,
        t0,
        t1,
        f"Large transactions above the single cap ({app.single_cap_fen} fen) for three hours; "
        f"the day's total also passes the daily cap ({app.daily_cap_fen} fen).",
    )


def complaint_surge(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("complaint_surge")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot("sandbox", lambda: ctx.at(ctx.day(rng), rng.randint(9, 12)), 3 * HOUR_US)
    t1 = ctx.clamp(t0 + 12 * HOUR_US)

    def mod(t: int, s: SandboxState) -> None:
        if t0 <= t < t1:
            s.complaints = s.complaints * 10 + 8

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        ctx,
        incident_id,
        "complaint_surge",
        app,
        t0,
        t1,
        "Complaints jump tenfold (+8 per hour) for twelve hours after a faulty release.",
    )


def scope_creep(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("scope_creep")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot("sandbox", lambda: ctx.at(ctx.day(rng), rng.randint(9, 17)), HOUR_US)
    feature = "cross_border_remittance"  # in no app's approved list

    def mod(t: int, s: SandboxState) -> None:
        if t >= t0:
            s.features = [*s.features, feature]

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        ctx,
        incident_id,
        "scope_creep",
        app,
        t0,
        ctx.end,
        f"The app starts using an unapproved feature ({feature}) outside its sandbox scope.",
    )


def fund_loss(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("fund_loss")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot("sandbox", lambda: ctx.at(ctx.day(rng), rng.randint(9, 20)), HOUR_US)
    t1 = ctx.clamp(t0 + HOUR_US)
    loss = rng.randint(500_000, 5_000_000)

    def mod(t: int, s: SandboxState) -> None:
        if t0 <= t < t1:
            s.incidents = 1
            s.fund_loss_fen = loss
            s.complaints += 12

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        ctx,
        incident_id,
        "fund_loss",
        app,
        t0,
        t1,
        f"A settlement bug loses customer funds ({loss} fen) in one interval, with an incident.",
    )


def silent_app(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("silent_app")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot(
        "sandbox", lambda: ctx.at(ctx.day(rng), rng.randint(10, 16), rng.randint(0, 59)), HOUR_US
    )
    ctx.effects.silent_from[app.app_id] = t0
    return _sandbox_truth(
        ctx,
        incident_id,
        "silent_app",
        app,
        t0,
        ctx.end,
        "The app stops sending sandbox metrics and heartbeats altogether.",
    )


KINDS: dict[str, tuple[str, Planner]] = {
    "bulk_export_offhours": ("data_leakage", bulk_export_offhours),
    "slow_drip_exfiltration": ("data_leakage", slow_drip_exfiltration),
    "partner_api_scraping": ("data_leakage", partner_api_scraping),
    "cross_border_transfer": ("data_leakage", cross_border_transfer),
    "c3_auth_data_exfil": ("data_leakage", c3_auth_data_exfil),
    "controllability_regression": ("it_autonomy", controllability_regression),
    "new_uncontrollable_component": ("it_autonomy", new_uncontrollable_component),
    "outage_cascade": ("it_autonomy", outage_cascade),
    "shared_vendor_outage": ("it_autonomy", shared_vendor_outage),
    "latency_regime_shift": ("it_autonomy", latency_regime_shift),
    "user_cap_breach": ("sandbox", user_cap_breach),
    "amount_cap_breach": ("sandbox", amount_cap_breach),
    "complaint_surge": ("sandbox", complaint_surge),
    "scope_creep": ("sandbox", scope_creep),
    "fund_loss": ("sandbox", fund_loss),
    "silent_app": ("sandbox", silent_app),
}
FAMILIES = ("data_leakage", "it_autonomy", "sandbox")

# Kinds of the field studies, each module's dict merged in (numbers follow the library order).
from simulators.field_autonomy import KINDS as _FIELD_AUTONOMY  # noqa: E402
from simulators.field_leakage import LEAKAGE_KINDS as _FIELD_LEAKAGE  # noqa: E402

KINDS.update(_FIELD_AUTONOMY)
KINDS.update(_FIELD_LEAKAGE)


def select_kinds(spec: str) -> list[str]:
    """``all`` | ``none`` | comma list of kinds and ``family:<name>``; returned in library order."""
    spec = spec.strip()
    if spec in ("", "none"):
        return []
    wanted: set[str] = set()
    for token in (t.strip() for t in spec.split(",")):
        if token == "all":
            wanted.update(KINDS)
        elif token.startswith("family:"):
            family = token.removeprefix("family:")
            if family not in FAMILIES:
                raise ValueError(f"unknown incident family {family!r}; known: {FAMILIES}")
            wanted.update(k for k, (f, _) in KINDS.items() if f == family)
        elif token in KINDS:
            wanted.add(token)
        elif token:
            raise ValueError(f"unknown incident kind {token!r}; known: {sorted(KINDS)}")
    return [k for k in KINDS if k in wanted]


def plan_incidents(ctx: PlanContext, kinds: list[str]) -> list[GroundTruth]:
    numbers = {k: i for i, k in enumerate(KINDS, start=1)}
    return [KINDS[k][1](ctx, f"inc-{ctx.seed}-{numbers[k]:02d}-{k}") for k in kinds]
