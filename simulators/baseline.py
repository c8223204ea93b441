"""Normal behaviour of the fleet: data access per actor, posture per system, sandbox metrics per
app and heartbeats, each a time-ordered stream with its own seeded random generator (so streams
can be merged lazily in any order and still give the same events)."""

from __future__ import annotations

import random

from suptech.v1 import telemetry_pb2 as tpb

from simulators import events
from simulators.clock import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    SECOND_US,
    consumer_activity,
    local_day_start,
    local_weekday,
    office_activity,
    poisson,
)
from simulators.events import Effects, PostureState, SandboxState, Stream
from simulators.fleet import Actor, App, Institution, System

__all__ = [
    "POSTURE_INTERVAL_S",
    "HEARTBEAT_INTERVAL_S",
    "SANDBOX_INTERVAL_S",
    "actor_stream",
    "nightly_batch_stream",
    "posture_stream",
    "sandbox_stream",
    "heartbeat_stream",
    "metrics_stream",
    "agent_heartbeat_stream",
    "metrics_report",
    "maintenance_window",
    "business_calendar",
    "system_load",
    "institution_office_activity",
    "normal_records",
]

POSTURE_INTERVAL_S = 300
HEARTBEAT_INTERVAL_S = 300
SANDBOX_INTERVAL_S = 3600
METRICS_INTERVAL_S = 300

E = tpb


def institution_office_activity(inst: Institution, t_us: int) -> float:
    """Office activity at ``inst``: its business calendar turns weekdays into rest days
    (holidays) and weekend days into working days (make-up days)."""
    if inst.rest_days or inst.work_days:
        day = local_day_start(t_us)
        wd = local_weekday(t_us)
        if wd < 5 and day in inst.rest_days:
            return office_activity(t_us + (6 - wd) * DAY_US)  # as on the coming Sunday
        if wd >= 5 and day in inst.work_days:
            return office_activity(t_us - wd * DAY_US)  # as on that week's Monday
    return office_activity(t_us)


def _role_activity(role: int, t_us: int, inst: Institution) -> float:
    office = institution_office_activity(inst, t_us)
    if role == E.ACTOR_ROLE_SERVICE:
        return 0.15 + 0.85 * office  # machines work at night too, just less
    if role == E.ACTOR_ROLE_PARTNER:
        return 0.05 + 0.95 * office
    return office


def _lognorm_int(rng: random.Random, mu: float, sigma: float, floor: int = 1) -> int:
    return max(floor, int(rng.lognormvariate(mu, sigma)))


def normal_records(role: int, operation: int) -> float:
    """Median records per event for a role and operation: the baseline incidents stand out from."""
    if operation == E.OPERATION_EXPORT:
        return 150.0 if role == E.ACTOR_ROLE_ADMIN else 50.0
    return 3.0


def _access(rng: random.Random, inst: Institution, actor: Actor, t: int) -> tpb.TelemetryEnvelope:
    system = rng.choice(actor.systems)
    role = actor.role
    channel = E.CHANNEL_CONSOLE
    dest_kind: int = E.DESTINATION_KIND_INTERNAL
    dest, country = "", ""
    c1, c2, c3 = rng.randint(1, 3), 0, 0
    u = rng.random()
    if role == E.ACTOR_ROLE_EMPLOYEE:
        if u < 0.6:
            op, records, c2 = E.OPERATION_QUERY, _lognorm_int(rng, 1.0, 0.7), rng.randint(2, 5)
        elif u < 0.95:
            op, records, c2 = E.OPERATION_READ, rng.randint(1, 3), rng.randint(3, 8)
        else:
            op, c2 = E.OPERATION_EXPORT, rng.randint(4, 8)
            if rng.random() < 0.1:
                records = _lognorm_int(rng, 3.0, 0.5)
                dest_kind = E.DESTINATION_KIND_EXTERNAL
                dest = inst.destinations["external:statutory-auditor"].pseudonym
            else:
                records = _lognorm_int(rng, 3.9, 0.6)
    elif role == E.ACTOR_ROLE_ADMIN:
        if u < 0.5:
            op, records, c2 = E.OPERATION_QUERY, _lognorm_int(rng, 1.2, 0.8), rng.randint(1, 4)
        elif u < 0.9:
            op, records, c2 = E.OPERATION_READ, rng.randint(1, 5), rng.randint(1, 6)
            if rng.random() < 0.05:
                c3 = 1  # credential reset: authentication data, but it never leaves
        else:
            op, records, c2 = E.OPERATION_EXPORT, _lognorm_int(rng, 5.0, 0.6), rng.randint(2, 6)
            channel = E.CHANNEL_BATCH
    elif role == E.ACTOR_ROLE_SERVICE:
        channel = E.CHANNEL_API
        op = E.OPERATION_QUERY if u < 0.7 else E.OPERATION_READ
        records, c1, c2 = _lognorm_int(rng, 1.2, 0.8), 2, 3
        hk = inst.destinations.get("xborder:hk-settlement")
        if hk is not None and rng.random() < 0.02:
            op, records, c2 = E.OPERATION_TRANSFER, rng.randint(1, 5), 1
            dest_kind, dest, country = hk.kind, hk.pseudonym, hk.country
    else:  # partner
        channel = E.CHANNEL_PARTNER
        op, records, c2 = E.OPERATION_QUERY, _lognorm_int(rng, 1.3, 0.6), rng.randint(2, 4)
        dest_kind, dest = E.DESTINATION_KIND_PARTNER, actor.partner_destination
    bytes_out = records * (c1 + c2 + c3) * rng.randint(60, 120) + rng.randint(200, 800)
    return events.data_access(
        inst.institution_id,
        t,
        system_id=system,
        actor_pseudonym=actor.pseudonym,
        role=role,
        channel=channel,
        operation=op,
        records=records,
        c1=c1,
        c2=c2,
        c3=c3,
        bytes_out=bytes_out,
        destination_kind=dest_kind,
        destination_pseudonym=dest,
        destination_country=country,
    )


def actor_stream(
    inst: Institution, actor: Actor, start: int, end: int, scale: float, seed: int
) -> Stream:
    rng = random.Random(f"actor:{seed}:{actor.raw_id}")
    people = actor.role in (E.ACTOR_ROLE_EMPLOYEE, E.ACTOR_ROLE_ADMIN)
    t_hour = start
    while t_hour < end:
        lam = actor.rate_per_hour * scale * _role_activity(actor.role, t_hour, inst)
        day = local_day_start(t_hour)
        # People take days off (a baseline must tolerate a silent day); machines do not.
        if people and random.Random(f"leave:{seed}:{actor.raw_id}:{day}").random() < 0.08:
            lam = 0.0
        times = sorted(t_hour + rng.randrange(HOUR_US) for _ in range(poisson(rng, lam)))
        for t in times:
            if t < end:
                yield t, _access(rng, inst, actor, t)
        t_hour += HOUR_US


def nightly_batch_stream(
    inst: Institution, actor: Actor, start: int, end: int, scale: float, seed: int
) -> Stream:
    """From 01:00 local every night: the warehouse copy, a few large internal exports."""
    rng = random.Random(f"batch:{seed}:{actor.raw_id}")
    day = local_day_start(start)
    while day < end:
        t = day + HOUR_US + rng.randrange(10 * MINUTE_US)
        for _ in range(max(2, round(20 * min(scale, 1.0)))):
            if start <= t < end:
                records = rng.randint(5_000, 20_000)
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
            t += rng.randint(60, 180) * SECOND_US
        day += DAY_US


def system_load(system: System, t: int, inst: Institution) -> float:
    """Share of peak load: office systems follow the office, the others half the customers."""
    office = institution_office_activity(inst, t)
    if system.system_id.endswith(("-oa", "-crm", "-dw")):
        return office
    return 0.5 * office + 0.5 * consumer_activity(t)


def posture_stream(
    inst: Institution, system: System, start: int, end: int, seed: int, effects: Effects
) -> Stream:
    rng = random.Random(f"posture:{seed}:{system.system_id}")
    mods = effects.posture.get(system.system_id, [])
    step = POSTURE_INTERVAL_S * SECOND_US
    vulns = _vuln_windows(random.Random(f"vulns:{seed}:{system.system_id}"), start, end)
    # The standing unpatched vulnerabilities are a rolling stock, each patched 1-4 days after
    # it was found and replaced by a newer one: their count is steady, their age stays small.
    age_rng = random.Random(f"vuln-age:{seed}:{system.system_id}")
    cycles = [
        (age_rng.randint(1, 4) * DAY_US, age_rng.randrange(4 * DAY_US))
        for _ in range(system.unpatched_vulns)
    ]
    silent = effects.silent_from.get(f"it_posture:{system.system_id}", end)
    t = start + system.offset_s * SECOND_US
    while t < min(end, silent):
        load = system_load(system, t, inst)
        state = PostureState(
            availability=1.0,
            incidents=0,
            latency_ms=system.base_latency_ms * (0.7 + 0.6 * load) * rng.lognormvariate(0, 0.07),
            error_rate=system.base_error_rate * (0.5 + load) * rng.lognormvariate(0, 0.2),
            components=list(system.components),
            vulns=system.unpatched_vulns + sum(1 for a, b in vulns if a <= t < b),
            migration=system.migration_status,
            oldest_vuln_days=max(
                [t - a for a, b in vulns if a <= t < b] + [(t + p) % c for c, p in cycles],
                default=0,
            )
            // DAY_US,
        )
        if rng.random() < 0.002:  # a blip nobody needs to be woken for
            state.availability = rng.uniform(0.995, 0.9995)
            state.error_rate *= 3
        if rng.random() < 0.0003:
            state.incidents = 1
        if rng.random() < 0.003:  # one slow report (GC pause, a big query): noise, not an outage
            state.latency_ms *= rng.uniform(2.0, 3.0)
        for mod in mods:
            mod(t, state)
        yield (
            t,
            events.posture(
                inst.institution_id, t, system.system_id, system.tier, state, POSTURE_INTERVAL_S
            ),
        )
        t += step


def _vuln_windows(rng: random.Random, start: int, end: int) -> list[tuple[int, int]]:
    """Critical vulnerabilities published now and then, patched one to four days later."""
    out = []
    day = start
    while day < end:
        if rng.random() < 0.1:
            found = day + rng.randrange(DAY_US)
            out.append((found, found + rng.randint(1, 4) * DAY_US))
        day += DAY_US
    return out


def app_users(app: App, start: int, t: int) -> float:
    """Normal cumulative users at ``t``: compound daily growth, kept safely under the cap."""
    days = (t - start) / DAY_US
    grown = float(app.initial_users * (1 + app.daily_growth) ** days)
    return min(grown, app.user_cap * 0.9)


def sandbox_stream(app: App, start: int, end: int, seed: int, effects: Effects) -> Stream:
    rng = random.Random(f"sandbox:{seed}:{app.app_id}")
    mods = effects.sandbox.get(app.app_id, [])
    # The app going quiet altogether, or only its sandbox reports (its heartbeats go on).
    silent = min(
        effects.silent_from.get(app.app_id, end),
        effects.silent_from.get(f"sandbox:{app.app_id}", end),
    )
    t = start + app.offset_s * SECOND_US
    while t < min(end, silent):
        users = int(app_users(app, start, t))
        active = int(users * 0.08 * consumer_activity(t) * rng.lognormvariate(0, 0.1))
        tx = poisson(rng, active * 0.3)
        amount = int(tx * app.mean_amount_fen * rng.lognormvariate(0, 0.15))
        biggest = min(
            int(app.single_cap_fen * 0.6), int(app.mean_amount_fen * rng.lognormvariate(1.2, 0.4))
        )
        state = SandboxState(
            active_users=active,
            cumulative_users=users,
            tx_count=tx,
            amount_fen=amount,
            max_amount_fen=biggest if tx else 0,
            complaints=poisson(rng, users * 4e-6 * (0.3 + consumer_activity(t))),
            incidents=0,
            fund_loss_fen=0,
            features=list(app.approved_features),
        )
        if len(state.features) > 2 and rng.random() < 0.1:
            state.features.pop(rng.randrange(len(state.features)))  # a feature switched off
        for mod in mods:
            mod(t, state)
        yield (
            t,
            events.sandbox_metrics(
                app.institution_id, t, app.test_id, app.app_id, state, SANDBOX_INTERVAL_S
            ),
        )
        t += SANDBOX_INTERVAL_S * SECOND_US


def heartbeat_stream(
    institution_id: str,
    source_id: str,
    offset_s: int,
    start: int,
    end: int,
    seed: int,
    effects: Effects,
) -> Stream:
    silent = effects.silent_from.get(source_id, end)
    rng = random.Random(f"heartbeat:{seed}:{source_id}")
    t = start + offset_s * SECOND_US
    while t < min(end, silent):
        # Timers drift by a few seconds; receivers must allow for it.
        beat = t + rng.randrange(3 * SECOND_US)
        if beat < min(end, silent):
            yield beat, events.heartbeat(institution_id, beat, source_id, HEARTBEAT_INTERVAL_S)
        t += HEARTBEAT_INTERVAL_S * SECOND_US


def metrics_report(
    institution_id: str,
    t_us: int,
    system_id: str,
    samples: list[tuple[str, str, float]],
    interval_s: int,
) -> tpb.TelemetryEnvelope:
    """A MetricsReport of ``(name, unit, value)`` samples."""
    env = tpb.TelemetryEnvelope(institution_id=institution_id)
    env.event_time.FromMicroseconds(t_us)
    rep = env.metrics
    rep.system_id = system_id
    rep.interval_seconds = interval_s
    for name, unit, value in samples:
        rep.samples.add(name=name, unit=unit, value=round(value, 3))
    return env


def metrics_stream(
    inst: Institution, system: System, start: int, end: int, seed: int, effects: Effects
) -> Stream:
    """What an SDK metrics exporter on the system sends every 5 minutes: CPU and p99 latency,
    with the system's daily rhythm; whatever changes its posture (outages, batch load,
    regressions) shows here too."""
    rng = random.Random(f"metrics:{seed}:{system.system_id}")
    mods = effects.posture.get(system.system_id, [])
    silent = effects.silent_from.get(f"metrics:{system.system_id}", end)
    step = METRICS_INTERVAL_S * SECOND_US
    t = start + ((system.offset_s + 150) % METRICS_INTERVAL_S) * SECOND_US
    while t < min(end, silent):
        load = system_load(system, t, inst)
        latency = system.base_latency_ms * (0.7 + 0.6 * load)
        state = PostureState(
            availability=1.0,
            incidents=0,
            latency_ms=latency,
            error_rate=system.base_error_rate * (0.5 + load),
            components=list(system.components),
            vulns=0,
            migration=system.migration_status,
        )
        for mod in mods:
            mod(t, state)
        busier = max(state.latency_ms / latency, 1.0) ** 0.5
        cpu = min(100.0, (8.0 + 60.0 * load) * busier * rng.lognormvariate(0, 0.05))
        p99 = state.latency_ms * 1.9 * rng.lognormvariate(0, 0.08)
        samples = [("cpu_utilization", "%", cpu), ("latency_ms_p99", "ms", p99)]
        yield (
            t,
            metrics_report(inst.institution_id, t, system.system_id, samples, METRICS_INTERVAL_S),
        )
        t += step


def agent_heartbeat_stream(
    inst: Institution, system: System, start: int, end: int, seed: int, effects: Effects
) -> Stream:
    """Heartbeats of the SDK agent on a system (``source_id`` = system id), vouching for no
    stream: from a minute after the system's first posture report on."""
    first = start + (system.offset_s + 60) * SECOND_US
    return heartbeat_stream(inst.institution_id, system.system_id, 0, first, end, seed, effects)


def maintenance_window(
    institution_id: str,
    sent_us: int,
    window_id: str,
    kind: int,
    start_us: int,
    end_us: int,
    system_ids: list[str],
    reason: str,
) -> tpb.TelemetryEnvelope:
    """A MaintenanceWindow the institution declares at ``sent_us`` (in advance)."""
    env = tpb.TelemetryEnvelope(institution_id=institution_id)
    env.event_time.FromMicroseconds(sent_us)
    w = env.maintenance
    w.window_id = window_id
    w.kind = kind  # type: ignore[assignment]
    w.start.FromMicroseconds(start_us)
    w.end.FromMicroseconds(end_us)
    w.system_ids.extend(system_ids)
    w.reason = reason
    return env


def business_calendar(
    institution_id: str, t_us: int, time_zone: str, holidays: list[str], working_days: list[str]
) -> tpb.TelemetryEnvelope:
    """The institution's BusinessCalendar (ISO dates, local)."""
    env = tpb.TelemetryEnvelope(institution_id=institution_id)
    env.event_time.FromMicroseconds(t_us)
    cal = env.calendar
    cal.time_zone = time_zone
    cal.holidays.extend(holidays)
    cal.working_days.extend(working_days)
    return env
