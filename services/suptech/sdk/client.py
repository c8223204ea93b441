"""The institution-side telemetry client: batching, durable spool, one long-lived gRPC stream.

Thread-safety: every public method of :class:`TelemetryClient` may be called from any thread.
``send()`` and the builders never block on the network: they write the event to the spool and
return; one background thread owns the ``IngestService.StreamTelemetry`` stream.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from suptech import __version__
from suptech.sdk.pseudonym import is_pseudonym, pseudonymise
from suptech.sdk.spool import Record, Spool
from suptech.sdk.tracing import end_batch_span, start_batch_span
from suptech.sdk.wire import (
    encode_batch,
    encode_envelope,
    encode_varint,
    envelope_template,
    frame_batch_event,
    institution_field,
)
from suptech.v1 import ingest_pb2, telemetry_pb2

__all__ = [
    "ClientStats",
    "Rejection",
    "TelemetryClient",
    "new_event_id",
    "new_event_ids",
    "backoff_delay",
]

_METHOD = "/suptech.v1.IngestService/StreamTelemetry"

# Worth another try after a pause: the gateway, the network or Kafka behind it are down or busy.
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}

_PAYLOAD_KIND: dict[type[Message], str] = {
    telemetry_pb2.DataAccessEvent: "data_access",
    telemetry_pb2.ITPostureReport: "it_posture",
    telemetry_pb2.SandboxMetricsReport: "sandbox",
    telemetry_pb2.Heartbeat: "heartbeat",
    telemetry_pb2.MetricsReport: "metrics",
    telemetry_pb2.MaintenanceWindow: "maintenance",
    telemetry_pb2.BusinessCalendar: "calendar",
}

EventTime = datetime | float | int | timestamp_pb2.Timestamp | None


def new_event_id() -> str:
    """A client-made unique event id (UUID4, 32 hex characters)."""
    return uuid.uuid4().hex


def new_event_ids(n: int) -> list[str]:
    """``n`` UUID4 hex ids from one read of the OS's random source (``uuid.uuid4`` costs more
    than the rest of an event's encoding)."""
    blob = os.urandom(16 * n).hex()
    variant = "89ab"
    return [
        f"{blob[i : i + 12]}4{blob[i + 13 : i + 16]}"
        f"{variant[int(blob[i + 16], 16) & 3]}{blob[i + 17 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [cap / 2, cap] for
    cap = min(max_s, base_s * 2**attempt).

    Half the cap is a floor ("equal jitter"): however the draws fall, a client against a gateway
    that is down reconnects at most about ``2 / base_s`` times in its first second and ever less
    often after, while the jitter still spreads a fleet's reconnects apart.
    """
    cap = min(max_s, base_s * (2.0 ** min(attempt, 32)))
    return rng.uniform(cap / 2.0, cap)


def _time_ns(value: EventTime) -> int:
    if value is None:
        return time.time_ns()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("event_time must be timezone-aware (naive datetimes are ambiguous)")
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, timestamp_pb2.Timestamp):
        return int(value.ToNanoseconds())
    return int(value * 1_000_000_000)


def _enum(enum_type: Any, prefix: str, value: int | str) -> Any:
    """An enum value given as its number, its full name or its short name ("export")."""
    if isinstance(value, int):
        return value
    return _enum_by_name(enum_type, prefix, value)


@functools.lru_cache(maxsize=512)
def _enum_by_name(enum_type: Any, prefix: str, value: str) -> int:
    name = value.upper()
    if not name.startswith(prefix):
        name = prefix + name
    try:
        return int(enum_type.Value(name))
    except ValueError:
        raise ValueError(f"unknown {prefix.rstrip('_').lower()} {value!r}") from None


@dataclass(frozen=True)
class Rejection:
    """An event the gateway refused; it is never sent again."""

    event_id: str
    reason: str
    detail: str


@dataclass
class ClientStats:
    """Counters since the client started (``spooled`` and ``in_flight`` are current levels).

    ``sent`` counts events put on the wire, resends included; ``acknowledged`` those the gateway
    accepted (durably in Kafka); ``rejected`` those it refused, by reason; ``spooled`` those not
    yet answered (on disk, in flight or waiting); ``retries`` the streams re-opened after a
    failure; ``recovered`` the events found in the spool at start.
    """

    sent: int = 0
    acknowledged: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    spooled: int = 0
    in_flight: int = 0
    retries: int = 0
    batches_sent: int = 0
    recovered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    halted: bool = False

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class _Batch:
    __slots__ = ("records", "sent_at", "span")

    def __init__(self, records: list[Record], sent_at: float, span: Any = None) -> None:
        self.records = records
        self.sent_at = sent_at
        # The batch's OpenTelemetry span when the application traces (suptech.sdk.tracing).
        self.span = span


class TelemetryClient:
    """Streams telemetry to the regulator's ingest gateway; never loses an event it accepted.

    Every event given to :meth:`send` (or a builder) is written to ``spool_dir`` before the call
    returns, and stays there until the gateway answers it: accepted (durably in Kafka) or rejected
    with a reason (recorded in :attr:`rejections` and ``spool_dir/rejections.jsonl``, not resent).
    A client started on a spool left non-empty by a crash resends what it holds, same event ids.
    An event larger than ``max_event_bytes`` serialised is refused by the call that gives it
    (``ValueError``): the gateway would refuse it (REJECT_REASON_TOO_LARGE, 256 KiB by default).

    Authentication: ``token`` (sent as ``authorization: Bearer``), and/or TLS with
    ``root_certificates`` (PEM of the gateway's CA) and, for mutual TLS, ``client_certificate`` and
    ``client_key``. UNAUTHENTICATED, PERMISSION_DENIED and INVALID_ARGUMENT stop the client from
    sending (``stats().halted``, ``last_error``): retrying cannot fix them, the spool is kept for a
    client started with a corrected configuration.
    """

    def __init__(
        self,
        target: str,
        institution_id: str,
        *,
        spool_dir: str | os.PathLike[str],
        pseudonym_key: bytes,
        token: str | None = None,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        tls: bool | None = None,
        batch_size: int = 500,
        linger_s: float = 0.2,
        max_in_flight: int = 4,
        max_batch_bytes: int = 3 * 1024 * 1024,
        max_event_bytes: int = 256 * 1024,
        retry_base_s: float = 0.1,
        retry_max_s: float = 10.0,
        ack_timeout_s: float = 30.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        rng: random.Random | None = None,
    ) -> None:
        if not institution_id:
            raise ValueError("institution_id is required")
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be at least 1")
        if not pseudonym_key:
            raise ValueError("pseudonym_key is required (keep it secret, keep it stable)")
        if not 0 < max_event_bytes <= max_batch_bytes:
            # A batch holds at least one event: a larger one would exceed the message limit.
            raise ValueError("max_event_bytes must be positive and at most max_batch_bytes")
        self.institution_id = institution_id
        self._inst_field = institution_field(institution_id)
        self._key = pseudonym_key
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._max_in_flight = max_in_flight
        self._max_batch_bytes = max_batch_bytes
        self._max_event_bytes = max_event_bytes
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._ack_timeout_s = ack_timeout_s
        self._rng = rng or random.Random()

        self._spool = Spool(spool_dir)
        self._rejections_path = self._spool.directory / "rejections.jsonl"
        self.rejections: collections.deque[Rejection] = collections.deque(maxlen=10_000)

        self._cv = threading.Condition(threading.Lock())
        self._pending: collections.deque[Record] = collections.deque()
        self._in_flight: dict[str, _Batch] = {}
        self._stats = ClientStats()
        self._generation = 0
        self._call: Any = None
        self._flushing = 0
        self._closed = False
        self._halted = False

        recovered = self._spool.recover(time.monotonic())
        self._pending.extend(recovered)
        self._stats.recovered = len(recovered)

        options = [
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", int(max(1.0, retry_max_s) * 1000)),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            *channel_options,
        ]
        if tls is None:
            tls = root_certificates is not None or client_certificate is not None
        if tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=client_key,
                certificate_chain=client_certificate,
            )
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata: tuple[tuple[str, str], ...] = (("x-suptech-sdk", __version__),)
        if token:
            self._metadata += (("authorization", f"Bearer {token}"),)
        # Batches are assembled as bytes from the spool; they are never built as messages.
        self._rpc: Callable[..., Any] = self._channel.stream_stream(
            _METHOD,
            request_serializer=lambda b: b,
            response_deserializer=ingest_pb2.BatchAck.FromString,
        )
        self._thread = threading.Thread(target=self._run, name="suptech-sdk-stream", daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    def send(
        self,
        message: Message,
        *,
        event_time: EventTime = None,
        event_id: str | None = None,
        classification: telemetry_pb2.Classification | None = None,
    ) -> str:
        """Spool one event; return its event id.

        ``message`` is a full ``TelemetryEnvelope`` (its missing event id, institution id and
        event time are filled in) or one of the payload messages. Pseudonym fields must already
        be pseudonyms: pass raw identifiers to :meth:`data_access` instead.
        """
        if isinstance(message, telemetry_pb2.TelemetryEnvelope):
            env = telemetry_pb2.TelemetryEnvelope()
            env.CopyFrom(message)
            if event_id:
                env.event_id = event_id
            if not env.event_id:
                env.event_id = new_event_id()
            if not env.institution_id:
                env.institution_id = self.institution_id
            if event_time is not None or not env.HasField("event_time"):
                env.event_time.FromNanoseconds(_time_ns(event_time))
            if classification is not None:
                env.classification.CopyFrom(classification)
            if env.WhichOneof("payload") == "data_access":
                self._check_pseudonyms(env.data_access)
            self._append([env.SerializeToString()])
            return str(env.event_id)
        kind = _PAYLOAD_KIND.get(type(message))
        if kind is None:
            raise TypeError(f"cannot send a {type(message).__name__}")
        if isinstance(message, telemetry_pb2.DataAccessEvent):
            self._check_pseudonyms(message)
        return self.send_encoded(
            kind,
            message.SerializeToString(),
            event_time=event_time,
            event_id=event_id,
            classification=b"" if classification is None else classification.SerializeToString(),
        )

    def send_encoded(
        self,
        kind: str,
        payload: bytes,
        *,
        event_time: EventTime = None,
        event_id: str | None = None,
        classification: bytes = b"",
    ) -> str:
        """Fast path: spool an event whose payload of ``kind`` is already serialised.

        For senders that build many similar events (serialise a template once). The caller is
        responsible for pseudonymising personal identifiers in ``payload``.
        """
        eid = event_id or new_event_id()
        self._append(
            [
                encode_envelope(
                    eid, self._inst_field, _time_ns(event_time), kind, payload, classification
                )
            ]
        )
        return eid

    def send_many_encoded(
        self, kind: str, payloads: Iterable[bytes], *, event_time: EventTime = None
    ) -> list[str]:
        """Spool many pre-serialised payloads of one kind, sharing one event time, with one spool
        write; return their event ids. The fastest path: the envelope around a payload is
        encoded once per distinct payload, only the event id changes from event to event."""
        t_ns = _time_ns(event_time)
        payloads = list(payloads)
        ids = new_event_ids(len(payloads))
        tails: dict[bytes, bytes] = {}
        head = b""
        items: list[tuple[bytes, bytes]] = []
        add = items.append
        varint = encode_varint
        for eid, payload in zip(ids, payloads, strict=True):
            tail = tails.get(payload)
            if tail is None:
                head, tail = envelope_template(self._inst_field, t_ns, kind, payload)
                self._check_size(len(head) + len(eid) + len(tail))
                tails[payload] = tail
            env = head + eid.encode() + tail
            add((env, b"\x12" + varint(len(env)) + env))
        self._append_framed(items)
        return ids

    def pseudonymise(self, raw: str) -> str:
        return pseudonymise(self._key, raw)

    def data_access(
        self,
        *,
        system_id: str,
        actor_id: str,
        operation: int | str,
        channel: int | str,
        destination_kind: int | str,
        actor_role: int | str = 0,
        records: int = 0,
        fields: Mapping[str, int] | None = None,
        bytes_out: int = 0,
        destination_id: str | None = None,
        destination_country: str = "",
        event_time: EventTime = None,
        classification: telemetry_pb2.Classification | None = None,
    ) -> str:
        """Spool a data-access event. ``actor_id`` and ``destination_id`` are RAW identifiers:
        they are pseudonymised here and never leave the process.

        ``fields`` counts personal-data fields touched by class, e.g. ``{"c2": 3}``; unless given,
        the classification is the highest class touched.
        """
        counts = dict(fields or {})
        msg = telemetry_pb2.DataAccessEvent(
            system_id=system_id,
            actor_pseudonym=pseudonymise(self._key, actor_id),
            actor_role=_enum(telemetry_pb2.ActorRole, "ACTOR_ROLE_", actor_role),
            channel=_enum(telemetry_pb2.Channel, "CHANNEL_", channel),
            operation=_enum(telemetry_pb2.Operation, "OPERATION_", operation),
            records=records,
            fields=telemetry_pb2.FieldsByClass(**counts),
            bytes_out=bytes_out,
            destination_kind=_enum(
                telemetry_pb2.DestinationKind, "DESTINATION_KIND_", destination_kind
            ),
            destination_pseudonym=(
                pseudonymise(self._key, destination_id) if destination_id else ""
            ),
            destination_country=destination_country,
        )
        if classification is None:
            level = next((n for n, c in ((3, "c3"), (2, "c2"), (1, "c1")) if counts.get(c)), 0)
            classification = telemetry_pb2.Classification(
                data_class=_enum(telemetry_pb2.DataClass, "", level)
            )
        return self.send(msg, event_time=event_time, classification=classification)

    def it_posture(
        self,
        /,
        *,
        system_id: str,
        tier: int | str,
        components: Iterable[telemetry_pb2.Component | Mapping[str, Any]] = (),
        event_time: EventTime = None,
        **metrics: Any,
    ) -> str:
        """Spool an IT posture report; ``metrics`` are fields of ``ITPostureReport``
        (availability, incidents, latency_ms_p95, error_rate, unpatched_critical_vulns, ...)."""
        comps = [
            c
            if isinstance(c, telemetry_pb2.Component)
            else telemetry_pb2.Component(
                **{
                    **c,
                    "layer": _enum(telemetry_pb2.Layer, "LAYER_", c.get("layer", 0)),
                }
            )
            for c in components
        ]
        if isinstance(metrics.get("migration_status"), str):
            metrics["migration_status"] = _enum(
                telemetry_pb2.MigrationStatus, "MIGRATION_STATUS_", metrics["migration_status"]
            )
        msg = telemetry_pb2.ITPostureReport(
            system_id=system_id,
            tier=_enum(telemetry_pb2.SystemTier, "SYSTEM_TIER_", tier),
            components=comps,
            **metrics,
        )
        return self.send(msg, event_time=event_time)

    def sandbox_metrics(
        self, /, *, test_id: str, app_id: str, event_time: EventTime = None, **metrics: Any
    ) -> str:
        """Spool a sandbox-test report; ``metrics`` are fields of ``SandboxMetricsReport``."""
        msg = telemetry_pb2.SandboxMetricsReport(test_id=test_id, app_id=app_id, **metrics)
        return self.send(msg, event_time=event_time)

    def heartbeat(
        self,
        source_id: str | None = None,
        *,
        interval_seconds: int = 60,
        vouches_for: Iterable[str] = (),
        event_time: EventTime = None,
    ) -> str:
        """Spool a heartbeat of ``source_id`` (the institution by default). It keeps only the
        streams named in ``vouches_for`` ("metrics:core-banking", "data_access", ...) alive."""
        msg = telemetry_pb2.Heartbeat(
            source_id=source_id or self.institution_id,
            interval_seconds=interval_seconds,
            sdk_version=__version__,
            vouches_for=list(vouches_for),
        )
        return self.send(msg, event_time=event_time)

    def metrics(
        self,
        *,
        system_id: str,
        samples: Mapping[str, float] | Iterable[telemetry_pb2.MetricSample],
        units: Mapping[str, str] | None = None,
        component: str = "",
        interval_seconds: int = 0,
        event_time: EventTime = None,
    ) -> str:
        """Spool named numeric metrics of one system, e.g.
        ``metrics(system_id="core", samples={"cpu_utilization": 41.5}, units={"cpu_utilization":
        "%"})``; ``samples`` may also be ``MetricSample`` messages (one component each)."""
        if isinstance(samples, Mapping):
            units = units or {}
            msgs = [
                telemetry_pb2.MetricSample(
                    name=name, value=float(v), unit=units.get(name, ""), component=component
                )
                for name, v in samples.items()
            ]
        else:
            msgs = list(samples)
        msg = telemetry_pb2.MetricsReport(
            system_id=system_id, samples=msgs, interval_seconds=interval_seconds
        )
        return self.send(msg, event_time=event_time)

    def maintenance_window(
        self,
        *,
        window_id: str,
        kind: str | int,
        start: EventTime,
        end: EventTime,
        system_ids: Iterable[str] = (),
        reason: str = "",
        cancelled: bool = False,
        event_time: EventTime = None,
    ) -> str:
        """Declare (or cancel) a planned maintenance, change or batch window in advance;
        ``kind`` is "maintenance", "change" or "batch" (or a ``WindowKind``)."""
        msg = telemetry_pb2.MaintenanceWindow(
            window_id=window_id,
            kind=_enum(telemetry_pb2.WindowKind, "WINDOW_KIND_", kind),
            system_ids=list(system_ids),
            reason=reason,
            cancelled=cancelled,
        )
        msg.start.FromNanoseconds(_time_ns(start))
        msg.end.FromNanoseconds(_time_ns(end))
        return self.send(msg, event_time=event_time)

    def business_calendar(
        self,
        *,
        time_zone: str,
        holidays: Iterable[str] = (),
        working_days: Iterable[str] = (),
        event_time: EventTime = None,
    ) -> str:
        """Declare the institution's calendar: IANA ``time_zone``, public ``holidays`` and make-up
        ``working_days`` as "YYYY-MM-DD"; the latest one sent replaces the previous."""
        msg = telemetry_pb2.BusinessCalendar(
            time_zone=time_zone, holidays=list(holidays), working_days=list(working_days)
        )
        return self.send(msg, event_time=event_time)

    def stats(self) -> ClientStats:
        with self._cv:
            s = self._stats
            in_flight = sum(len(b.records) for b in self._in_flight.values())
            return ClientStats(
                sent=s.sent,
                acknowledged=s.acknowledged,
                rejected=dict(s.rejected),
                spooled=len(self._pending) + in_flight,
                in_flight=in_flight,
                retries=s.retries,
                batches_sent=s.batches_sent,
                recovered=s.recovered,
                errors=dict(s.errors),
                last_error=s.last_error,
                halted=self._halted,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything now; return True once every spooled event has been answered (accepted
        or rejected), False on timeout or when the client halted on a non-retryable error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._flushing += 1
            self._cv.notify_all()
            try:
                while self._pending or self._in_flight:
                    if self._halted or self._closed:
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cv.wait(0.5 if left is None else min(left, 0.5))
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush (up to ``timeout``), stop the stream and release the spool. Whatever was not
        answered stays in the spool for the next client. Returns what the flush returned."""
        if self._closed:
            return False
        flushed = self.flush(timeout) if timeout is None or timeout > 0 else False
        with self._cv:
            self._closed = True
            self._generation += 1
            call = self._call
            self._cv.notify_all()
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5.0)
        self._channel.close()
        with self._cv:
            self._spool.close()
        return flushed

    def __enter__(self) -> TelemetryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _check_pseudonyms(event: telemetry_pb2.DataAccessEvent) -> None:
        for name in ("actor_pseudonym", "destination_pseudonym"):
            value = getattr(event, name)
            if value and not is_pseudonym(value):
                raise ValueError(
                    f"{name} is not a pseudonym (64 hex characters); pass the raw id to "
                    "client.data_access(actor_id=..., destination_id=...) so that it is "
                    "pseudonymised before leaving the process"
                )

    def _check_size(self, size: int) -> None:
        if size > self._max_event_bytes:
            raise ValueError(
                f"event is {size} bytes serialised, more than max_event_bytes "
                f"({self._max_event_bytes}): the gateway would refuse it"
            )

    def _append(self, envelopes: list[bytes]) -> None:
        for env in envelopes:
            self._check_size(len(env))
        self._append_framed([(env, frame_batch_event(env)) for env in envelopes])

    def _append_framed(self, items: list[tuple[bytes, bytes]]) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("client is closed")
            now = time.monotonic()
            if len(items) == 1:
                records = [self._spool.append(items[0][0], items[0][1], now)]
            else:
                records = self._spool.append_many(items, now)
            was = len(self._pending)
            self._pending.extend(records)
            # Wake the sender only when it has something new to decide: a first event starts
            # the linger timer, a full batch ends it.
            if was == 0 or (was < self._batch_size <= len(self._pending)):
                self._cv.notify_all()

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cv:
                if self._closed or self._halted:
                    return
                gen = self._generation
            error: grpc.RpcError | None = None
            acked_any = False
            try:
                call = self._rpc(self._requests(gen), metadata=self._metadata)
                with self._cv:
                    self._call = call
                    if self._closed:
                        call.cancel()
                for ack in call:
                    self._on_ack(ack)
                    acked_any = True
            except grpc.RpcError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - the stream thread must survive anything
                error = None
                self._record_error("CLIENT_ERROR", repr(exc))
            if acked_any:
                attempt = 0
            with self._cv:
                self._call = None
                self._generation += 1
                self._requeue_in_flight()
                if self._closed:
                    return
                self._stats.retries += 1
            wait = backoff_delay(attempt, self._retry_base_s, self._retry_max_s, self._rng)
            attempt += 1
            if error is not None:
                code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
                details = error.details() if hasattr(error, "details") else str(error)
                self._record_error(code.name, details or "")
                if code not in _RETRYABLE:
                    with self._cv:
                        self._halted = True
                        self._cv.notify_all()
                    return
                retry_after = _retry_after_s(error)
                if retry_after is not None:
                    wait = max(wait, retry_after)
            # Only close() ends the pause early: flush(), new events and acks notify the same
            # condition, and a pause they could cut short would let a busy sender hammer a
            # gateway that is down.
            resume = time.monotonic() + wait
            with self._cv:
                while not self._closed:
                    left = resume - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)

    def _record_error(self, code: str, details: str) -> None:
        with self._cv:
            self._stats.errors[code] = self._stats.errors.get(code, 0) + 1
            self._stats.last_error = f"{code}: {details}"

    def _requeue_in_flight(self) -> None:
        """Put unanswered batches back at the head of the queue, in their original order."""
        records = [r for b in self._in_flight.values() for r in b.records]
        for b in self._in_flight.values():
            end_batch_span(b.span, error="no answer: resent on a new call")
        self._in_flight.clear()
        self._pending.extendleft(reversed(records))
        self._cv.notify_all()

    def _requests(self, gen: int) -> Iterator[bytes]:
        """The request stream of one call: batches as they fill, until the call is replaced."""
        while True:
            with self._cv:
                while True:
                    if self._closed or self._generation != gen:
                        return
                    now = time.monotonic()
                    if self._in_flight and self._call is not None:
                        oldest = next(iter(self._in_flight.values())).sent_at
                        if now - oldest > self._ack_timeout_s:
                            # No answer for too long: drop the call; its batches get resent.
                            self._call.cancel()
                            return
                    wait = 1.0
                    if self._pending and len(self._in_flight) < self._max_in_flight:
                        age = now - self._pending[0].t
                        if (
                            len(self._pending) >= self._batch_size
                            or age >= self._linger_s
                            or self._flushing
                        ):
                            break
                        wait = self._linger_s - age
                    self._cv.wait(min(wait, 1.0))
                records: list[Record] = []
                size = 0
                pending = self._pending
                while pending and len(records) < self._batch_size:
                    rec = pending[0]
                    if records and size + len(rec.framed) > self._max_batch_bytes:
                        break
                    records.append(pending.popleft())
                    size += len(rec.framed)
                batch_id = uuid.uuid4().hex
                span, traceparent = start_batch_span(batch_id, len(records))
                self._in_flight[batch_id] = _Batch(records, now, span)
                self._stats.sent += len(records)
                self._stats.batches_sent += 1
                dirty = self._spool.dirty(records)
            # An event goes on the wire only once it is durable on disk.
            Spool.sync(dirty)
            yield encode_batch(batch_id, [r.framed for r in records], traceparent)

    def _on_ack(self, ack: ingest_pb2.BatchAck) -> None:
        with self._cv:
            batch = self._in_flight.pop(ack.batch_id, None)
            if batch is None:
                return  # an ack of a batch already requeued after a reconnect
            lines: list[str] = []
            for rej in ack.rejections:
                reason = ingest_pb2.RejectReason.Name(rej.reason)
                self._stats.rejected[reason] = self._stats.rejected.get(reason, 0) + 1
                rejection = Rejection(rej.event_id, reason, rej.detail)
                self.rejections.append(rejection)
                lines.append(json.dumps(rejection.__dict__) + "\n")
            self._stats.acknowledged += len(batch.records) - len(ack.rejections)
            end_batch_span(batch.span, len(batch.records) - len(ack.rejections), len(lines))
            if lines:
                with open(self._rejections_path, "a", encoding="utf-8") as fh:
                    fh.writelines(lines)
            self._spool.mark_done(batch.records)
            self._cv.notify_all()


def _retry_after_s(error: grpc.RpcError) -> float | None:
    trailing = getattr(error, "trailing_metadata", None)
    if trailing is None:
        return None
    for key, value in trailing() or ():
        if key == "retry-after-ms":
            try:
                return float(value) / 1000.0
            except (TypeError, ValueError):
                return None
    return None
