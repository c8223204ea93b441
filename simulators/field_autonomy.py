"""Incidents of the field study for IT autonomy and sandbox tests: kinds the detectors were not
built around (the issue's items 4-7).

Same shape as :mod:`simulators.incidents` (a planner picks its target with its own seeded
generator, records the ground truth and registers its effects) and registered into its
``KINDS`` with family ``it_autonomy`` or ``sandbox``:

- ``controllability_slide_core`` / ``controllability_slide_important``: a system's inventory is a
  cluster of ten controllable nodes; every day or two one node's server or OS is replaced by a
  non-controllable one. Each step moves the controllability index by 0.03-0.05, less than a
  regression between two reports; together they slide it by 0.2-0.4.
- ``vuln_backlog``: a system stops patching (new critical vulnerabilities pile up, none is
  patched, the oldest ages day by day) or a rollback reopens vulnerabilities published 25-45
  days earlier. The fleet otherwise patches within 1-4 days.
- ``version_regression``: a component's version changes in the inventory (a night change; half
  of the time inside a change window the institution declared, when the fleet sends context
  telemetry), then errors x5-10 and p95
  latency x1.8-2.4 for good: the window ends, the regression does not.
- ``complaint_surge_small``: a small app with about 3 complaints a day gets 10-16 a day (and a
  few incidents) for 24-36 hours: never more than a handful in one hourly report.
- ``complaint_surge_large``: an app with 1-2 million users gets 2.5-3.5 times its usual rate of
  complaints and incidents for 4-8 hours: a proportional surge, not an absolute one.
- ``system_stream_silence``: a system's posture reports (or, if it has a metrics exporter, its
  metrics reports) stop while its own agent's heartbeats, its other streams and the
  institution's heartbeats go on.
- ``sandbox_reports_silence``: an app's sandbox reports stop while its heartbeats go on.

Ground-truth entities are those of the telemetry (system id, test id, app id).
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from suptech.v1 import telemetry_pb2 as tpb

from simulators import baseline
from simulators.clock import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    consumer_activity,
    local_day_start,
    poisson,
)
from simulators.events import PostureState, SandboxState, Stream
from simulators.fleet import VENDORS, App, ComponentSpec, Institution, System

if TYPE_CHECKING:
    from simulators.incidents import GroundTruth, PlanContext

__all__ = ["KINDS", "CLUSTER_NODES", "complaint_shape"]

E = tpb
IT = "it_autonomy"
SANDBOX = "sandbox"
# Nodes of the cluster a sliding system's inventory lists (server and OS per node).
CLUSTER_NODES = 10
# Complaints per user and hour of the simulated apps (simulators.baseline.sandbox_stream).
_COMPLAINTS_PER_USER_HOUR = 4e-6
_DAY0 = local_day_start(0) + 4 * DAY_US  # a Monday
_SHAPE_MEAN = sum(0.3 + consumer_activity(_DAY0 + h * HOUR_US) for h in range(24)) / 24


def complaint_shape(t_us: int) -> float:
    """Relative complaint rate by hour (mean 1 over a weekday): customers complain when active,
    and some at any hour."""
    return (0.3 + consumer_activity(t_us)) / _SHAPE_MEAN


def _truth(
    incident_id: str,
    family: str,
    kind: str,
    institution_id: str,
    entity_kind: str,
    entity_id: str,
    start_us: int,
    end_us: int,
    description: str,
    extra: dict[str, Any] | None = None,
) -> GroundTruth:
    # simulators.incidents imports this module to register its kinds: import it when planning.
    from simulators.incidents import GroundTruth

    return GroundTruth(
        incident_id,
        family,
        kind,
        institution_id,
        entity_kind,
        entity_id,
        start_us,
        end_us,
        description,
        extra=extra or {},
    )


def _day(ctx: PlanContext, rng: random.Random, room: int = 0) -> int:
    """A day late enough for baselines (a third of the period on) and ``room`` days before the
    end when the period allows it."""
    earliest = min(ctx.days - 1, max(1, ctx.days // 3))
    latest = max(earliest, ctx.days - 1 - room)
    return rng.randint(earliest, latest)


def _pick_system(
    ctx: PlanContext, rng: random.Random, ok: Callable[[System], bool]
) -> tuple[Institution, System]:
    pool = [(inst, s) for inst in ctx.fleet.institutions for s in inst.systems if ok(s)]
    inst, system = rng.choice(ctx.free(pool, lambda p: p[1].system_id))
    ctx.take(system.system_id)
    return inst, system


def _pick_app(ctx: PlanContext, rng: random.Random, apps: list[App] | None = None) -> App:
    app: App = rng.choice(ctx.free(apps or ctx.fleet.apps(), lambda a: a.app_id))
    ctx.take(app.app_id)
    return app


def _one_event(t_us: int, build: Callable[[], tpb.TelemetryEnvelope]) -> Callable[[], Stream]:
    def stream() -> Iterator[tuple[int, tpb.TelemetryEnvelope]]:
        yield t_us, build()

    return stream


# --- IT autonomy ------------------------------------------------------------------------------


def _node(c: ComponentSpec, i: int) -> ComponentSpec:
    return dataclasses.replace(c, product=f"{c.product} node {i:02d}")


def _slide(ctx: PlanContext, incident_id: str, kind: str, tier: int) -> GroundTruth:
    rng = ctx.rng(kind)
    inst, system = _pick_system(ctx, rng, lambda s: s.tier == tier)
    by_layer = {c.layer: c for c in system.components}
    server = by_layer[E.LAYER_SERVER]
    if not server.controllable:
        server = ComponentSpec(E.LAYER_SERVER, "Inspur", "NF5280M6", "M6", True)
    os_ = by_layer[E.LAYER_OS]
    if not os_.controllable:
        os_ = ComponentSpec(E.LAYER_OS, "Kylin", "Kylin Server", "V10", True)
    foreign: dict[int, ComponentSpec] = {
        E.LAYER_SERVER: ComponentSpec(E.LAYER_SERVER, "Dell", "PowerEdge R750", "15G", False),
        E.LAYER_OS: ComponentSpec(E.LAYER_OS, "Red Hat", "RHEL", "8.8", False),
    }
    rest = [c for c in system.components if c.layer not in (E.LAYER_SERVER, E.LAYER_OS)]
    nodes = [c for i in range(1, CLUSTER_NODES + 1) for c in (_node(server, i), _node(os_, i))]
    t0 = ctx.slot(IT, lambda: ctx.at(_day(ctx, rng, 2), 22, rng.randint(0, 59)), HOUR_US)
    # A step every day or two (every half day when the period is too short for two steps).
    short = ctx.end - t0 < 3 * DAY_US
    times: list[int] = []
    t = t0
    while t < ctx.end and len(times) < len(nodes):
        times.append(t)
        t += DAY_US // 2 if short else rng.choice([1, 1, 2]) * DAY_US
        t += rng.randint(-60, 60) * MINUTE_US
    # inventories[n]: the inventory after n steps (node i's server, then its OS, go foreign).
    inventories = []
    for n in range(len(times) + 1):
        swapped = [_node(foreign[c.layer], k // 2 + 1) if k < n else c for k, c in enumerate(nodes)]
        inventories.append(rest + swapped)

    def mod(t: int, s: PostureState) -> None:
        s.components = inventories[bisect.bisect_right(times, t)]

    ctx.effects.on_posture(system.system_id, mod)
    tier_name = "core" if tier == E.SYSTEM_TIER_CORE else "important"
    return _truth(
        incident_id,
        IT,
        kind,
        inst.institution_id,
        "system",
        system.system_id,
        t0,
        ctx.end,
        f"The {tier_name} system's cluster of {CLUSTER_NODES} controllable nodes is rebuilt on "
        f"non-controllable servers and OS one component at a time ({len(times)} steps, one "
        f"every day or two): each step moves the controllability index by 0.03-0.05, together "
        f"they slide it far.",
        {"steps": len(times), "step_times": [int(x) for x in times]},
    )


def controllability_slide_core(ctx: PlanContext, incident_id: str) -> GroundTruth:
    return _slide(ctx, incident_id, "controllability_slide_core", E.SYSTEM_TIER_CORE)


def controllability_slide_important(ctx: PlanContext, incident_id: str) -> GroundTruth:
    return _slide(ctx, incident_id, "controllability_slide_important", E.SYSTEM_TIER_IMPORTANT)


def vuln_backlog(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("vuln_backlog")
    inst, system = _pick_system(ctx, rng, lambda s: s.tier != E.SYSTEM_TIER_GENERAL)
    room = ctx.days - 1 - max(1, ctx.days // 3)
    stopped = room >= 6 and rng.random() < 0.6
    if stopped:
        # Patching stops: a new critical vulnerability every 8-20 hours, none patched.
        t0 = ctx.slot(IT, lambda: ctx.at(_day(ctx, rng, 6), rng.randint(9, 17)), HOUR_US)
        found = [t0]
        while found[-1] < ctx.end:
            found.append(found[-1] + rng.randint(8, 20) * HOUR_US)

        def mod(t: int, s: PostureState) -> None:
            k = bisect.bisect_right(found, t)
            if k:
                s.vulns += k
                s.oldest_vuln_days = max(s.oldest_vuln_days, (t - found[0]) // DAY_US)

        text = (
            "The system stops patching: a new critical vulnerability every 8-20 hours, none "
            "patched, so the count rises and the oldest ages day by day (the fleet patches "
            "within 1-4 days)."
        )
        extra: dict[str, Any] = {"variant": "stopped_patching"}
    else:
        # A rollback reopens vulnerabilities published weeks ago; nothing is patched after.
        t0 = ctx.slot(IT, lambda: ctx.at(_day(ctx, rng), rng.randint(9, 17)), HOUR_US)
        age0 = rng.randint(25, 45)
        reopened = rng.randint(2, 4)
        found = [t0 + (k + 1) * rng.randint(18, 30) * HOUR_US for k in range(3 * ctx.days)]

        def mod(t: int, s: PostureState) -> None:
            if t >= t0:
                s.vulns += reopened + bisect.bisect_right(found, t)
                s.oldest_vuln_days = max(s.oldest_vuln_days, age0 + (t - t0) // DAY_US)

        text = (
            f"A rollback of a failed upgrade reopens {reopened} critical vulnerabilities "
            f"published {age0} days earlier; nothing is patched after (more pile up)."
        )
        extra = {"variant": "patch_rolled_back", "oldest_days_at_start": age0}
    ctx.effects.on_posture(system.system_id, mod)
    return _truth(
        incident_id,
        IT,
        "vuln_backlog",
        inst.institution_id,
        "system",
        system.system_id,
        t0,
        ctx.end,
        text,
        extra,
    )


def version_regression(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("version_regression")
    inst, system = _pick_system(ctx, rng, lambda s: s.tier != E.SYSTEM_TIER_GENERAL)
    layers = (E.LAYER_DATABASE, E.LAYER_MIDDLEWARE, E.LAYER_CORE_APPLICATION, E.LAYER_OS)
    comp = rng.choice([c for c in system.components if c.layer in layers])
    new = dataclasses.replace(comp, version=f"{comp.version}.{rng.randint(1, 30)}")
    t_c = ctx.slot(
        IT, lambda: ctx.at(_day(ctx, rng, 1), rng.choice([21, 22, 23]), rng.randint(0, 30))
    )
    err_x = rng.uniform(5.0, 10.0)
    lat_x = rng.uniform(1.8, 2.4)
    t_bad = t_c + 5 * MINUTE_US

    def mod(t: int, s: PostureState) -> None:
        if t >= t_c:
            s.components = [new if c == comp else c for c in s.components]
            if t >= t_bad:
                s.error_rate *= err_x
                s.latency_ms *= lat_x

    ctx.effects.on_posture(system.system_id, mod)
    window_id = ""
    if rng.random() < 0.5 and ctx.fleet.sends_context:
        window_id = f"{incident_id}-chg"
        w0, w1 = t_c - 15 * MINUTE_US, t_c + 90 * MINUTE_US
        sent = max(ctx.start, t_c - DAY_US)
        ctx.effects.streams.append(
            _one_event(
                sent,
                lambda: baseline.maintenance_window(
                    inst.institution_id,
                    sent,
                    window_id,
                    E.WINDOW_KIND_CHANGE,
                    w0,
                    w1,
                    [system.system_id],
                    f"upgrade {comp.product} to {new.version}",
                ),
            )
        )
    return _truth(
        incident_id,
        IT,
        "version_regression",
        inst.institution_id,
        "system",
        system.system_id,
        t_c,
        ctx.end,
        f"{comp.vendor} {comp.product} goes from {comp.version} to {new.version} in a night "
        f"change{' (declared window ' + window_id + ')' if window_id else ''}; from 5 minutes "
        f"later errors x{err_x:.1f} and p95 latency x{lat_x:.1f}, for good.",
        {
            "component": f"{comp.vendor} {comp.product}",
            "from_version": comp.version,
            "to_version": new.version,
            "declared_window_id": window_id,
        },
    )


def system_stream_silence(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("system_stream_silence")
    # Not a system of the most shared cloud (shared_vendor_outage's target): its outage must
    # show in every institution it reaches.
    clouds = {v[0] for v in VENDORS[E.LAYER_CLOUD]}
    reach = {v: i for v, i in ctx.fleet.vendor_institutions().items() if v in clouds}
    top = max(sorted(reach), key=lambda v: len(reach[v]))
    inst, system = _pick_system(ctx, rng, lambda s: top not in s.vendors())
    stream = "metrics" if system.metrics and rng.random() < 0.5 else "it_posture"
    t0 = ctx.slot(
        IT,
        lambda: ctx.at(_day(ctx, rng), rng.randint(9, 17), rng.randint(0, 59)),
        HOUR_US,
    )
    ctx.effects.silent_from[f"{stream}:{system.system_id}"] = t0
    if not system.metrics:
        # The system's agent keeps beating: only the reports stop.
        start, end, seed, effects = ctx.start, ctx.end, ctx.seed, ctx.effects
        ctx.effects.streams.append(
            lambda: baseline.agent_heartbeat_stream(inst, system, start, end, seed, effects)
        )
    what = "posture reports" if stream == "it_posture" else "metrics reports"
    return _truth(
        incident_id,
        IT,
        "system_stream_silence",
        inst.institution_id,
        "system",
        system.system_id,
        t0,
        ctx.end,
        f"The system's {what} stop (a stuck collector) while its agent's heartbeats, its other "
        f"streams and the institution's heartbeats go on.",
        {"stream": stream},
    )


# --- sandbox ----------------------------------------------------------------------------------


def _sandbox_truth(
    incident_id: str, kind: str, app: App, t0: int, t1: int, text: str, extra: dict[str, Any]
) -> GroundTruth:
    silent = kind == "sandbox_reports_silence"
    return _truth(
        incident_id,
        SANDBOX,
        kind,
        app.institution_id,
        "app" if silent else "test",
        app.app_id if silent else app.test_id,
        t0,
        t1,
        text,
        {"app_id": app.app_id, "test_id": app.test_id, **extra},
    )


def complaint_surge_small(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("complaint_surge_small")
    smallest = sorted(ctx.free(ctx.fleet.apps(), lambda a: a.app_id), key=lambda a: a.initial_users)
    app = _pick_app(ctx, rng, smallest[:3])
    per_day = rng.uniform(2.0, 4.0)
    surge_per_day = rng.uniform(10.0, 16.0)
    n_incidents = rng.randint(2, 4)
    t0 = ctx.slot(SANDBOX, lambda: ctx.at(_day(ctx, rng, 1), rng.randint(8, 12)), 3 * HOUR_US)
    t1 = ctx.clamp(t0 + rng.randint(24, 36) * HOUR_US)
    hours = max(1, (t1 - t0) // HOUR_US)

    def mod(t: int, s: SandboxState) -> None:
        r = random.Random(f"{incident_id}:{t}")
        shape = complaint_shape(t)
        # A complaint-prone app: about per_day complaints on a normal day.
        s.complaints += poisson(r, per_day / 24 * shape)
        if t0 <= t < t1:
            s.complaints += poisson(r, surge_per_day / 24 * shape)
            s.incidents += poisson(r, n_incidents / hours)

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        incident_id,
        "complaint_surge_small",
        app,
        t0,
        t1,
        f"A small app (about {per_day:.0f} complaints a day) gets {surge_per_day:.0f} a day and "
        f"{n_incidents} incidents for {hours} hours after a faulty release: never more than a "
        f"handful in one hourly report.",
        {"normal_per_day": per_day, "surge_per_day": surge_per_day},
    )


def complaint_surge_large(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("complaint_surge_large")
    app = _pick_app(ctx, rng)
    # A large app: 1-2 million users, its approved caps scaled with it (registered so).
    factor = rng.uniform(1.0e6, 2.0e6) / app.initial_users
    app.initial_users = int(app.initial_users * factor)
    app.user_cap = int(app.user_cap * factor) // 1000 * 1000
    app.daily_cap_fen = int(app.daily_cap_fen * factor)
    x = rng.uniform(2.5, 3.5)
    incidents_per_user_hour = 1.5e-8
    t0 = ctx.slot(SANDBOX, lambda: ctx.at(_day(ctx, rng, 1), rng.randint(10, 14)), 3 * HOUR_US)
    t1 = ctx.clamp(t0 + rng.randint(4, 8) * HOUR_US)

    def mod(t: int, s: SandboxState) -> None:
        r = random.Random(f"{incident_id}:{t}")
        shape = 0.3 + consumer_activity(t)
        incidents = s.cumulative_users * incidents_per_user_hour * shape
        if t0 <= t < t1:
            complaints = s.cumulative_users * _COMPLAINTS_PER_USER_HOUR * shape
            s.complaints += poisson(r, (x - 1.0) * complaints)
            incidents *= x
        s.incidents += poisson(r, incidents)

    ctx.effects.on_sandbox(app.app_id, mod)
    return _sandbox_truth(
        incident_id,
        "complaint_surge_large",
        app,
        t0,
        t1,
        f"A large app ({app.initial_users:,} users) gets {x:.1f} times its usual rate of "
        f"complaints and incidents for {(t1 - t0) // HOUR_US} hours: a proportional surge.",
        {"factor": x, "users": app.initial_users},
    )


def sandbox_reports_silence(ctx: PlanContext, incident_id: str) -> GroundTruth:
    rng = ctx.rng("sandbox_reports_silence")
    app = _pick_app(ctx, rng)
    t0 = ctx.slot(
        SANDBOX, lambda: ctx.at(_day(ctx, rng), rng.randint(9, 17), rng.randint(0, 59)), HOUR_US
    )
    ctx.effects.silent_from[f"sandbox:{app.app_id}"] = t0
    return _sandbox_truth(
        incident_id,
        "sandbox_reports_silence",
        app,
        t0,
        ctx.end,
        "The app's sandbox reports stop (its reporting job died) while its heartbeats go on.",
        {},
    )


KINDS: dict[str, tuple[str, Callable[[PlanContext, str], GroundTruth]]] = {
    "controllability_slide_core": (IT, controllability_slide_core),
    "controllability_slide_important": (IT, controllability_slide_important),
    "vuln_backlog": (IT, vuln_backlog),
    "version_regression": (IT, version_regression),
    "system_stream_silence": (IT, system_stream_silence),
    "complaint_surge_small": (SANDBOX, complaint_surge_small),
    "complaint_surge_large": (SANDBOX, complaint_surge_large),
    "sandbox_reports_silence": (SANDBOX, sandbox_reports_silence),
}
