"""Incidents of the field study for data leakage: kinds the detectors were not built around
(the issue's items 3-6), and the benign routines that look like them.

Same shape as :mod:`simulators.incidents` (a planner picks its target with its own seeded
generator, records the ground truth and registers its effects). ``LEAKAGE_KINDS`` is merged into
``simulators.incidents.KINDS`` (family ``data_leakage``):

- ``thin_exfiltration``: for one to three weeks (to the end of the period) an employee sends two
  to four small exports (10-45 records, like the statutory auditor's) on most working days,
  either to one new external destination or, half of the time, to a destination the institution
  already sends to (the auditor's drop box). No day's volume stands out; the excess adds up.
- ``data_class_new_channel``: a personal data class shows up where it never went: C3 fields in
  the nightly batch job's exports, in a service's API queries or in an employee's console reads
  (all internal), or C2 fields in a marketing feed that only ever carried C1, from a data mart
  that only ever held C1, to its partner.
- ``partner_records_ratio``: a partner interface returns 6-15 times more records per query from
  one hour on, for one to three days, at the same query rate.
- ``lateral_spread``: an employee account touches, within a few hours, every system of the
  institution it never used (two to five), with ordinary-looking queries and reads.

``LEAKAGE_CONFOUNDERS`` is merged into ``simulators.confounders.CONFOUNDERS`` (benign ground
truth, family ``data_leakage``), each the routine a detector must not take for the incident
beside it. Month-end extracts in a declared BATCH window, holiday weeks, make-up days, clock
skew and re-sent events are that module's; these are the data-leakage routines it lacks:

- ``weekly_batch_export``: every Saturday (or Sunday) night one institution's nightly batch job
  also exports the whole week (60-200k records per export): big, internal, not declared, and
  recurring at the same hour of the week.
- ``period_end_export``: a payment firm's month-end close, undeclared: its batch job exports the
  month (80-250k records per export, 300-900k at a quarter-end, where a night's exports are
  5-20k) on the month's last evening and again the first night after. Nothing when the period
  holds no month-end.
- ``declared_migration``: an administrator migrates one system's data (bulk internal exports) in
  a BATCH window, for that system only, declared the day before.
- ``new_institution``: a small bank joins the regulator's feed a few days in: its first weeks,
  in which everything it does is new.
- ``new_actor``: a new employee starts a few days in and works like the others (queries, reads,
  exports, the odd export to the statutory auditor): every system, channel and destination it
  uses is new to the account.
- ``one_new_system``: an employee is given one more system for a new task and uses it from then
  on (one system is a task, not a spread).
- ``partner_growth``: a partner's client app launches: its queries triple, records per query
  unchanged.

Ground-truth entities are those of the telemetry (actor pseudonym; ``affected_systems`` where a
system-level finding is also right; the institution for ``new_institution``). Actors and
institutions that the fleet cannot change in place (a partner with a changed interface, a new
institution) come with the whole history of their telemetry, normal until the onset.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suptech.v1 import telemetry_pb2 as tpb

from simulators import baseline, events
from simulators.clock import CST, DAY_US, HOUR_US, MINUTE_US, SECOND_US, local_day_start, poisson
from simulators.events import Stream
from simulators.fleet import (
    Actor,
    Destination,
    Institution,
    System,
    institution_key,
    pseudonymise,
)

if TYPE_CHECKING:
    from simulators.confounders import Delivery
    from simulators.incidents import GroundTruth, PlanContext

__all__ = [
    "LEAKAGE_KINDS",
    "LEAKAGE_CONFOUNDERS",
    "CLASS_VARIANTS",
    "THIN_VARIANTS",
    "data_class_new_channel_variant",
    "thin_exfiltration_variant",
]

E = tpb
LEAK = "data_leakage"
Planner = Callable[["PlanContext", str], "GroundTruth"]
ConfounderPlanner = Callable[["PlanContext", str, "Delivery"], "list[GroundTruth]"]


def _truth(
    incident_id: str,
    kind: str,
    inst: Institution,
    entity_id: str,
    start_us: int,
    end_us: int,
    description: str,
    benign: bool = False,
    extra: dict[str, Any] | None = None,
    entity_kind: str = "actor",
) -> GroundTruth:
    # simulators.incidents imports this module to register its kinds: import it when planning.
    from simulators.incidents import GroundTruth

    return GroundTruth(
        incident_id,
        LEAK,
        kind,
        inst.institution_id,
        entity_kind,
        entity_id,
        start_us,
        max(end_us, start_us),
        description,
        benign=benign,
        extra=extra or {},
    )


def _pick(
    ctx: PlanContext,
    rng: random.Random,
    ok: Callable[[Institution, Actor], bool],
) -> tuple[Institution, Actor]:
    pool = [(inst, a) for inst in ctx.fleet.institutions for a in inst.actors if ok(inst, a)]
    inst, actor = rng.choice(ctx.free(pool, lambda p: p[1].pseudonym))
    ctx.take(actor.pseudonym)
    return inst, actor


def _role(role: int) -> Callable[[Institution, Actor], bool]:
    return lambda inst, a: a.role == role and a.rate_per_hour > 0


def _business_day(inst: Institution, t_us: int) -> bool:
    """A working day at the institution (its calendar's holidays and make-up days count)."""
    noon = local_day_start(t_us) + 12 * HOUR_US
    return baseline.institution_office_activity(inst, noon) >= 0.5


def _late_day(ctx: PlanContext, rng: random.Random, working: bool = True) -> int:
    """A day from a week into a two-week run on, so that what is new to an entity is judged
    against at least one weekly cycle of its habits (of an employee who took the first day
    off, too); a working day at the fleet's institutions when there is one."""
    earliest = min(ctx.days - 1, max(1, ctx.days // 2 + 1))
    days = list(range(earliest, ctx.days))
    if working:
        ref = ctx.fleet.institutions[0]
        days = [d for d in days if _business_day(ref, ctx.at(d, 12))] or days
    return rng.choice(days)


def _access(
    rng: random.Random,
    inst: Institution,
    actor: Actor,
    t: int,
    *,
    system: str,
    operation: int,
    records: int,
    c2: int,
    c3: int = 0,
    channel: int = E.CHANNEL_CONSOLE,
    destination_kind: int = E.DESTINATION_KIND_INTERNAL,
    destination: str = "",
    country: str = "",
    c1: int | None = None,
) -> tpb.TelemetryEnvelope:
    """A data access with the baseline's shape (bytes per record and field, overhead)."""
    f1 = rng.randint(1, 3) if c1 is None else c1
    return events.data_access(
        inst.institution_id,
        t,
        system_id=system,
        actor_pseudonym=actor.pseudonym,
        role=actor.role,
        channel=channel,
        operation=operation,
        records=records,
        c1=f1,
        c2=c2,
        c3=c3,
        bytes_out=records * (f1 + c2 + c3) * rng.randint(60, 120) + rng.randint(200, 800),
        destination_kind=destination_kind,
        destination_pseudonym=destination,
        destination_country=country,
    )


def _lognorm(rng: random.Random, mu: float, sigma: float) -> int:
    return max(1, int(rng.lognormvariate(mu, sigma)))


def _routine_access(
    rng: random.Random, inst: Institution, actor: Actor, t: int, system: str
) -> tpb.TelemetryEnvelope:
    """An ordinary access to ``system``: a few records read, or a small query."""
    read = rng.random() < 0.4
    return _access(
        rng,
        inst,
        actor,
        t,
        system=system,
        operation=E.OPERATION_READ if read else E.OPERATION_QUERY,
        records=rng.randint(1, 3) if read else _lognorm(rng, 1.0, 0.7),
        c2=rng.randint(3, 8) if read else rng.randint(2, 5),
    )


# --- incidents ----------------------------------------------------------------------------------


#: Variants of ``thin_exfiltration``: where the exports go.
THIN_VARIANTS = ("new_destination", "known_destination")


def thin_exfiltration(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("thin_exfiltration")
    return thin_exfiltration_variant(ctx, incident_id, rng.choice(THIN_VARIANTS), rng)


def thin_exfiltration_variant(
    ctx: PlanContext, incident_id: str, variant: str, rng: random.Random | None = None
) -> GroundTruth:
    """``thin_exfiltration`` with its variant chosen (tests ask for each)."""
    if variant not in THIN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {THIN_VARIANTS}")
    rng = rng or ctx.rng(f"thin_exfiltration:{variant}")
    inst, actor = _pick(ctx, rng, _role(E.ACTOR_ROLE_EMPLOYEE))
    # A few working days of the actor's habits first; then to the end of the period (at most
    # three weeks), which in a two-week run is about a week and a half.
    d0 = min(ctx.days - 1, max(1, ctx.days // 3))
    span = rng.randint(7, 21)
    if variant == "new_destination":
        where = rng.choice(["webmail", "cloud-share", "file-drop"])
        dest = pseudonymise(
            institution_key(inst.institution_id), f"external:{where}/{actor.raw_id}"
        )
        text = "one new external destination"
    else:
        dest = inst.destinations["external:statutory-auditor"].pseudonym
        text = "the statutory auditor's drop box, a destination the institution sends to anyway"
    times: list[int] = []
    for d in range(d0, min(ctx.days, d0 + span)):
        if not _business_day(inst, ctx.at(d, 12)) or rng.random() < 0.1:
            continue
        for _ in range(rng.randint(2, 4)):
            t = ctx.at(d, rng.randint(9, 16), rng.randint(0, 59)) + rng.randrange(60) * SECOND_US
            times.append(t)
    if not times:
        times = [ctx.at(d0, 10)]
    times.sort()
    ctx.slot(LEAK, lambda: times[0], HOUR_US)

    def stream() -> Stream:
        r = random.Random(f"{incident_id}:events")
        for t in times:
            yield (
                t,
                _access(
                    r,
                    inst,
                    actor,
                    t,
                    system=r.choice(actor.systems),
                    operation=E.OPERATION_EXPORT,
                    records=r.randint(10, 45),
                    c2=r.randint(4, 8),
                    destination_kind=E.DESTINATION_KIND_EXTERNAL,
                    destination=dest,
                ),
            )

    ctx.effects.streams.append(stream)
    days = len({local_day_start(t) for t in times})
    return _truth(
        incident_id,
        "thin_exfiltration",
        inst,
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"Thin exfiltration: {len(times)} small exports (10-45 records each, like the auditor's) "
        f"on {days} working days to {text}; no single day stands out.",
        extra={"variant": variant, "events": len(times), "days": days},
    )


#: Variants of ``data_class_new_channel``: where the class shows up.
CLASS_VARIANTS = ("batch_c3", "api_c3", "employee_c3", "c2_on_c1_flow")


def data_class_new_channel(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("data_class_new_channel")
    return data_class_new_channel_variant(ctx, incident_id, rng.choice(CLASS_VARIANTS), rng)


def data_class_new_channel_variant(
    ctx: PlanContext, incident_id: str, variant: str, rng: random.Random | None = None
) -> GroundTruth:
    """``data_class_new_channel`` with its variant chosen (tests ask for each)."""
    rng = rng or ctx.rng(f"data_class_new_channel:{variant}")
    kind = "data_class_new_channel"
    day = _late_day(ctx, rng, working=variant != "batch_c3")
    extra: dict[str, Any] = {"variant": variant}
    if variant == "batch_c3":
        inst, actor = _pick(ctx, rng, lambda i, a: a.rate_per_hour == 0)
        t0 = ctx.slot(LEAK, lambda: ctx.at(day, 1, rng.randint(15, 40)), HOUR_US)
        times = [t0 + i * rng.randint(60, 180) * SECOND_US for i in range(rng.randint(8, 16))]
        system, op, channel = actor.systems[0], E.OPERATION_EXPORT, E.CHANNEL_BATCH
        what = "the nightly batch job's exports carry C3 authentication fields (internal)"

        def records(r: random.Random) -> int:
            return r.randint(5_000, 20_000)

    elif variant == "api_c3":
        inst, actor = _pick(ctx, rng, _role(E.ACTOR_ROLE_SERVICE))
        t0 = ctx.slot(LEAK, lambda: ctx.at(day, rng.randint(10, 15), rng.randint(0, 59)), HOUR_US)
        times = _poisson_times(rng, t0, t0 + rng.randint(2, 4) * HOUR_US, actor.rate_per_hour)
        system, op, channel = actor.systems[0], E.OPERATION_QUERY, E.CHANNEL_API
        what = "a service's API queries return C3 authentication fields (internal)"

        def records(r: random.Random) -> int:
            return _lognorm(r, 1.2, 0.8)

    elif variant == "employee_c3":
        inst, actor = _pick(ctx, rng, _role(E.ACTOR_ROLE_EMPLOYEE))
        t0 = ctx.slot(LEAK, lambda: ctx.at(day, rng.randint(10, 15), rng.randint(0, 59)), HOUR_US)
        times = _poisson_times(rng, t0, t0 + 2 * HOUR_US, 8.0)
        system, op, channel = actor.systems[0], E.OPERATION_READ, E.CHANNEL_CONSOLE
        what = "an employee's console reads touch C3 authentication fields (internal)"

        def records(r: random.Random) -> int:
            return r.randint(1, 3)

    elif variant == "c2_on_c1_flow":
        return _c2_on_c1_flow(ctx, incident_id, rng, day)
    else:
        raise ValueError(f"unknown variant {variant!r}; known: {CLASS_VARIANTS}")
    times = [t for t in times if t < ctx.end] or [t0]

    def stream() -> Stream:
        r = random.Random(f"{incident_id}:events")
        for t in times:
            n = records(r)
            env = _access(
                r,
                inst,
                actor,
                t,
                system=system,
                operation=op,
                records=n,
                c1=3 if variant == "batch_c3" else 2 if variant == "api_c3" else None,
                c2=6 if variant == "batch_c3" else 3 if variant == "api_c3" else r.randint(2, 6),
                c3=r.randint(1, 2),
                channel=channel,
            )
            yield t, env

    ctx.effects.streams.append(stream)
    extra["affected_systems"] = [system]
    return _truth(
        incident_id,
        kind,
        inst,
        actor.pseudonym,
        times[0],
        times[-1] + SECOND_US,
        f"A data class where it never went: {what}; {len(times)} events.",
        extra=extra,
    )


def _poisson_times(rng: random.Random, t0: int, t1: int, per_hour: float) -> list[int]:
    times = [t0]
    t = t0
    while True:
        t += int(rng.expovariate(per_hour) * HOUR_US)
        if t >= t1:
            return times
        times.append(t)


def _c2_on_c1_flow(ctx: PlanContext, incident_id: str, rng: random.Random, day: int) -> GroundTruth:
    """A marketing service account that nightly sends C1-only aggregates from its own data mart
    to a partner; from one night on its exports carry C2 fields (names, phone numbers)."""
    inst = rng.choice(ctx.fleet.institutions)
    key = institution_key(inst.institution_id)
    raw = f"{inst.institution_id}/svc-marketing-feed"
    actor = Actor(raw, pseudonymise(key, raw), inst.institution_id, E.ACTOR_ROLE_SERVICE, 0.0, [])
    system = f"{inst.institution_id}-mart"
    partner = pseudonymise(key, f"partner:{inst.institution_id}-marketing")
    ctx.take(actor.pseudonym)
    t0 = ctx.slot(LEAK, lambda: ctx.at(day, 2, rng.randint(0, 30)), HOUR_US)
    onset = local_day_start(t0)
    seed = f"{incident_id}:events"

    def stream() -> Stream:
        r = random.Random(seed)
        d = local_day_start(ctx.start)
        while d < ctx.end:
            t = d + 2 * HOUR_US + r.randrange(30 * MINUTE_US)
            for _ in range(r.randint(3, 6)):
                if ctx.start <= t < ctx.end:
                    leak = d >= onset
                    yield (
                        t,
                        _access(
                            r,
                            inst,
                            actor,
                            t,
                            system=system,
                            operation=E.OPERATION_TRANSFER,
                            records=r.randint(200, 2_000),
                            c1=r.randint(2, 4),
                            c2=r.randint(2, 4) if leak else 0,
                            channel=E.CHANNEL_BATCH,
                            destination_kind=E.DESTINATION_KIND_PARTNER,
                            destination=partner,
                        ),
                    )
                t += r.randint(60, 300) * SECOND_US
            d += DAY_US

    ctx.effects.streams.append(stream)
    first = max(t0, onset + 2 * HOUR_US)
    return _truth(
        incident_id,
        "data_class_new_channel",
        inst,
        actor.pseudonym,
        onset + 2 * HOUR_US,
        ctx.end,
        "A data class where it never went: a marketing feed that every night sends C1-only "
        "aggregates from its own data mart to a partner starts carrying C2 fields "
        f"(from {first} us on).",
        extra={"variant": "c2_on_c1_flow", "affected_systems": [system]},
    )


def _partner_actor(ctx: PlanContext, rng: random.Random, name: str) -> tuple[Institution, Actor]:
    """A partner credential of its own (with its own destination) at some institution: the
    fleet's partner streams cannot be changed in place, so the incident brings the whole
    history of its partner, normal until the onset."""
    inst = rng.choice(
        [i for i in ctx.fleet.institutions if i.kind != "payment"] or ctx.fleet.institutions
    )
    key = institution_key(inst.institution_id)
    raw = f"{inst.institution_id}/partner-{name}"
    business = [s.system_id for s in inst.systems if not s.system_id.endswith(("-oa", "-dw"))]
    actor = Actor(
        raw,
        pseudonymise(key, raw),
        inst.institution_id,
        E.ACTOR_ROLE_PARTNER,
        8.0 * rng.uniform(0.8, 1.5),
        [rng.choice(business)],
        partner_destination=pseudonymise(key, f"partner:{inst.institution_id}-{name}"),
    )
    ctx.take(actor.pseudonym)
    return inst, actor


def _partner_stream(
    ctx: PlanContext,
    inst: Institution,
    actor: Actor,
    seed: str,
    records_x: Callable[[int], float],
    rate_x: Callable[[int], float],
) -> Callable[[], Stream]:
    """A partner's queries as the baseline makes them (Poisson per hour with the office rhythm,
    lognormal records), times ``rate_x(t)`` as many and ``records_x(t)`` times the records."""

    def stream() -> Stream:
        r = random.Random(seed)
        t_hour = ctx.start
        while t_hour < ctx.end:
            office = baseline.institution_office_activity(inst, t_hour)
            lam = actor.rate_per_hour * (0.05 + 0.95 * office) * rate_x(t_hour)
            times = sorted(t_hour + r.randrange(HOUR_US) for _ in range(poisson(r, lam)))
            for t in times:
                if t >= ctx.end:
                    break
                n = max(1, int(r.lognormvariate(1.3, 0.6) * records_x(t)))
                yield (
                    t,
                    _access(
                        r,
                        inst,
                        actor,
                        t,
                        system=actor.systems[0],
                        operation=E.OPERATION_QUERY,
                        records=n,
                        c2=r.randint(2, 4),
                        channel=E.CHANNEL_PARTNER,
                        destination_kind=E.DESTINATION_KIND_PARTNER,
                        destination=actor.partner_destination,
                    ),
                )
            t_hour += HOUR_US

    return stream


def partner_records_ratio(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("partner_records_ratio")
    inst, actor = _partner_actor(ctx, rng, "ratio")
    day = _late_day(ctx, rng)
    t0 = ctx.slot(LEAK, lambda: ctx.at(day, rng.randint(9, 15)), 3 * HOUR_US)
    t1 = min(ctx.end, t0 + rng.randint(1, 3) * DAY_US)
    factor = rng.uniform(6.0, 15.0)
    ctx.effects.streams.append(
        _partner_stream(
            ctx,
            inst,
            actor,
            f"{incident_id}:events",
            lambda t: factor if t0 <= t < t1 else 1.0,
            lambda t: 1.0,
        )
    )
    return _truth(
        incident_id,
        "partner_records_ratio",
        inst,
        actor.pseudonym,
        t0,
        t1,
        f"A partner interface returns {factor:.1f} times more records per query (a broken "
        f"filter, or a caller paging through customers) at its usual query rate, for "
        f"{(t1 - t0) // HOUR_US} hours.",
        extra={"factor": round(factor, 2), "affected_systems": actor.systems},
    )


def lateral_spread(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("lateral_spread")

    def ok(inst: Institution, a: Actor) -> bool:
        return (
            a.role == E.ACTOR_ROLE_EMPLOYEE
            and a.rate_per_hour > 0
            and len(inst.systems) - len(a.systems) >= 2
        )

    inst, actor = _pick(ctx, rng, ok)
    new = [s.system_id for s in inst.systems if s.system_id not in actor.systems]
    rng.shuffle(new)
    day = _late_day(ctx, rng)
    t0 = ctx.slot(LEAK, lambda: ctx.at(day, rng.randint(9, 14), rng.randint(0, 59)), 3 * HOUR_US)
    plan: list[tuple[int, str]] = []
    t = t0
    for system in new:
        for _ in range(rng.randint(3, 12)):
            plan.append((t, system))
            t += rng.randint(30, 240) * SECOND_US
        t += rng.randint(10, 60) * MINUTE_US
    plan = [p for p in plan if p[0] < ctx.end] or [(t0, new[0])]

    def stream() -> Stream:
        r = random.Random(f"{incident_id}:events")
        for t, system in plan:
            yield t, _routine_access(r, inst, actor, t, system)

    ctx.effects.streams.append(stream)
    touched = sorted({s for _, s in plan})
    return _truth(
        incident_id,
        "lateral_spread",
        inst,
        actor.pseudonym,
        plan[0][0],
        plan[-1][0] + SECOND_US,
        f"An employee account spreads within hours to {len(touched)} systems it never used "
        f"({', '.join(touched)}), {len(plan)} ordinary-looking queries and reads.",
        extra={"systems": touched},
    )


# --- benign routines -----------------------------------------------------------------------------


def _batch_exports(
    inst: Institution,
    actor: Actor,
    runs: list[tuple[int, int, tuple[int, int]]],
    seed: str,
    end: int,
) -> Callable[[], Stream]:
    """Internal batch exports like the nightly job's: ``(first time, count, records range)``."""

    def stream() -> Stream:
        r = random.Random(seed)
        out = []
        for t0, n, (lo, hi) in runs:
            t = t0
            for _ in range(n):
                if t < end:
                    out.append((t, r.randint(lo, hi)))
                t += r.randint(60, 240) * SECOND_US
        for t, n in sorted(out):
            yield (
                t,
                _access(
                    r,
                    inst,
                    actor,
                    t,
                    system=actor.systems[0],
                    operation=E.OPERATION_EXPORT,
                    records=n,
                    c1=3,
                    c2=6,
                    channel=E.CHANNEL_BATCH,
                ),
            )

    return stream


def weekly_batch_export(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("weekly_batch_export")
    inst, actor = _pick(ctx, rng, lambda i, a: a.rate_per_hour == 0)
    hour, minute = rng.choice([2, 3, 4]), rng.randint(0, 30)
    weekday = rng.choice([5, 6])  # Saturday or Sunday night
    runs = [
        (ctx.at(d, hour, minute), rng.randint(8, 12), (60_000, 200_000))
        for d in range(ctx.days)
        if _local_date(ctx.at(d, 12)).weekday() == weekday
    ]
    ctx.effects.streams.append(_batch_exports(inst, actor, runs, f"{cid}:events", ctx.end))
    name = "Saturday" if weekday == 5 else "Sunday"
    return [
        _truth(
            f"{cid}-{k}",
            "weekly_batch_export",
            inst,
            actor.pseudonym,
            t0,
            t0 + HOUR_US,
            f"BENIGN: every {name} at {hour:02d}:{minute:02d} the nightly batch job also exports "
            f"the whole week (8-12 exports of 60-200k records, internal, not declared); run "
            f"{k + 1} of {len(runs)}.",
            benign=True,
        )
        for k, (t0, _, _) in enumerate(runs)
    ]


def _local_date(t_us: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(t_us / SECOND_US, CST).date()


def period_end_export(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("period_end_export")
    inst, actor = _pick(ctx, rng, lambda i, a: a.rate_per_hour == 0 and i.kind == "payment")
    out = []
    for d in range(ctx.days):
        last = _local_date(ctx.at(d, 12))
        if (last + datetime.timedelta(days=1)).day != 1:
            continue
        quarter = last.month % 3 == 0
        lo, hi = (300_000, 900_000) if quarter else (80_000, 250_000)
        n = rng.randint(20, 30) if quarter else rng.randint(10, 20)
        # The close: the month's last evening, and again the first night of the next month.
        runs = [(ctx.at(d, 20, rng.randint(0, 30)), n, (lo, hi))]
        if d + 1 < ctx.days:
            runs.append((ctx.at(d + 1, 2, rng.randint(0, 30)), n, (lo, hi)))
        ctx.effects.streams.append(
            _batch_exports(inst, actor, runs, f"{cid}:{last.isoformat()}", ctx.end)
        )
        what = "quarter" if quarter else "month"
        out.append(
            _truth(
                f"{cid}-{last.isoformat()}",
                "period_end_export",
                inst,
                actor.pseudonym,
                runs[0][0],
                runs[-1][0] + 2 * HOUR_US,
                f"BENIGN: {what}-end close, not declared: the batch job exports the {what} "
                f"({n} exports of {lo // 1000}-{hi // 1000}k records, internal) on its last "
                f"evening and the first night after.",
                benign=True,
                extra={"quarter_end": quarter},
            )
        )
    return out


def declared_migration(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("declared_migration")
    inst, actor = _pick(ctx, rng, _role(E.ACTOR_ROLE_ADMIN))
    system = rng.choice(inst.systems[1:] or inst.systems).system_id
    day = _late_day(ctx, rng, working=False)
    t0 = ctx.at(day, rng.choice([1, 2, 20, 21]))
    t1 = min(ctx.end - MINUTE_US, t0 + rng.randint(3, 5) * HOUR_US)
    wid = f"migration-{cid}"
    sent = max(ctx.start, t0 - DAY_US)
    declaration = baseline.maintenance_window(
        inst.institution_id,
        sent,
        wid,
        E.WINDOW_KIND_BATCH,
        t0,
        t1,
        [system],
        "data migration to the new warehouse",
    )

    def stream() -> Stream:
        yield sent, declaration
        r = random.Random(f"{cid}:events")
        t = t0 + r.randint(1, 10) * MINUTE_US
        while t < t1:
            yield (
                t,
                _access(
                    r,
                    inst,
                    actor,
                    t,
                    system=system,
                    operation=E.OPERATION_EXPORT,
                    records=r.randint(20_000, 80_000),
                    c2=r.randint(2, 6),
                    channel=E.CHANNEL_BATCH,
                ),
            )
            t += r.randint(120, 400) * SECOND_US

    ctx.effects.streams.append(stream)
    return [
        _truth(
            cid,
            "declared_migration",
            inst,
            actor.pseudonym,
            t0,
            t1,
            f"BENIGN: an administrator migrates {system}'s data (bulk internal exports of "
            f"20-80k records) inside BATCH window {wid}, declared the day before for that "
            f"system only.",
            benign=True,
            extra={"declared_window_id": wid, "affected_systems": [system]},
        )
    ]


def _employee(inst: Institution, rng: random.Random, raw: str, systems: list[str]) -> Actor:
    key = institution_key(inst.institution_id)
    return Actor(
        raw,
        pseudonymise(key, raw),
        inst.institution_id,
        E.ACTOR_ROLE_EMPLOYEE,
        6.0 * rng.uniform(0.6, 1.5),
        systems,
    )


def new_actor(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("new_actor")
    inst = rng.choice(ctx.fleet.institutions)
    ids = [s.system_id for s in inst.systems]
    raw = f"{inst.institution_id}/emp-{900 + rng.randrange(100):03d}"
    actor = _employee(inst, rng, raw, rng.sample(ids, k=min(len(ids), rng.randint(1, 3))))
    ctx.take(actor.pseudonym)
    day = min(ctx.days - 1, max(1, ctx.days // 4) + rng.randint(0, 2))
    t0 = ctx.at(day, 0)
    ctx.effects.streams.append(
        lambda: baseline.actor_stream(inst, actor, t0, ctx.end, 1.0, ctx.seed)
    )
    return [
        _truth(
            cid,
            "new_actor",
            inst,
            actor.pseudonym,
            t0,
            ctx.end,
            "BENIGN: a new employee starts and works like the others (queries, reads, exports, "
            "the odd export to the statutory auditor): every system, channel and destination "
            "is new to the account.",
            benign=True,
        )
    ]


def new_institution(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    """A small bank whose feed starts a few days in, with the fleet's calendar."""
    rng = ctx.rng("new_institution")
    banks = sum(1 for i in ctx.fleet.institutions if i.kind != "payment")
    iid = f"bank-sz-{banks + 1:02d}"
    key = institution_key(iid)
    inst = Institution(iid, "small_bank", "Rural Commercial Bank (new)")
    ref = next((i for i in ctx.fleet.institutions if i.kind == "small_bank"), None)
    if ref is not None:
        inst.rest_days, inst.work_days = set(ref.rest_days), set(ref.work_days)
    for suffix, tier in (("core", 1), ("mbank", 2), ("crm", 2), ("oa", 3)):
        inst.systems.append(System(f"{iid}-{suffix}", iid, suffix, tier, [], 100.0, 0.001, 0, 0, 0))
    ids = [s.system_id for s in inst.systems]
    for raw, dest_kind in (("external:statutory-auditor", E.DESTINATION_KIND_EXTERNAL),):
        inst.destinations[raw] = Destination(raw, pseudonymise(key, raw), dest_kind)
    for i in range(1, 11):
        systems = rng.sample(ids, k=rng.randint(1, 3))
        inst.actors.append(_employee(inst, rng, f"{iid}/emp-{i:03d}", systems))
    for role, prefix, rate, n in (
        (E.ACTOR_ROLE_ADMIN, "adm", 3.0, 2),
        (E.ACTOR_ROLE_SERVICE, "svc", 12.0, 2),
    ):
        for i in range(1, n + 1):
            raw = f"{iid}/{prefix}-{i:03d}"
            systems = ids if role == E.ACTOR_ROLE_ADMIN else [rng.choice(ids[:3])]
            actor = Actor(raw, pseudonymise(key, raw), iid, role, rate * rng.uniform(0.6, 1.5), [])
            actor.systems = systems
            inst.actors.append(actor)
    raw = f"{iid}/partner-001"
    inst.actors.append(
        Actor(
            raw,
            pseudonymise(key, raw),
            iid,
            E.ACTOR_ROLE_PARTNER,
            8.0 * rng.uniform(0.6, 1.5),
            [rng.choice(ids[:3])],
            partner_destination=pseudonymise(key, f"partner:{iid}-p1"),
        )
    )
    raw = f"{iid}/svc-nightly-batch"
    inst.actors.append(Actor(raw, pseudonymise(key, raw), iid, E.ACTOR_ROLE_SERVICE, 0.0, ids[:1]))
    day = min(ctx.days - 1, max(1, ctx.days // 4) + rng.randint(0, 1))
    t0 = ctx.at(day, 0)
    holidays = sorted(_local_date(d).isoformat() for d in inst.rest_days)
    working = sorted(_local_date(d).isoformat() for d in inst.work_days)

    def stream() -> Stream:
        yield t0, baseline.business_calendar(iid, t0, "Asia/Shanghai", holidays, working)

    ctx.effects.streams.append(stream)
    for actor in inst.actors:
        make = baseline.actor_stream if actor.rate_per_hour > 0 else baseline.nightly_batch_stream
        ctx.effects.streams.append(
            lambda a=actor, make=make: make(inst, a, t0, ctx.end, 1.0, ctx.seed)  # type: ignore[misc]
        )
    return [
        _truth(
            cid,
            "new_institution",
            inst,
            iid,
            t0,
            ctx.end,
            f"BENIGN: {iid}, a small bank, joins the regulator's feed on day {day + 1}: its "
            f"first weeks, in which every actor, system and destination is new.",
            benign=True,
            entity_kind="institution",
        )
    ]


def one_new_system(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("one_new_system")

    def ok(inst: Institution, a: Actor) -> bool:
        return (
            a.role == E.ACTOR_ROLE_EMPLOYEE
            and a.rate_per_hour > 0
            and len(a.systems) < len(inst.systems)
        )

    inst, actor = _pick(ctx, rng, ok)
    system = rng.choice([s.system_id for s in inst.systems if s.system_id not in actor.systems])
    t0 = ctx.at(_late_day(ctx, rng), 9)
    share = 1.0 / (len(actor.systems) + 1)

    def stream() -> Stream:
        r = random.Random(f"{cid}:events")
        t_hour = t0
        while t_hour < ctx.end:
            lam = actor.rate_per_hour * share * baseline.institution_office_activity(inst, t_hour)
            for t in sorted(t_hour + r.randrange(HOUR_US) for _ in range(poisson(r, lam))):
                if t >= ctx.end:
                    break
                yield t, _routine_access(r, inst, actor, t, system)
            t_hour += HOUR_US

    ctx.effects.streams.append(stream)
    return [
        _truth(
            cid,
            "one_new_system",
            inst,
            actor.pseudonym,
            t0,
            ctx.end,
            f"BENIGN: an employee is given access to one more system ({system}) for a new task "
            f"and uses it from then on like its others.",
            benign=True,
            extra={"system": system},
        )
    ]


def partner_growth(ctx: PlanContext, cid: str, delivery: Delivery) -> list[GroundTruth]:
    rng = ctx.rng("partner_growth")
    inst, actor = _partner_actor(ctx, rng, "growth")
    t0 = ctx.at(_late_day(ctx, rng), 9)
    factor = rng.uniform(2.5, 3.5)
    ctx.effects.streams.append(
        _partner_stream(
            ctx,
            inst,
            actor,
            f"{cid}:events",
            lambda t: 1.0,
            lambda t: factor if t >= t0 else 1.0,
        )
    )
    return [
        _truth(
            cid,
            "partner_growth",
            inst,
            actor.pseudonym,
            t0,
            ctx.end,
            f"BENIGN: a partner's client app launches: its queries grow {factor:.1f}-fold, "
            f"records per query unchanged.",
            benign=True,
            extra={"factor": round(factor, 2)},
        )
    ]


LEAKAGE_KINDS: dict[str, tuple[str, Planner]] = {
    "thin_exfiltration": (LEAK, thin_exfiltration),
    "data_class_new_channel": (LEAK, data_class_new_channel),
    "partner_records_ratio": (LEAK, partner_records_ratio),
    "lateral_spread": (LEAK, lateral_spread),
}
LEAKAGE_CONFOUNDERS: dict[str, ConfounderPlanner] = {
    "weekly_batch_export": weekly_batch_export,
    "period_end_export": period_end_export,
    "declared_migration": declared_migration,
    "new_institution": new_institution,
    "new_actor": new_actor,
    "one_new_system": one_new_system,
    "partner_growth": partner_growth,
}
