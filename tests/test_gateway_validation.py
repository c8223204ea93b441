"""Unit and property tests of the gateway's event validation (plain functions, no server)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suptech.gateway.validation import (
    MAX_COMPONENTS,
    MAX_FEATURES,
    Limits,
    validate_batch,
    validate_event,
)
from suptech.v1 import ingest_pb2, telemetry_pb2

R = ingest_pb2.RejectReason
T = telemetry_pb2
INST = "bank-a"
NOW = 1_780_000_000.0
PSEUDONYM = "ab" * 32


def valid_event(
    kind: str = "data_access", n: int = 0, institution: str = INST, event_time: float | None = None
) -> telemetry_pb2.TelemetryEnvelope:
    """A valid envelope of each payload kind; ``n`` makes the event_id unique."""
    ev = T.TelemetryEnvelope(event_id=f"evt-{kind}-{n:08d}", institution_id=institution)
    ev.event_time.FromNanoseconds(int((NOW if event_time is None else event_time) * 1e9))
    if kind == "data_access":
        ev.classification.data_class = T.DATA_CLASS_C2
        ev.classification.security_level = 3
        p = ev.data_access
        p.system_id = "core-banking"
        p.actor_pseudonym = PSEUDONYM
        p.actor_role = T.ACTOR_ROLE_EMPLOYEE
        p.channel = T.CHANNEL_API
        p.operation = T.OPERATION_EXPORT
        p.records = 120 + n
        p.fields.c2 = 4
        p.bytes_out = 65536
        p.destination_kind = T.DESTINATION_KIND_CROSS_BORDER
        p.destination_pseudonym = "cd" * 32
        p.destination_country = "SG"
    elif kind == "it_posture":
        p = ev.it_posture
        p.system_id = "core-banking"
        p.tier = T.SYSTEM_TIER_CORE
        p.components.add(
            layer=T.LAYER_DATABASE,
            vendor="Dameng",
            product="DM8",
            version="8.1",
            independently_controllable=True,
        )
        p.availability = 0.9995
        p.latency_ms_p95 = 42.0
        p.error_rate = 0.001
        p.migration_status = T.MIGRATION_STATUS_IN_PROGRESS
        p.interval_seconds = 300
    elif kind == "sandbox":
        p = ev.sandbox
        p.test_id = "sbx-2026-001"
        p.app_id = "smart-loan"
        p.active_users = 1000
        p.cumulative_users = 5000
        p.transaction_count = 300
        p.transaction_amount_fen = 12_000_000
        p.features_in_use.extend(["credit-scoring", "face-login"])
        p.interval_seconds = 3600
    elif kind == "metrics":
        p = ev.metrics
        p.system_id = "core-banking"
        p.interval_seconds = 60
        p.samples.add(name="cpu_utilization", unit="%", value=41.5, component="db-1")
        p.samples.add(name="latency_ms_p99", unit="ms", value=-0.0)
        p.samples.add(name="queue.depth", unit="1", value=1e12)
    elif kind == "maintenance":
        p = ev.maintenance
        p.window_id = "chg-2026-118"
        p.kind = T.WINDOW_KIND_CHANGE
        p.start.FromSeconds(int(NOW) + 3600)
        p.end.FromSeconds(int(NOW) + 4 * 3600)
        p.system_ids.append("core-banking")
        p.reason = "DM8 upgrade"
    elif kind == "calendar":
        p = ev.calendar
        p.time_zone = "Asia/Shanghai"
        p.holidays.extend(["2026-10-01", "2026-10-02"])
        p.working_days.append("2026-10-11")
    else:
        p = ev.heartbeat
        p.source_id = "smart-loan"
        p.interval_seconds = 60
        p.sdk_version = "0.1.0"
        p.vouches_for.extend(["sandbox:smart-loan", "data_access"])
    return ev


def check(ev: telemetry_pb2.TelemetryEnvelope) -> tuple[int, str] | None:
    return validate_event(ev, INST, NOW, Limits(max_skew_s=300, max_age_s=30 * 86400))


KINDS = ["data_access", "it_posture", "sandbox", "heartbeat", "metrics", "maintenance", "calendar"]


@pytest.mark.parametrize("kind", KINDS)
def test_valid_event_of_each_kind_is_accepted(kind: str) -> None:
    assert check(valid_event(kind)) is None


def _set(path: str, value: Any) -> Callable[[Any], None]:
    def mutate(ev: Any) -> None:
        *parents, leaf = path.split(".")
        target = ev
        for name in parents:
            target = target[int(name)] if name.isdigit() else getattr(target, name)
        setattr(target, leaf, value)

    return mutate


def _add_sample(**fields: Any) -> Callable[[Any], None]:
    return lambda ev: ev.metrics.samples.add(**fields)


def _many_samples(ev: Any) -> None:
    for i in range(300):
        ev.metrics.samples.add(name=f"m{i}", value=1.0)


# (name, payload kind, mutation, expected reason, field the detail must name)
CASES: list[tuple[str, str, Callable[[Any], None], int, str]] = [
    (
        "metric NaN",
        "metrics",
        _set("metrics.samples.0.value", float("nan")),
        R.REJECT_REASON_OUT_OF_RANGE,
        "metrics.samples[0].value",
    ),
    (
        "metric infinite",
        "metrics",
        _set("metrics.samples.1.value", float("-inf")),
        R.REJECT_REASON_OUT_OF_RANGE,
        "metrics.samples[1].value",
    ),
    (
        "metric name with spaces",
        "metrics",
        _set("metrics.samples.0.name", "CPU usage"),
        R.REJECT_REASON_INVALID_FORMAT,
        "metrics.samples[0].name",
    ),
    (
        "metric name too long",
        "metrics",
        _set("metrics.samples.0.name", "m" * 65),
        R.REJECT_REASON_INVALID_FORMAT,
        "metrics.samples[0].name",
    ),
    (
        "metric without name",
        "metrics",
        _add_sample(value=1.0),
        R.REJECT_REASON_MISSING_FIELD,
        "metrics.samples[3].name",
    ),
    (
        "metric unit too long",
        "metrics",
        _set("metrics.samples.0.unit", "u" * 17),
        R.REJECT_REASON_TOO_LARGE,
        "metrics.samples[0].unit",
    ),
    (
        "metric repeated in one report",
        "metrics",
        _add_sample(name="latency_ms_p99", value=3.0),
        R.REJECT_REASON_INVALID_FORMAT,
        "metrics.samples[3]",
    ),
    ("too many metrics", "metrics", _many_samples, R.REJECT_REASON_TOO_LARGE, "metrics.samples"),
    (
        "metrics without samples",
        "metrics",
        lambda ev: ev.metrics.ClearField("samples"),
        R.REJECT_REASON_MISSING_FIELD,
        "metrics.samples",
    ),
    (
        "metrics without system",
        "metrics",
        _set("metrics.system_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "metrics.system_id",
    ),
    (
        "window ends before it starts",
        "maintenance",
        _set("maintenance.end.seconds", int(NOW)),
        R.REJECT_REASON_OUT_OF_RANGE,
        "maintenance window",
    ),
    (
        "window of a month",
        "maintenance",
        _set("maintenance.end.seconds", int(NOW) + 31 * 86400),
        R.REJECT_REASON_OUT_OF_RANGE,
        "maintenance window",
    ),
    (
        "window without kind",
        "maintenance",
        _set("maintenance.kind", 0),
        R.REJECT_REASON_MISSING_FIELD,
        "maintenance.kind",
    ),
    (
        "window without id",
        "maintenance",
        _set("maintenance.window_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "maintenance.window_id",
    ),
    (
        "unknown time zone",
        "calendar",
        _set("calendar.time_zone", "Mars/Olympus"),
        R.REJECT_REASON_INVALID_FORMAT,
        "calendar.time_zone",
    ),
    (
        "time zone path",
        "calendar",
        _set("calendar.time_zone", "../../etc/passwd"),
        R.REJECT_REASON_INVALID_FORMAT,
        "calendar.time_zone",
    ),
    (
        "time zone directory",
        "calendar",
        _set("calendar.time_zone", "America"),
        R.REJECT_REASON_INVALID_FORMAT,
        "calendar.time_zone",
    ),
    (
        "holiday not a date",
        "calendar",
        lambda ev: ev.calendar.holidays.append("2026-02-30"),
        R.REJECT_REASON_INVALID_FORMAT,
        "calendar.holidays[2]",
    ),
    (
        "heartbeat vouches for an unknown stream kind",
        "heartbeat",
        lambda ev: ev.heartbeat.vouches_for.append("everything"),
        R.REJECT_REASON_INVALID_FORMAT,
        "heartbeat.vouches_for[2]",
    ),
    (
        "data access duration beyond a year",
        "data_access",
        _set("data_access.duration_ms", 10**12),
        R.REJECT_REASON_OUT_OF_RANGE,
        "data_access.duration_ms",
    ),
    (
        "data access bytes_in beyond a petabyte",
        "data_access",
        _set("data_access.bytes_in", 10**16),
        R.REJECT_REASON_OUT_OF_RANGE,
        "data_access.bytes_in",
    ),
    ("no event_id", "heartbeat", _set("event_id", ""), R.REJECT_REASON_MISSING_FIELD, "event_id"),
    (
        "short event_id",
        "heartbeat",
        _set("event_id", "abc"),
        R.REJECT_REASON_INVALID_FORMAT,
        "event_id",
    ),
    (
        "event_id bad chars",
        "heartbeat",
        _set("event_id", "evt 0001/../"),
        R.REJECT_REASON_INVALID_FORMAT,
        "event_id",
    ),
    (
        "event_id too long",
        "heartbeat",
        _set("event_id", "e" * 65),
        R.REJECT_REASON_INVALID_FORMAT,
        "event_id",
    ),
    (
        "no institution",
        "heartbeat",
        _set("institution_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "institution_id",
    ),
    (
        "other institution",
        "heartbeat",
        _set("institution_id", "bank-b"),
        R.REJECT_REASON_INSTITUTION_MISMATCH,
        "institution_id",
    ),
    (
        "no event_time",
        "heartbeat",
        lambda ev: ev.ClearField("event_time"),
        R.REJECT_REASON_MISSING_FIELD,
        "event_time",
    ),
    (
        "future event_time",
        "heartbeat",
        _set("event_time.seconds", int(NOW) + 301),
        R.REJECT_REASON_TIMESTAMP_SKEW,
        "event_time",
    ),
    (
        "too old event_time",
        "heartbeat",
        _set("event_time.seconds", int(NOW) - 31 * 86400),
        R.REJECT_REASON_TIMESTAMP_SKEW,
        "event_time",
    ),
    (
        "bad nanos",
        "heartbeat",
        _set("event_time.nanos", -1),
        R.REJECT_REASON_INVALID_FORMAT,
        "event_time.nanos",
    ),
    (
        "unknown data class",
        "heartbeat",
        _set("classification.data_class", 9),
        R.REJECT_REASON_UNKNOWN_ENUM,
        "classification.data_class",
    ),
    (
        "security level 6",
        "heartbeat",
        _set("classification.security_level", 6),
        R.REJECT_REASON_OUT_OF_RANGE,
        "classification.security_level",
    ),
    (
        "no payload",
        "heartbeat",
        lambda ev: ev.ClearField("heartbeat"),
        R.REJECT_REASON_NO_PAYLOAD,
        "payload",
    ),
    (
        "no system",
        "data_access",
        _set("data_access.system_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "data_access.system_id",
    ),
    (
        "long system",
        "data_access",
        _set("data_access.system_id", "s" * 129),
        R.REJECT_REASON_TOO_LARGE,
        "data_access.system_id",
    ),
    (
        "raw actor id",
        "data_access",
        _set("data_access.actor_pseudonym", "13800138000"),
        R.REJECT_REASON_INVALID_FORMAT,
        "data_access.actor_pseudonym",
    ),
    (
        "uppercase hmac",
        "data_access",
        _set("data_access.actor_pseudonym", "AB" * 32),
        R.REJECT_REASON_INVALID_FORMAT,
        "data_access.actor_pseudonym",
    ),
    (
        "no actor",
        "data_access",
        _set("data_access.actor_pseudonym", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "data_access.actor_pseudonym",
    ),
    (
        "raw destination",
        "data_access",
        _set("data_access.destination_pseudonym", "acme.example"),
        R.REJECT_REASON_INVALID_FORMAT,
        "data_access.destination_pseudonym",
    ),
    (
        "unknown role",
        "data_access",
        _set("data_access.actor_role", 77),
        R.REJECT_REASON_UNKNOWN_ENUM,
        "data_access.actor_role",
    ),
    (
        "unspecified channel",
        "data_access",
        _set("data_access.channel", 0),
        R.REJECT_REASON_MISSING_FIELD,
        "data_access.channel",
    ),
    (
        "unknown channel",
        "data_access",
        _set("data_access.channel", 99),
        R.REJECT_REASON_UNKNOWN_ENUM,
        "data_access.channel",
    ),
    (
        "unspecified operation",
        "data_access",
        _set("data_access.operation", 0),
        R.REJECT_REASON_MISSING_FIELD,
        "data_access.operation",
    ),
    (
        "unknown destination kind",
        "data_access",
        _set("data_access.destination_kind", -3),
        R.REJECT_REASON_UNKNOWN_ENUM,
        "data_access.destination_kind",
    ),
    (
        "absurd records",
        "data_access",
        _set("data_access.records", 10**10 + 1),
        R.REJECT_REASON_OUT_OF_RANGE,
        "data_access.records",
    ),
    (
        "absurd bytes",
        "data_access",
        _set("data_access.bytes_out", 2**63),
        R.REJECT_REASON_OUT_OF_RANGE,
        "data_access.bytes_out",
    ),
    (
        "bad country",
        "data_access",
        _set("data_access.destination_country", "Singapore"),
        R.REJECT_REASON_INVALID_FORMAT,
        "data_access.destination_country",
    ),
    (
        "no posture system",
        "it_posture",
        _set("it_posture.system_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "it_posture.system_id",
    ),
    (
        "unspecified tier",
        "it_posture",
        _set("it_posture.tier", 0),
        R.REJECT_REASON_MISSING_FIELD,
        "it_posture.tier",
    ),
    (
        "availability > 1",
        "it_posture",
        _set("it_posture.availability", 1.5),
        R.REJECT_REASON_OUT_OF_RANGE,
        "it_posture.availability",
    ),
    (
        "availability NaN",
        "it_posture",
        _set("it_posture.availability", float("nan")),
        R.REJECT_REASON_OUT_OF_RANGE,
        "it_posture.availability",
    ),
    (
        "negative error rate",
        "it_posture",
        _set("it_posture.error_rate", -0.1),
        R.REJECT_REASON_OUT_OF_RANGE,
        "it_posture.error_rate",
    ),
    (
        "negative latency",
        "it_posture",
        _set("it_posture.latency_ms_p95", -1.0),
        R.REJECT_REASON_OUT_OF_RANGE,
        "it_posture.latency_ms_p95",
    ),
    (
        "infinite latency",
        "it_posture",
        _set("it_posture.latency_ms_p95", float("inf")),
        R.REJECT_REASON_OUT_OF_RANGE,
        "it_posture.latency_ms_p95",
    ),
    (
        "unknown migration",
        "it_posture",
        _set("it_posture.migration_status", 8),
        R.REJECT_REASON_UNKNOWN_ENUM,
        "it_posture.migration_status",
    ),
    (
        "too many components",
        "it_posture",
        lambda ev: [
            ev.it_posture.components.add(layer=1, vendor="v", product="p")
            for _ in range(MAX_COMPONENTS)
        ],
        R.REJECT_REASON_TOO_LARGE,
        "it_posture.components",
    ),
    (
        "component without vendor",
        "it_posture",
        _set("it_posture.components.0.vendor", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "it_posture.components[0].vendor",
    ),
    (
        "component unknown layer",
        "it_posture",
        _set("it_posture.components.0.layer", 42),
        R.REJECT_REASON_UNKNOWN_ENUM,
        "it_posture.components[0].layer",
    ),
    (
        "no test id",
        "sandbox",
        _set("sandbox.test_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "sandbox.test_id",
    ),
    (
        "absurd users",
        "sandbox",
        _set("sandbox.active_users", 10**12),
        R.REJECT_REASON_OUT_OF_RANGE,
        "sandbox.active_users",
    ),
    (
        "absurd amount",
        "sandbox",
        _set("sandbox.transaction_amount_fen", 10**17),
        R.REJECT_REASON_OUT_OF_RANGE,
        "sandbox.transaction_amount_fen",
    ),
    (
        "too many features",
        "sandbox",
        lambda ev: ev.sandbox.features_in_use.extend(f"f{i}" for i in range(MAX_FEATURES)),
        R.REJECT_REASON_TOO_LARGE,
        "sandbox.features_in_use",
    ),
    (
        "empty feature",
        "sandbox",
        lambda ev: ev.sandbox.features_in_use.append(""),
        R.REJECT_REASON_MISSING_FIELD,
        "sandbox.features_in_use[2]",
    ),
    (
        "no heartbeat source",
        "heartbeat",
        _set("heartbeat.source_id", ""),
        R.REJECT_REASON_MISSING_FIELD,
        "heartbeat.source_id",
    ),
]


@pytest.mark.parametrize(
    ("kind", "mutate", "reason", "field"),
    [pytest.param(k, m, r, f, id=name) for name, k, m, r, f in CASES],
)
def test_each_rule_refuses_with_reason_naming_the_field(
    kind: str, mutate: Callable[[Any], None], reason: int, field: str
) -> None:
    ev = valid_event(kind)
    assert check(ev) is None  # the same event without the defect is accepted
    mutate(ev)
    result = check(ev)
    assert result is not None, "defective event was accepted"
    assert (R.Name(result[0]), field in result[1]) == (R.Name(reason), True), result


def test_boundaries_are_accepted() -> None:
    ev = valid_event("it_posture")
    ev.it_posture.availability = 1.0
    ev.it_posture.error_rate = 0.0
    ev.event_time.seconds = int(NOW) + 300
    assert check(ev) is None
    ev = valid_event("data_access")
    ev.data_access.records = 10**10
    ev.data_access.destination_kind = T.DESTINATION_KIND_INTERNAL
    ev.data_access.destination_pseudonym = ""
    ev.data_access.destination_country = ""
    ev.event_id = "A" * 64
    ev.event_time.seconds = int(NOW) - 29 * 86400
    assert check(ev) is None


def test_batch_groups_by_kind_and_refuses_duplicates_after_first() -> None:
    events = [valid_event(k, i) for i, k in enumerate(["data_access", "heartbeat", "sandbox"])]
    events.append(valid_event("data_access", 0))  # same event_id as events[0]
    bad = valid_event("it_posture", 9, institution="bank-b")
    events.append(bad)
    verdict = validate_batch(events, INST, NOW)
    assert verdict.accepted_count == 3
    assert {k: [e.event_id for e in v] for k, v in verdict.accepted.items()} == {
        "data_access": [events[0].event_id],
        "heartbeat": [events[1].event_id],
        "sandbox": [events[2].event_id],
    }
    assert [(i, eid, R.Name(r)) for i, eid, r, _ in verdict.rejections] == [
        (3, events[0].event_id, "REJECT_REASON_DUPLICATE_IN_BATCH"),
        (4, bad.event_id, "REJECT_REASON_INSTITUTION_MISMATCH"),
    ]


def test_rejection_event_id_is_bounded() -> None:
    ev = valid_event()
    ev.event_id = "x" * 100_000
    verdict = validate_batch([ev], INST, NOW)
    assert verdict.accepted_count == 0
    assert len(verdict.rejections[0][1]) <= 128


def test_default_window_follows_now() -> None:
    now = time.time()
    assert validate_event(valid_event(event_time=now), INST, now) is None
    assert validate_event(valid_event(event_time=now + 3600), INST, now) is not None


# Arbitrary envelopes: built from raw field values (including unknown enum ints, NaN, huge ints)
# and from random bytes parsed as an envelope.
_text = st.text(max_size=80)
_u64 = st.integers(min_value=0, max_value=2**64 - 1)
_u32 = st.integers(min_value=0, max_value=2**32 - 1)
_enum = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_float = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def envelopes(draw: st.DrawFn) -> telemetry_pb2.TelemetryEnvelope:
    ev = T.TelemetryEnvelope(
        event_id=draw(st.one_of(_text, st.just("evt-00000001"))),
        institution_id=draw(st.sampled_from([INST, "bank-b", "", "x" * 200])),
    )
    if draw(st.booleans()):
        ev.event_time.seconds = draw(st.integers(min_value=-(2**40), max_value=2**40))
        ev.event_time.nanos = draw(st.integers(min_value=-(2**31), max_value=2**31 - 1))
    if draw(st.booleans()):
        ev.classification.data_class = draw(_enum)
        ev.classification.security_level = draw(_u32)
    kind = draw(st.sampled_from(["data_access", "it_posture", "sandbox", "heartbeat", None]))
    if kind == "data_access":
        p = ev.data_access
        p.system_id, p.actor_pseudonym = draw(_text), draw(st.one_of(_text, st.just(PSEUDONYM)))
        p.actor_role, p.channel, p.operation = draw(_enum), draw(_enum), draw(_enum)
        p.destination_kind = draw(_enum)
        p.records, p.bytes_out = draw(_u64), draw(_u64)
        p.fields.c1 = draw(_u32)
        p.destination_pseudonym, p.destination_country = draw(_text), draw(_text)
    elif kind == "it_posture":
        p = ev.it_posture
        p.system_id, p.tier, p.migration_status = draw(_text), draw(_enum), draw(_enum)
        p.availability, p.error_rate, p.latency_ms_p95 = draw(_float), draw(_float), draw(_float)
        p.incidents, p.interval_seconds = draw(_u32), draw(_u32)
        for _ in range(draw(st.integers(0, 3))):
            p.components.add(layer=draw(_enum), vendor=draw(_text), product=draw(_text))
    elif kind == "sandbox":
        p = ev.sandbox
        p.test_id, p.app_id = draw(_text), draw(_text)
        p.active_users, p.fund_loss_fen = draw(_u64), draw(_u64)
        p.features_in_use.extend(draw(st.lists(_text, max_size=3)))
    elif kind == "heartbeat":
        ev.heartbeat.source_id = draw(_text)
        ev.heartbeat.interval_seconds = draw(_u32)
    return ev


@st.composite
def parsed_bytes(draw: st.DrawFn) -> telemetry_pb2.TelemetryEnvelope:
    ev = T.TelemetryEnvelope()
    try:
        ev.ParseFromString(draw(st.binary(max_size=200)))
    except Exception:
        ev = T.TelemetryEnvelope()
    return ev


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(envelopes(), parsed_bytes()), max_size=6))
def test_arbitrary_envelopes_never_raise_and_each_is_accepted_or_refused(
    events: list[telemetry_pb2.TelemetryEnvelope],
) -> None:
    verdict = validate_batch(events, INST, NOW)
    refused = {i for i, _, _, _ in verdict.rejections}
    assert verdict.accepted_count + len(refused) == len(events)
    for _, _, reason, detail in verdict.rejections:
        assert reason != R.REJECT_REASON_UNSPECIFIED and R.Name(reason)
        assert detail
    for kind, accepted in verdict.accepted.items():
        for ev in accepted:
            assert ev.WhichOneof("payload") == kind
            assert ev.institution_id == INST
            assert check(ev) is None


@settings(max_examples=300, deadline=None)
@given(envelopes())
def test_fast_path_and_diagnosis_agree(ev: telemetry_pb2.TelemetryEnvelope) -> None:
    # The hot path accepts in one expression; the slow path must refuse exactly what it refuses.
    from suptech.gateway.validation import _data_access, _diagnose_data_access

    assert (_data_access(ev.data_access) is None) == (_diagnose_data_access(ev.data_access) is None)
