"""The ingest gateway: authenticate, rate-limit, validate, write to Kafka, then acknowledge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from suptech.common.grpc_server import GrpcServer, ServerTLS
from suptech.gateway.auth import Authenticator
from suptech.gateway.config import GatewayConfig
from suptech.gateway.producer import ProduceError, TelemetryProducer
from suptech.gateway.ratelimit import RateLimiter
from suptech.gateway.validation import MAX_ID_CHARS, Limits, validate_batch
from suptech.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["GatewayServer", "IngestServicer", "build_gateway", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


# Batches of one stream written to Kafka at the same time; the SDK keeps 4 in flight by default.
PIPELINE_DEPTH = 8


@dataclass(eq=False)
class _Started:
    ack: Any
    written: asyncio.Future[None]


@dataclass
class _Refusal:
    code: Any
    message: str
    trailing: tuple[tuple[str, str], ...] = ()


class IngestServicer:
    """``suptech.v1.IngestService``: one ack per batch, sent after Kafka confirmed it."""

    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter,
        producer: TelemetryProducer,
        limits: Limits,
        max_batch_events: int,
    ) -> None:
        self._auth = authenticator
        self._limiter = limiter
        self._producer = producer
        self._limits = limits
        self._max_batch_events = max_batch_events
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

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
        institution = await self._auth.authenticate(context)
        # Unbounded queue, bounded pipeline: the reader never blocks on put, so it can always end.
        queue: asyncio.Queue[_Started | _Refusal | None] = asyncio.Queue()
        slots = asyncio.Semaphore(PIPELINE_DEPTH)
        live: set[_Started] = set()

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    refusal = self._refuse(institution, batch)
                    if refusal is not None:
                        queue.put_nowait(refusal)
                        return
                    await slots.acquire()
                    started = self._start(institution, batch)
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
                    await item.written
                except ProduceError as e:
                    log.warning("batch %s of %s not written: %s", item.ack.batch_id, institution, e)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"Kafka unavailable: {e}")
                finally:
                    live.discard(item)
                    slots.release()
                    self._done()
                yield item.ack
        finally:
            reader.cancel()
            # Batches started but never acknowledged: the client resends them.
            for item in live:
                item.written.cancel()
                self._done()

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

    def _start(self, institution: str, batch: Any) -> _Started:
        """Validate ``batch`` and start writing its accepted events."""
        batch_id = batch.batch_id
        verdict = validate_batch(batch.events, institution, time.time(), self._limits)
        ack = ingest_pb2.BatchAck(batch_id=batch_id, accepted=verdict.accepted_count)
        if verdict.rejections:
            add = ack.rejections.add
            for index, event_id, reason, detail in verdict.rejections:
                add(index=index, event_id=event_id, reason=reason, detail=detail)
        self._in_flight += 1
        self._idle.clear()
        written = asyncio.ensure_future(
            self._producer.publish(institution, batch_id, verdict.accepted)
        )
        return _Started(ack, written)

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
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for server in (self, self.health_server):
            if server is not None:
                for name in ("", SERVICE_NAME):
                    await server._health.set(name, status)

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
        await self._health.enter_graceful_shutdown()
        if self.health_server is not None:
            await self.health_server._health.enter_graceful_shutdown()
        self.servicer.begin_drain()
        if not await self.servicer.wait_idle(grace_s):
            log.warning("batches still in flight after %.0fs: their clients will resend", grace_s)
        # Streams left are idle between batches: closing them loses nothing.
        await super().stop(min(grace_s, 1.0))
        if self.health_server is not None:
            await self.health_server.stop(0)


def build_gateway(config: GatewayConfig) -> tuple[GatewayServer, Callable[[], Awaitable[None]]]:
    """The gateway's server (not started) and the cleanup that closes its Kafka producer."""
    producer = TelemetryProducer(config.kafka_addr, config.topic_prefix, config.produce_timeout_s)
    servicer = IngestServicer(
        Authenticator(config.tokens),
        RateLimiter(config.rate_limit_eps, config.rate_limit_burst),
        producer,
        Limits(max_skew_s=config.max_skew_s, max_age_s=config.max_age_s),
        config.max_batch_events,
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
        registrations=[lambda s: ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        tls=tls,
    )

    async def cleanup() -> None:
        await asyncio.to_thread(producer.close)

    return server, cleanup
