"""Envelope builders and the hooks through which injected incidents change the simulated fleet.

A stream is an iterator of ``(event_time_us, envelope)`` in time order; the scenario merges them
and numbers the envelopes. Incidents either add streams or register modifiers that the normal
streams apply to each report before it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from suptech.v1 import telemetry_pb2 as tpb

from simulators.fleet import ComponentSpec

__all__ = [
    "Stream",
    "PostureState",
    "SandboxState",
    "Effects",
    "data_access",
    "posture",
    "sandbox_metrics",
    "heartbeat",
    "SDK_VERSION",
]

Stream = Iterator[tuple[int, tpb.TelemetryEnvelope]]
SDK_VERSION = "suptech-sim/0.1"

_LEVEL_BY_CLASS = {tpb.DATA_CLASS_C3: 4, tpb.DATA_CLASS_C2: 3, tpb.DATA_CLASS_C1: 2}


@dataclass
class PostureState:
    availability: float
    incidents: int
    latency_ms: float
    error_rate: float
    components: list[ComponentSpec]
    vulns: int
    migration: int
    # Age in days of the oldest unpatched critical vulnerability (0 when there is none).
    oldest_vuln_days: int = 0


@dataclass
class SandboxState:
    active_users: int
    cumulative_users: int
    tx_count: int
    amount_fen: int
    max_amount_fen: int
    complaints: int
    incidents: int
    fund_loss_fen: int
    features: list[str]


PostureMod = Callable[[int, PostureState], None]
SandboxMod = Callable[[int, SandboxState], None]


@dataclass
class Effects:
    """What the planned incidents do, keyed by the entity they touch."""

    posture: dict[str, list[PostureMod]] = field(default_factory=dict)
    sandbox: dict[str, list[SandboxMod]] = field(default_factory=dict)
    # Reporting source (app id) -> time from which it sends nothing at all.
    silent_from: dict[str, int] = field(default_factory=dict)
    # Factories, so that every pass over a scenario replays the same injected events.
    streams: list[Callable[[], Stream]] = field(default_factory=list)

    def on_posture(self, system_id: str, mod: PostureMod) -> None:
        self.posture.setdefault(system_id, []).append(mod)

    def on_sandbox(self, app_id: str, mod: SandboxMod) -> None:
        self.sandbox.setdefault(app_id, []).append(mod)


def _envelope(institution_id: str, t_us: int) -> tpb.TelemetryEnvelope:
    env = tpb.TelemetryEnvelope(institution_id=institution_id)
    env.event_time.FromMicroseconds(t_us)
    return env


def data_access(
    institution_id: str,
    t_us: int,
    *,
    system_id: str,
    actor_pseudonym: str,
    role: int,
    channel: int,
    operation: int,
    records: int,
    c1: int = 0,
    c2: int = 0,
    c3: int = 0,
    bytes_out: int,
    destination_kind: int = tpb.DESTINATION_KIND_INTERNAL,
    destination_pseudonym: str = "",
    destination_country: str = "",
) -> tpb.TelemetryEnvelope:
    env = _envelope(institution_id, t_us)
    data_class = (
        tpb.DATA_CLASS_C3
        if c3
        else tpb.DATA_CLASS_C2
        if c2
        else tpb.DATA_CLASS_C1
        if c1
        else tpb.DATA_CLASS_UNSPECIFIED
    )
    if data_class:
        env.classification.data_class = data_class
        env.classification.security_level = _LEVEL_BY_CLASS[data_class]
    da = env.data_access
    da.system_id = system_id
    da.actor_pseudonym = actor_pseudonym
    da.actor_role = role  # type: ignore[assignment]
    da.channel = channel  # type: ignore[assignment]
    da.operation = operation  # type: ignore[assignment]
    da.records = records
    da.fields.c1 = c1
    da.fields.c2 = c2
    da.fields.c3 = c3
    da.bytes_out = bytes_out
    da.destination_kind = destination_kind  # type: ignore[assignment]
    da.destination_pseudonym = destination_pseudonym
    da.destination_country = destination_country
    return env


def posture(
    institution_id: str,
    t_us: int,
    system_id: str,
    tier: int,
    state: PostureState,
    interval_s: int,
) -> tpb.TelemetryEnvelope:
    env = _envelope(institution_id, t_us)
    rep = env.it_posture
    rep.system_id = system_id
    rep.tier = tier  # type: ignore[assignment]
    for c in state.components:
        rep.components.add(
            layer=c.layer,
            vendor=c.vendor,
            product=c.product,
            version=c.version,
            independently_controllable=c.controllable,
        )
    rep.availability = round(state.availability, 5)
    rep.incidents = state.incidents
    rep.latency_ms_p95 = round(state.latency_ms, 1)
    rep.error_rate = round(state.error_rate, 5)
    rep.unpatched_critical_vulns = state.vulns
    rep.oldest_unpatched_critical_days = state.oldest_vuln_days if state.vulns else 0
    rep.migration_status = state.migration  # type: ignore[assignment]
    rep.interval_seconds = interval_s
    return env


def sandbox_metrics(
    institution_id: str, t_us: int, test_id: str, app_id: str, s: SandboxState, interval_s: int
) -> tpb.TelemetryEnvelope:
    env = _envelope(institution_id, t_us)
    m = env.sandbox
    m.test_id = test_id
    m.app_id = app_id
    m.active_users = s.active_users
    m.cumulative_users = s.cumulative_users
    m.transaction_count = s.tx_count
    m.transaction_amount_fen = s.amount_fen
    m.max_transaction_amount_fen = s.max_amount_fen
    m.complaints = s.complaints
    m.incidents = s.incidents
    m.fund_loss_fen = s.fund_loss_fen
    m.features_in_use.extend(s.features)
    m.interval_seconds = interval_s
    return env


def heartbeat(
    institution_id: str, t_us: int, source_id: str, interval_s: int
) -> tpb.TelemetryEnvelope:
    env = _envelope(institution_id, t_us)
    hb = env.heartbeat
    hb.source_id = source_id
    hb.interval_seconds = interval_s
    hb.sdk_version = SDK_VERSION
    return env
