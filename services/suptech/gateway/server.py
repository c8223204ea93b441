"""The ingest gateway: authenticate, rate-limit, validate, write to Kafka, then acknowledge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from suptech.common.credentials import ReloadingFile
from suptech.common.grpc_server import GrpcServer, ServerTLS
from suptech.common.otel import inject_headers, setup_telemetry
from suptech.gateway.auth import Authenticator, RegistrySource
from suptech.gateway.config import GatewayConfig
from suptech.gateway.forward import ReceivedBatch, parse_batch, sizes_then_clean
from suptech.gateway.metrics import GatewayMetrics
from suptech.gateway.producer import ProduceError, Refused, TelemetryProducer
from suptech.gateway.ratelimit import RateLimiter
from suptech.gateway.registry import Registry, RegistryError, load_registry
from suptech.gateway.validation import MAX_ID_CHARS, Limits, validate_batch
from suptech.v1 import ingest_pb2

__all__ = ["GatewayServer", "IngestServicer", "build_gateway", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


# Batches of one stream written to Kafka at the same time; the SDK keeps 4 in flight by default.
PIPELINE_DEPTH = 8
# A W3C traceparent is 55 characters; anything much longer is not one.
_MAX_TRACEPARENT = 128
# A client's fault worth an operator's eye, logged at most this often per institution.
REPORT_INTERVAL_S = 10.0


@dataclass(eq=False)
class _Started:
    ack: Any
    # The events no record of their topic can hold, refused after validation (usually none).
    written: asyncio.Future[list[Refused]]
    # Ended when the batch is acknowledged or fails.
    span: Span
    # reason name -> events refused for it
    refused: dict[str, int]
    # The batch's events (``TelemetryBatch.events``), to place such an event in the ack.
    events: Any
    # time.perf_counter() when the batch was received (the ingest latency's start).
    received_at: float = 0.0


@dataclass
class _Refusal:
    code: Any
    message: str
    trailing: tuple[tuple[str, str], ...] = ()


class ThrottledLog:
    """One log line per key and interval, counting the occurrences it did not log: a client
    repeating a fault cannot fill the log."""

    def __init__(self, logger: logging.Logger, interval_s: float = REPORT_INTERVAL_S) -> None:
        self._log = logger
        self._interval_s = interval_s
        # key -> (monotonic time of the last line, occurrences since)
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return
        if len(self._last) > 10_000:
            self._last.clear()  # keys are institutions; this bounds a pathological spread
        self._last[key] = (now, 0)
        if last is not None and last[1]:
            message += f" ({last[1]} more since the last report)"
        self._log.warning(message, *args)


def _batch_parent(traceparent: str, stream_parent: Context) -> Context:
    """The SDK's span for this batch when it sent a well-formed one (a malformed or oversized
    value is ignored, as W3C trace context says), else the stream call's context."""
    if not traceparent or len(traceparent) > _MAX_TRACEPARENT:
        return stream_parent
    ctx = extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return stream_parent
    return ctx


def _reason_name(reason: int) -> str:
    """``INVALID_FORMAT`` for ``REJECT_REASON_INVALID_FORMAT`` (metric attribute values)."""
    return ingest_pb2.RejectReason.Name(reason).removeprefix("REJECT_REASON_")


class IngestServicer:
    """``suptech.v1.IngestService``: one ack per batch, sent after Kafka confirmed it."""

    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        producer: TelemetryProducer,
        limits: Limits,
        max_batch_events: int,
        tracer: trace.Tracer,
        metrics: GatewayMetrics,
    ) -> None:
        self._tracer = tracer
        self.metrics = metrics
        self._auth = authenticator
        self._limiter = limiter
        self._producer = producer
        self._limits = limits
        self._max_batch_events = max_batch_events
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._client_faults = ThrottledLog(log)

    def begin_drain(self) -> None:
        """Refuse new batches (UNAVAILABLE: the client resends elsewhere); finish running ones."""
        self._draining = True

    def check_kafka(self) -> bool:
        """Blocking: whether Kafka answers and the telemetry topics exist."""
        return self._producer.check()

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def StreamTelemetry(  # noqa: N802 (the gRPC method name)
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Batches of one stream are validated and written concurrently (up to PIPELINE_DEPTH),
        acknowledged in the order they came: an SDK keeping several batches in flight is not held
        to one Kafka round trip per batch."""
        caller = await self._auth.authenticate(context)
        institution = caller.institution
        # The caller's trace (W3C traceparent in the call metadata) continues in each batch's span.
        parent = extract(
            {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        )
        # Unbounded queue, bounded pipeline: the reader never blocks on put, so it can always end.
        queue: asyncio.Queue[_Started | _Refusal | None] = asyncio.Queue()
        slots = asyncio.Semaphore(PIPELINE_DEPTH)
        live: set[_Started] = set()

        async def read() -> None:
            try:
                async for received in request_iterator:
                    if received is None or received.batch is None:
                        queue.put_nowait(self._undecodable(institution, received))
                        return
                    revoked = caller.refusal()
                    if revoked is not None:  # revoked or expired while the stream was open
                        self.metrics.batch(revoked.code.name.lower())
                        queue.put_nowait(_Refusal(revoked.code, revoked.message))
                        return
                    refusal = self._refuse(institution, received.batch)
                    if refusal is not None:
                        self.metrics.batch(refusal.code.name.lower())
                        queue.put_nowait(refusal)
                        return
                    await slots.acquire()
                    started = self._start(institution, received, parent)
                    live.add(started)
                    queue.put_nowait(started)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError:
                pass  # the client went away; nothing to answer
            except Exception:
                log.exception("batch of %s could not be handled", institution)
                queue.put_nowait(_Refusal(grpc.StatusCode.INTERNAL, "gateway error"))
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, _Refusal):
                    if item.trailing:
                        context.set_trailing_metadata(item.trailing)
                    await context.abort(item.code, item.message)
                    return
                try:
                    late = await item.written
                    if late:
                        self._refuse_late(item, late)
                except ProduceError as e:
                    log.warning("batch %s of %s not written: %s", item.ack.batch_id, institution, e)
                    self.metrics.batch("kafka_unavailable")
                    item.span.set_status(Status(StatusCode.ERROR, "Kafka unavailable"))
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"Kafka unavailable: {e}")
                finally:
                    live.discard(item)
                    slots.release()
                    self._done()
                    item.span.end()
                self._count(item)
                yield item.ack
        finally:
            reader.cancel()
            # Batches started but never acknowledged: the client resends them.
            for item in live:
                if item.written.done() and not item.written.cancelled():
                    item.written.exception()  # seen: not "never retrieved"
                item.written.cancel()
                item.span.end()
                self._done()

    def _undecodable(self, institution: str, received: ReceivedBatch | None) -> _Refusal:
        """Bytes that are not a ``TelemetryBatch``: the client's fault, not retryable."""
        error = received.error if received is not None else "undecodable"
        size = received.size if received is not None else 0
        self._client_faults.warning(
            institution,
            "undecodable request from %s (%d bytes): %s",
            institution,
            size,
            error,
        )
        self.metrics.batch("invalid_argument")
        return _Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"request is not a valid suptech.v1.TelemetryBatch: {error}",
        )

    def _refuse_late(self, item: _Started, late: list[Refused]) -> None:
        """Events no record of their topic can hold (its max.message.bytes is below the
        per-event limit): refused in the ack like any other (rare)."""
        ack = item.ack
        by_id = {r.event_id: r for r in late}
        rejections = list(ack.rejections)
        rejected = {r.index for r in rejections}
        for index, ev in enumerate(item.events):
            r = by_id.get(ev.event_id)
            # Accepted event ids are unique in a batch; refused copies are already listed.
            if r is not None and index not in rejected:
                rejections.append(
                    ingest_pb2.EventRejection(
                        index=index,
                        event_id=r.event_id,
                        reason=ingest_pb2.REJECT_REASON_TOO_LARGE,
                        detail=r.detail,
                    )
                )
                del by_id[ev.event_id]
        rejections.sort(key=lambda r: r.index)
        del ack.rejections[:]
        ack.rejections.extend(rejections)
        placed = len(late) - len(by_id)
        ack.accepted -= placed
        item.refused["TOO_LARGE"] = item.refused.get("TOO_LARGE", 0) + placed
        item.span.set_attribute("suptech.events_accepted", ack.accepted)
        item.span.set_attribute("suptech.events_rejected", len(rejections))

    def _refuse(self, institution: str, batch: Any) -> _Refusal | None:
        """Whole-batch errors, which end the stream."""
        if self._draining:
            return _Refusal(grpc.StatusCode.UNAVAILABLE, "gateway is shutting down")
        batch_id = batch.batch_id
        if not batch_id or len(batch_id) > MAX_ID_CHARS:
            return _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT, f"batch_id must be 1..{MAX_ID_CHARS} chars"
            )
        n = len(batch.events)
        if n > self._max_batch_events:
            return _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch {batch_id} has {n} events, at most {self._max_batch_events}",
            )
        wait_s = self._limiter.take(institution, n)
        if wait_s > 0:
            return _Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit of institution {institution} exceeded; retry after {wait_s:.3f}s",
                (("retry-after-ms", str(max(1, round(wait_s * 1000)))),),
            )
        return None

    def _start(self, institution: str, received: ReceivedBatch, parent: Context) -> _Started:
        """Validate the batch and start writing its accepted events."""
        received_at = time.perf_counter()
        batch = received.batch
        batch_id = batch.batch_id
        span = self._tracer.start_span(
            "suptech.gateway.batch",
            context=_batch_parent(batch.traceparent, parent),
            kind=SpanKind.SERVER,
            attributes={"suptech.institution_id": institution, "suptech.batch_id": batch_id},
        )
        events = batch.events
        sizes = sizes_then_clean(received, self._limits.max_event_bytes)
        verdict = validate_batch(events, institution, time.time(), self._limits, sizes)
        ack = ingest_pb2.BatchAck(batch_id=batch_id, accepted=verdict.accepted_count)
        refused: dict[str, int] = {}
        if verdict.rejections:
            add = ack.rejections.add
            for index, event_id, reason, detail in verdict.rejections:
                add(index=index, event_id=event_id, reason=reason, detail=detail)
                name = _reason_name(reason)
                refused[name] = refused.get(name, 0) + 1
        span.set_attribute("suptech.events_accepted", verdict.accepted_count)
        span.set_attribute("suptech.events_rejected", len(verdict.rejections))
        with trace.use_span(span, end_on_exit=False):
            headers = inject_headers()
        self._in_flight += 1
        self._idle.clear()
        # All accepted and of one kind: the records are framed from one serialisation of the batch.
        whole = not verdict.rejections and len(verdict.accepted) == 1
        written = asyncio.ensure_future(
            self._producer.publish(
                institution, batch_id, verdict.accepted, headers, batch if whole else None
            )
        )
        written.add_done_callback(self._produced(time.perf_counter()))
        return _Started(ack, written, span, refused, events, received_at)

    def _produced(self, sent_at: float) -> Callable[[asyncio.Future[list[Refused]]], None]:
        """Observes the Kafka produce latency of a batch that Kafka confirmed."""

        def observe(written: asyncio.Future[list[Refused]]) -> None:
            if not written.cancelled() and written.exception() is None:
                self.metrics.produce_seconds.observe(time.perf_counter() - sent_at)

        return observe

    def _count(self, item: _Started) -> None:
        ingest_s = time.perf_counter() - item.received_at
        self.metrics.acked(item.ack.accepted, item.refused, ingest_s)

    def _done(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()


class GatewayServer(GrpcServer):
    """The shared server, whose stop first lets in-flight batches reach Kafka and their acks.

    Its health (and that of the plain-text health port, when there is one) is SERVING while Kafka
    answers; NOT_SERVING once Kafka has been unreachable for longer than the produce timeout (the
    pod leaves the Service's endpoints rather than fail every call), SERVING again when Kafka is
    back, and NOT_SERVING for good from the start of a drain.
    """

    def __init__(
        self,
        servicer: IngestServicer,
        *,
        health_server: GrpcServer | None = None,
        kafka_ping: Callable[[], bool] = lambda: True,
        kafka_grace_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.servicer = servicer
        self.health_server = health_server
        self._kafka_ping = kafka_ping
        self._kafka_grace_s = kafka_grace_s
        self._monitor: asyncio.Task[None] | None = None
        # While Kafka is away: one line of our own per interval, not one per ping.
        self._kafka_down_log = ThrottledLog(log)

    @property
    def health_port(self) -> int | None:
        """The plain-text health port (bound port when configured as 0), or None without TLS."""
        return None if self.health_server is None else self.health_server.port

    async def start(self) -> None:
        if self.health_server is not None:
            await self.health_server.start()
        await super().start()
        self._monitor = asyncio.create_task(self._watch_kafka())

    async def _set_health(self, serving: bool) -> None:
        for server in (self, self.health_server):
            if server is not None:
                await server.set_serving(serving)

    async def _watch_kafka(self) -> None:
        interval_s = min(2.0, self._kafka_grace_s / 2)
        down_since: float | None = None
        serving = True
        while True:
            ok = await asyncio.to_thread(self._kafka_ping)
            now = time.monotonic()
            if ok:
                down_since = None
            elif down_since is None:
                down_since = now
            if down_since is not None:
                self._kafka_down_log.warning(
                    "kafka",
                    "Kafka does not answer (for %.0fs): batches fail with UNAVAILABLE; retrying",
                    now - down_since,
                )
            want = down_since is None or now - down_since <= self._kafka_grace_s
            if want != serving:
                serving = want
                if serving:
                    log.info("Kafka is back: health SERVING")
                else:
                    log.warning(
                        "Kafka unreachable for over %.0fs: health NOT_SERVING", self._kafka_grace_s
                    )
                await self._set_health(serving)
            await asyncio.sleep(interval_s)

    async def stop(self, grace_s: float = 10.0) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
        await self.begin_shutdown()
        if self.health_server is not None:
            await self.health_server.begin_shutdown()
        self.servicer.begin_drain()
        if not await self.servicer.wait_idle(grace_s):
            log.warning("batches still in flight after %.0fs: their clients will resend", grace_s)
        # Streams left are idle between batches: closing them loses nothing.
        await super().stop(min(grace_s, 1.0))
        if self.health_server is not None:
            await self.health_server.stop(0)


def register_ingest(servicer: IngestServicer, server: grpc.aio.Server) -> None:
    """The generated registration's handler, with a deserializer that keeps the received bytes."""
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.StreamTelemetry,
        request_deserializer=parse_batch,
        response_serializer=ingest_pb2.BatchAck.SerializeToString,
    )
    handlers = {"StreamTelemetry": handler}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    # As the generated code does: grpc then finds the method without walking generic handlers.
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def registry_source(config: GatewayConfig) -> RegistrySource:
    """The registry of institutions: its file, re-read when it changes, else the config's."""
    if config.tokens_file:
        return ReloadingFile(
            config.tokens_file,
            load_registry,
            check_every_s=config.tokens_reload_s,
            errors=(RegistryError,),
        )
    return Registry.from_entries(config.tokens, "GatewayConfig.tokens")


def build_gateway(
    config: GatewayConfig,
    tracer: trace.Tracer | None = None,
    metrics: GatewayMetrics | None = None,
) -> tuple[GatewayServer, Callable[[], Awaitable[None]]]:
    """The gateway's server (not started) and the cleanup that closes its Kafka producer.

    ``tracer`` defaults to the process's OpenTelemetry provider (installed once); ``metrics``
    to a registry of this gateway's own (``server.servicer.metrics``).
    """
    tracer = tracer if tracer is not None else setup_telemetry("gateway")[0]
    producer = TelemetryProducer(config.kafka_addr, config.topic_prefix, config.produce_timeout_s)
    servicer = IngestServicer(
        Authenticator(registry_source(config)),
        RateLimiter(config.rate_limit_eps, config.rate_limit_burst),
        producer,
        Limits(
            max_skew_s=config.max_skew_s,
            max_age_s=config.max_age_s,
            max_event_bytes=config.max_event_bytes,
        ),
        config.max_batch_events,
        tracer,
        metrics if metrics is not None else GatewayMetrics(),
    )
    tls = None
    health_server = None
    if config.tls_cert and config.tls_key:
        tls = ServerTLS.from_files(config.tls_cert, config.tls_key, config.tls_client_ca)
        health_server = GrpcServer(
            host=config.host,
            port=config.health_port,
            registrations=[],
            service_names=[SERVICE_NAME],
        )
    server = GatewayServer(
        servicer,
        health_server=health_server,
        kafka_ping=producer.ping,
        kafka_grace_s=config.produce_timeout_s,
        host=config.host,
        port=config.port,
        registrations=[lambda s: register_ingest(servicer, s)],
        service_names=[SERVICE_NAME],
        tls=tls,
    )

    async def cleanup() -> None:
        await asyncio.to_thread(producer.close)

    return server, cleanup
