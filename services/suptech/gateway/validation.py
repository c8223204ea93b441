"""Validation of telemetry envelopes: plain functions, no gRPC or Kafka, a few µs per event.

Each check returns ``None`` (accepted) or ``(RejectReason, detail)`` where the detail names the
field. The code is written for speed on the hot path (one call per event at 100k events/s):
module constants bound as defaults, no allocation on the accepting path.
"""

from __future__ import annotations

import datetime
import math
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from suptech.v1 import ingest_pb2, telemetry_pb2

__all__ = [
    "Limits",
    "Rejection",
    "BatchVerdict",
    "validate_event",
    "validate_batch",
    "MAX_ID_CHARS",
    "MAX_COMPONENTS",
    "MAX_FEATURES",
    "MAX_METRIC_SAMPLES",
]

R = ingest_pb2.RejectReason
MISSING: int = R.REJECT_REASON_MISSING_FIELD
RANGE: int = R.REJECT_REASON_OUT_OF_RANGE
SKEW: int = R.REJECT_REASON_TIMESTAMP_SKEW
LARGE: int = R.REJECT_REASON_TOO_LARGE
ENUM: int = R.REJECT_REASON_UNKNOWN_ENUM
MISMATCH: int = R.REJECT_REASON_INSTITUTION_MISMATCH
DUPLICATE: int = R.REJECT_REASON_DUPLICATE_IN_BATCH
FORMAT: int = R.REJECT_REASON_INVALID_FORMAT
NO_PAYLOAD: int = R.REJECT_REASON_NO_PAYLOAD

# (reason, detail naming the field)
Rejection = tuple[int, str]

MAX_ID_CHARS = 128
MAX_COMPONENTS = 256
MAX_FEATURES = 64
# Beyond these a value is a unit mistake or garbage, not telemetry.
MAX_COUNT = 10**10  # records, users: more than the world's population
MAX_SMALL_COUNT = 10**7  # incidents, complaints, vulnerabilities in one interval
MAX_BYTES = 10**15  # 1 PB out in one event
MAX_TRANSACTIONS = 10**12
MAX_FEN = 10**16  # 100 trillion CNY
MAX_INTERVAL_S = 366 * 24 * 3600
MAX_LATENCY_MS = 1e9
MAX_SECURITY_LEVEL = 5
MAX_DURATION_MS = 366 * 24 * 3600 * 1000
MAX_METRIC_SAMPLES = 256
MAX_METRIC_NAME = 64
MAX_UNIT_CHARS = 16
MAX_VOUCHES = 64
MAX_WINDOW_SYSTEMS = 256
MAX_WINDOW_S = 7 * 24 * 3600
MAX_REASON_CHARS = 256
MAX_HOLIDAYS = 400
MAX_WORKING_DAYS = 100
# A magnitude beyond this is a unit mistake or garbage (it also keeps squares finite).
MAX_METRIC_MAGNITUDE = 1e15

_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}").fullmatch
# HMAC-SHA256 as lowercase hex: one spelling per actor, and no raw personal id fits it.
_PSEUDONYM = re.compile(r"[0-9a-f]{64}").fullmatch
_COUNTRY = re.compile(r"[A-Z]{2}").fullmatch
_HEX_DIGITS = b"0123456789abcdef"
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}").fullmatch
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}").fullmatch
_STREAM_KINDS = frozenset({"data_access", "it_posture", "metrics", "sandbox"})

T = telemetry_pb2
_DATA_CLASS = frozenset(T.DataClass.values())
_CHANNEL = frozenset(T.Channel.values())
_OPERATION = frozenset(T.Operation.values())
_DESTINATION = frozenset(T.DestinationKind.values())
_ROLE = frozenset(T.ActorRole.values())
_TIER = frozenset(T.SystemTier.values())
_LAYER = frozenset(T.Layer.values())
_MIGRATION = frozenset(T.MigrationStatus.values())
_WINDOW_KIND = frozenset(T.WindowKind.values())
_INTERNAL = T.DESTINATION_KIND_INTERNAL


@dataclass(frozen=True)
class Limits:
    # How far in the future an event_time may be (clock skew at the institution).
    max_skew_s: float = 300.0
    # How old an event may be: the SDK spools through long outages.
    max_age_s: float = 30 * 24 * 3600.0
    # Serialised size of one event (as received, unknown fields included): far below a Kafka
    # record, so that any mix of accepted events splits into records Kafka takes.
    max_event_bytes: int = 256 * 1024


DEFAULT_LIMITS = Limits()


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _id(value: str, name: str) -> Rejection | None:
    """A required identifier: present and at most MAX_ID_CHARS."""
    if not value:
        return MISSING, f"{name} is required"
    if len(value) > MAX_ID_CHARS:
        return LARGE, f"{name} has {len(value)} chars, at most {MAX_ID_CHARS}"
    return None


def _enum(value: int, known: frozenset[int], name: str, required: bool) -> Rejection | None:
    if value not in known:
        return ENUM, f"{name}: unknown enum value {value}"
    if required and value == 0:
        return MISSING, f"{name} is required (UNSPECIFIED)"
    return None


def _at_most(value: int, bound: int, name: str) -> Rejection | None:
    if value > bound:
        return RANGE, f"{name} = {value} exceeds {bound:.0e}"
    return None


def _data_access(
    p: Any,
    _hex: bytes = _HEX_DIGITS,
    _country: Any = _COUNTRY,
    _role: frozenset[int] = _ROLE,
    _channel: frozenset[int] = _CHANNEL - {0},
    _operation: frozenset[int] = _OPERATION - {0},
    _destination: frozenset[int] = _DESTINATION - {0},
) -> Rejection | None:
    # Hot path: one expression that accepts; the slow path says why not. (fields.c1..c3 are
    # uint32, below any bound worth checking.)
    # A pseudonym is 64 chars of which none is left once the lowercase hex digits are deleted:
    # the same test as _PSEUDONYM, in a third of the time of the regex.
    system_id = p.system_id
    actor = p.actor_pseudonym
    if (
        0 < len(system_id) <= MAX_ID_CHARS
        and len(actor) == 64
        and not actor.encode().translate(None, _hex)
        and p.actor_role in _role
        and p.channel in _channel
        and p.operation in _operation
        and p.destination_kind in _destination
        and p.records <= MAX_COUNT
        and p.bytes_out <= MAX_BYTES
        and p.bytes_in <= MAX_BYTES
        and p.duration_ms <= MAX_DURATION_MS
    ):
        dest = p.destination_pseudonym
        country = p.destination_country
        if (not dest or (len(dest) == 64 and not dest.encode().translate(None, _hex))) and (
            not country or _country(country) is not None
        ):
            return None
    return _diagnose_data_access(p)


def _diagnose_data_access(p: Any) -> Rejection | None:
    r = _id(p.system_id, "data_access.system_id")
    if r is not None:
        return r
    actor = p.actor_pseudonym
    if not actor:
        return MISSING, "data_access.actor_pseudonym is required"
    if _PSEUDONYM(actor) is None:
        return FORMAT, "data_access.actor_pseudonym must be 64 lowercase hex chars (HMAC-SHA256)"
    if p.actor_role not in _ROLE:
        return ENUM, f"data_access.actor_role: unknown enum value {p.actor_role}"
    channel = p.channel
    if channel not in _CHANNEL or not channel:
        return _enum(channel, _CHANNEL, "data_access.channel", True)
    operation = p.operation
    if operation not in _OPERATION or not operation:
        return _enum(operation, _OPERATION, "data_access.operation", True)
    destination = p.destination_kind
    if destination not in _DESTINATION or not destination:
        return _enum(destination, _DESTINATION, "data_access.destination_kind", True)
    if p.records > MAX_COUNT:
        return _at_most(p.records, MAX_COUNT, "data_access.records")
    if p.bytes_out > MAX_BYTES:
        return _at_most(p.bytes_out, MAX_BYTES, "data_access.bytes_out")
    if p.bytes_in > MAX_BYTES:
        return _at_most(p.bytes_in, MAX_BYTES, "data_access.bytes_in")
    if p.duration_ms > MAX_DURATION_MS:
        return _at_most(p.duration_ms, MAX_DURATION_MS, "data_access.duration_ms")
    dest = p.destination_pseudonym
    if dest and _PSEUDONYM(dest) is None:
        return (
            FORMAT,
            "data_access.destination_pseudonym must be 64 lowercase hex chars (HMAC-SHA256)",
        )
    country = p.destination_country
    if country and _COUNTRY(country) is None:
        return FORMAT, f"data_access.destination_country {_short(country)} is not ISO 3166 alpha-2"
    return None


def _unit(value: float, name: str) -> Rejection | None:
    # Written so that NaN fails too.
    if not 0.0 <= value <= 1.0:
        return RANGE, f"{name} = {value} is not within 0..1"
    return None


def _it_posture(p: Any) -> Rejection | None:
    r = _id(p.system_id, "it_posture.system_id")
    if r is not None:
        return r
    tier = p.tier
    if tier not in _TIER or not tier:
        return _enum(tier, _TIER, "it_posture.tier", True)
    if p.migration_status not in _MIGRATION:
        return ENUM, f"it_posture.migration_status: unknown enum value {p.migration_status}"
    r = _unit(p.availability, "it_posture.availability") or _unit(
        p.error_rate, "it_posture.error_rate"
    )
    if r is not None:
        return r
    latency = p.latency_ms_p95
    if not 0.0 <= latency <= MAX_LATENCY_MS:
        return RANGE, f"it_posture.latency_ms_p95 = {latency} is not within 0..{MAX_LATENCY_MS:.0e}"
    r = (
        _at_most(p.incidents, MAX_SMALL_COUNT, "it_posture.incidents")
        or _at_most(
            p.unpatched_critical_vulns, MAX_SMALL_COUNT, "it_posture.unpatched_critical_vulns"
        )
        or _at_most(p.interval_seconds, MAX_INTERVAL_S, "it_posture.interval_seconds")
        or _at_most(
            p.oldest_unpatched_critical_days,
            MAX_INTERVAL_S // 86400 * 30,
            "it_posture.oldest_unpatched_critical_days",
        )
    )
    if r is not None:
        return r
    components = p.components
    if len(components) > MAX_COMPONENTS:
        return LARGE, f"it_posture.components has {len(components)} items, at most {MAX_COMPONENTS}"
    for i, c in enumerate(components):
        if c.layer not in _LAYER:
            return ENUM, f"it_posture.components[{i}].layer: unknown enum value {c.layer}"
        r = _id(c.vendor, f"it_posture.components[{i}].vendor") or _id(
            c.product, f"it_posture.components[{i}].product"
        )
        if r is not None:
            return r
        if len(c.version) > MAX_ID_CHARS:
            return LARGE, f"it_posture.components[{i}].version is longer than {MAX_ID_CHARS}"
    return None


def _sandbox(p: Any) -> Rejection | None:
    r = _id(p.test_id, "sandbox.test_id") or _id(p.app_id, "sandbox.app_id")
    if r is not None:
        return r
    r = (
        _at_most(p.active_users, MAX_COUNT, "sandbox.active_users")
        or _at_most(p.cumulative_users, MAX_COUNT, "sandbox.cumulative_users")
        or _at_most(p.transaction_count, MAX_TRANSACTIONS, "sandbox.transaction_count")
        or _at_most(p.transaction_amount_fen, MAX_FEN, "sandbox.transaction_amount_fen")
        or _at_most(p.max_transaction_amount_fen, MAX_FEN, "sandbox.max_transaction_amount_fen")
        or _at_most(p.complaints, MAX_SMALL_COUNT, "sandbox.complaints")
        or _at_most(p.incidents, MAX_SMALL_COUNT, "sandbox.incidents")
        or _at_most(p.fund_loss_fen, MAX_FEN, "sandbox.fund_loss_fen")
        or _at_most(p.interval_seconds, MAX_INTERVAL_S, "sandbox.interval_seconds")
    )
    if r is not None:
        return r
    features = p.features_in_use
    if len(features) > MAX_FEATURES:
        return LARGE, f"sandbox.features_in_use has {len(features)} items, at most {MAX_FEATURES}"
    for i, name in enumerate(features):
        r = _id(name, f"sandbox.features_in_use[{i}]")
        if r is not None:
            return r
    return None


def _heartbeat(p: Any) -> Rejection | None:
    r = _id(p.source_id, "heartbeat.source_id")
    if r is not None:
        return r
    if len(p.sdk_version) > MAX_ID_CHARS:
        return LARGE, f"heartbeat.sdk_version is longer than {MAX_ID_CHARS} chars"
    r = _at_most(p.interval_seconds, MAX_INTERVAL_S, "heartbeat.interval_seconds")
    if r is not None:
        return r
    vouches = p.vouches_for
    if len(vouches) > MAX_VOUCHES:
        return LARGE, f"heartbeat.vouches_for has {len(vouches)} items, at most {MAX_VOUCHES}"
    for i, stream in enumerate(vouches):
        kind, _, sid = stream.partition(":")
        if kind not in _STREAM_KINDS or len(sid) > MAX_ID_CHARS or (":" in stream and not sid):
            return FORMAT, (
                f"heartbeat.vouches_for[{i}] {_short(stream)} is not <kind> or <kind>:<id> "
                f"with kind one of {', '.join(sorted(_STREAM_KINDS))}"
            )
    return None


def _metrics(p: Any) -> Rejection | None:
    r = _id(p.system_id, "metrics.system_id")
    if r is not None:
        return r
    r = _at_most(p.interval_seconds, MAX_INTERVAL_S, "metrics.interval_seconds")
    if r is not None:
        return r
    samples = p.samples
    if not samples:
        return MISSING, "metrics.samples needs at least one sample"
    if len(samples) > MAX_METRIC_SAMPLES:
        return LARGE, f"metrics.samples has {len(samples)} items, at most {MAX_METRIC_SAMPLES}"
    seen: set[tuple[str, str]] = set()
    for i, m in enumerate(samples):
        r = _metric_sample(m, f"metrics.samples[{i}]")
        if r is not None:
            return r
        key = (m.component, m.name)
        if key in seen:
            return FORMAT, f"metrics.samples[{i}] repeats {m.component}/{m.name} in one report"
        seen.add(key)
    return None


def _metric_sample(m: Any, where: str) -> Rejection | None:
    name = m.name
    if not name:
        return MISSING, f"{where}.name is required"
    if _METRIC_NAME(name) is None:
        return FORMAT, f"{where}.name {_short(name)} is not [a-z][a-z0-9_.]* of at most 64 chars"
    if len(m.unit) > MAX_UNIT_CHARS:
        return LARGE, f"{where}.unit has {len(m.unit)} chars, at most {MAX_UNIT_CHARS}"
    if len(m.component) > MAX_ID_CHARS:
        return LARGE, f"{where}.component has {len(m.component)} chars, at most {MAX_ID_CHARS}"
    # Written so that NaN fails too.
    if not -MAX_METRIC_MAGNITUDE <= m.value <= MAX_METRIC_MAGNITUDE:
        return RANGE, f"{where}.value = {m.value} is not finite within +-{MAX_METRIC_MAGNITUDE:.0e}"
    return None


def _maintenance(p: Any) -> Rejection | None:
    r = _id(p.window_id, "maintenance.window_id")
    if r is not None:
        return r
    kind = p.kind
    if kind not in _WINDOW_KIND or not kind:
        return _enum(kind, _WINDOW_KIND, "maintenance.kind", True)
    if not p.HasField("start") or not p.HasField("end"):
        return MISSING, "maintenance.start and maintenance.end are required"
    length = p.end.seconds - p.start.seconds
    if not 0 < length <= MAX_WINDOW_S:
        return RANGE, f"maintenance window lasts {length}s, not within 1..{MAX_WINDOW_S}s"
    systems = p.system_ids
    if len(systems) > MAX_WINDOW_SYSTEMS:
        return (
            LARGE,
            f"maintenance.system_ids has {len(systems)} items, at most {MAX_WINDOW_SYSTEMS}",
        )
    for i, sid in enumerate(systems):
        r = _id(sid, f"maintenance.system_ids[{i}]")
        if r is not None:
            return r
    if len(p.reason) > MAX_REASON_CHARS:
        return LARGE, f"maintenance.reason has {len(p.reason)} chars, at most {MAX_REASON_CHARS}"
    return None


def _calendar(p: Any) -> Rejection | None:
    zone = p.time_zone
    if not zone:
        return MISSING, "calendar.time_zone is required"
    if not _known_zone(zone):
        return FORMAT, f"calendar.time_zone {_short(zone)} is not an IANA time zone"
    for name, days, bound in (
        ("holidays", p.holidays, MAX_HOLIDAYS),
        ("working_days", p.working_days, MAX_WORKING_DAYS),
    ):
        if len(days) > bound:
            return LARGE, f"calendar.{name} has {len(days)} items, at most {bound}"
        for i, day in enumerate(days):
            if not _is_date(day):
                return FORMAT, f"calendar.{name}[{i}] {_short(day)} is not a YYYY-MM-DD date"
    return None


def _known_zone(zone: str) -> bool:
    if len(zone) > MAX_ID_CHARS or ".." in zone or zone.startswith("/"):
        return False
    try:
        zoneinfo.ZoneInfo(zone)
    # OSError: a name of a directory of the time zone database ("America") or of a file it
    # cannot read.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _is_date(day: str) -> bool:
    if _DATE(day) is None:
        return False
    try:
        datetime.date.fromisoformat(day)
    except ValueError:
        return False
    return True


_PAYLOAD_CHECKS = {
    "data_access": _data_access,
    "it_posture": _it_posture,
    "sandbox": _sandbox,
    "heartbeat": _heartbeat,
    "metrics": _metrics,
    "maintenance": _maintenance,
    "calendar": _calendar,
}


def _diagnose_time(ev: Any, earliest_s: float, latest_s: float) -> Rejection:
    if not ev.HasField("event_time"):
        return MISSING, "event_time is required"
    seconds = ev.event_time.seconds
    nanos = ev.event_time.nanos
    if not 0 <= nanos <= 999_999_999:
        return FORMAT, f"event_time.nanos = {nanos} is not within 0..999999999"
    if seconds > latest_s:
        return SKEW, f"event_time is {seconds - latest_s:.0f}s beyond the allowed future skew"
    return SKEW, f"event_time is {earliest_s - seconds:.0f}s older than the allowed age"


def _check(
    ev: Any,
    institution_id: str,
    earliest_s: float,
    latest_s: float,
    _event_id: Any = _EVENT_ID,
    _checks: dict[str, Any] = _PAYLOAD_CHECKS,
) -> str | Rejection:
    """The payload kind when ``ev`` is acceptable, else the rejection."""
    event_id = ev.event_id
    if _event_id(event_id) is None:
        if not event_id:
            return MISSING, "event_id is required"
        return FORMAT, "event_id must be 8..64 chars of [A-Za-z0-9_-]"
    inst = ev.institution_id
    if inst != institution_id:
        if not inst:
            return MISSING, "institution_id is required"
        return MISMATCH, f"institution_id {_short(inst)} is not the authenticated caller"
    t = ev.event_time
    seconds = t.seconds
    nanos = t.nanos
    # An unset event_time reads as 0, outside any window: HasField only on the slow path.
    if not (earliest_s <= seconds <= latest_s and 0 <= nanos <= 999_999_999):
        return _diagnose_time(ev, earliest_s, latest_s)
    # An unset classification reads as zeros, which are valid: not read at all (cheaper than
    # wrapping the default message).
    if ev.HasField("classification"):
        c = ev.classification
        if c.data_class not in _DATA_CLASS:
            return ENUM, f"classification.data_class: unknown enum value {c.data_class}"
        if c.security_level > MAX_SECURITY_LEVEL:
            return RANGE, f"classification.security_level = {c.security_level} is not within 0..5"
    kind = ev.WhichOneof("payload")
    if kind is None:
        return (
            NO_PAYLOAD,
            "payload is required (one of " + ", ".join(_checks) + ")",
        )
    r: Rejection | None = _checks[kind](getattr(ev, kind))
    return kind if r is None else r


def _window(now_s: float, limits: Limits) -> tuple[float, float]:
    return math.floor(now_s - limits.max_age_s), now_s + limits.max_skew_s


def validate_event(
    ev: telemetry_pb2.TelemetryEnvelope,
    institution_id: str,
    now_s: float,
    limits: Limits = DEFAULT_LIMITS,
) -> Rejection | None:
    """``None`` when ``ev`` may be written for ``institution_id`` at ``now_s`` (unix seconds)."""
    earliest, latest = _window(now_s, limits)
    r = _check(ev, institution_id, earliest, latest)
    return None if isinstance(r, str) else r


@dataclass
class BatchVerdict:
    # Accepted events by payload kind, in batch order.
    accepted: dict[str, list[telemetry_pb2.TelemetryEnvelope]] = field(default_factory=dict)
    accepted_count: int = 0
    # (index in batch, event_id, reason, detail)
    rejections: list[tuple[int, str, int, str]] = field(default_factory=list)


def validate_batch(
    events: Sequence[telemetry_pb2.TelemetryEnvelope],
    institution_id: str,
    now_s: float,
    limits: Limits = DEFAULT_LIMITS,
    sizes: Sequence[int] | None = None,
) -> BatchVerdict:
    """Validate every event of one batch; a repeated event_id is refused after its first copy.

    ``sizes``: each event's serialised size, when some may exceed ``limits.max_event_bytes``
    (``None``: none does, e.g. the whole batch is smaller); a larger event is refused
    (TOO_LARGE) before anything else is read from it.
    """
    earliest, latest = _window(now_s, limits)
    verdict = BatchVerdict()
    accepted = verdict.accepted
    rejections = verdict.rejections
    seen: set[str] = set()
    check = _check
    max_bytes = limits.max_event_bytes
    for index, ev in enumerate(events):
        if sizes is not None and sizes[index] > max_bytes:
            rejections.append(
                (
                    index,
                    ev.event_id[:MAX_ID_CHARS],
                    LARGE,
                    f"event is {sizes[index]} bytes serialised, at most {max_bytes}",
                )
            )
            continue
        r = check(ev, institution_id, earliest, latest)
        if isinstance(r, str):
            event_id = ev.event_id
            if event_id in seen:
                rejections.append(
                    (index, event_id, DUPLICATE, "event_id repeats an earlier event of this batch")
                )
                continue
            seen.add(event_id)
            group = accepted.get(r)
            if group is None:
                accepted[r] = [ev]
            else:
                group.append(ev)
        else:
            reason, detail = r
            # Bounded so that an ack for a hostile batch still fits in one gRPC message.
            rejections.append((index, ev.event_id[:MAX_ID_CHARS], reason, detail))
    verdict.accepted_count = len(seen)
    return verdict
