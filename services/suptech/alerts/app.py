"""Wiring of the alert service: database, gRPC server, findings consumer, outbox, ticker."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from suptech.alerts import authz, escalation
from suptech.alerts.config import AlertsConfig, check_authentication
from suptech.alerts.consumer import FindingsConsumer
from suptech.alerts.database import open_database
from suptech.alerts.metrics import AlertsMetrics
from suptech.alerts.outbox import FeedbackDispatcher
from suptech.alerts.sandbox_register import SandboxRegister
from suptech.alerts.scores import ScoreHistory, ScoresFollower
from suptech.alerts.service import AlertServicer
from suptech.alerts.store import AlertStore
from suptech.alerts.webhooks import WebhookDispatcher
from suptech.common.grpc_server import GrpcServer, ServerTLS
from suptech.common.topics import (
    DEAD_LETTER,
    FEEDBACK,
    FINDINGS,
    REGISTRY_SANDBOX,
    SCORES,
    ensure_topics,
)
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

__all__ = ["AlertApp", "build_alert_service"]

log = logging.getLogger(__name__)

SERVICE_NAME = alerts_pb2.DESCRIPTOR.services_by_name["AlertService"].full_name


class AlertApp:
    """The running service; ``await start()`` then ``await stop()``."""

    def __init__(
        self, config: AlertsConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.config = config
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.engine: Engine | None = None
        self.sessions: sessionmaker[Session] | None = None
        self.store: AlertStore | None = None
        self.consumer: FindingsConsumer | None = None
        # The register of sandbox tests (registry.sandbox.v1), served by ListSandboxTests.
        self.register: SandboxRegister | None = None
        # Recent per-event scores by entity (scores.v1), served by ListEntityScores.
        self.scores = ScoreHistory(config.scores_per_entity, config.scores_entities)
        self._server: GrpcServer | None = None
        self._health_server: GrpcServer | None = None
        self.port = 0
        # The plain-text health port when TLS is on (bound port if configured as 0), else None.
        self.health_port: int | None = None
        # Set when a part the service cannot run without has died (the findings consumer):
        # health is NOT_SERVING from then on and ``python -m suptech.alerts`` exits non-zero.
        self.failed: asyncio.Event | None = None
        self.failure = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        # Served by ``python -m suptech.alerts`` on SUPTECH_METRICS_PORT.
        self.metrics = AlertsMetrics()

    async def start(self) -> None:
        cfg = self.config
        # Fail closed before touching anything: no credentials, no service (unless insecure
        # development is explicit, and then on loopback only).
        check_authentication(cfg)
        # Read (and validated: token lengths, expiries) before Kafka or the database are touched.
        tokens = (
            authz.ReloadingTokenStore(cfg.tokens_file, check_every_s=cfg.tokens_reload_s)
            if cfg.tokens_file
            else None
        )
        self._loop = asyncio.get_running_loop()
        self.failed = asyncio.Event()
        await asyncio.to_thread(
            ensure_topics,
            cfg.kafka_addr,
            cfg.topic_prefix,
            (FINDINGS, FEEDBACK, DEAD_LETTER, REGISTRY_SANDBOX, SCORES),
        )
        self.engine, sessions = await asyncio.to_thread(open_database, cfg.db_url)
        self.sessions = sessions
        self.store = AlertStore(sessions, cfg, clock=self._clock)
        interceptors = []
        if tokens is not None:
            interceptors.append(authz.AuthInterceptor(tokens))
        else:
            log.warning(
                "ALERTS_INSECURE_DEV: no authentication, every caller is an admin; "
                "bound to %s only",
                cfg.bind_host(),
            )
        register = await asyncio.to_thread(
            SandboxRegister, bootstrap=cfg.kafka_addr, topic_prefix=cfg.topic_prefix
        )
        self.register = register
        # Started now, so the register loads while the rest starts, and a start that fails
        # later still closes its consumer (stop() joins every spawned thread).
        self._spawn("sandbox-register", lambda: self._run_register(register))
        scores = await asyncio.to_thread(
            ScoresFollower,
            self.scores,
            bootstrap=cfg.kafka_addr,
            topic_prefix=cfg.topic_prefix,
            lookback_s=cfg.scores_lookback_s,
        )
        self._spawn("scores", lambda: self._run_scores(scores))
        servicer = AlertServicer(
            self.store, stream_poll_s=cfg.stream_poll_s, register=register, scores=self.scores
        )
        servicer.on_streamed = self.metrics.streamed
        tls = None
        if cfg.tls_cert:
            tls = ServerTLS.from_files(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca or None)
            self._health_server = GrpcServer(
                host=cfg.bind_host(),
                port=cfg.health_port,
                registrations=[],
                service_names=[SERVICE_NAME],
            )
            self.health_port = self._health_server.port
        self._server = GrpcServer(
            host=cfg.bind_host(),
            port=cfg.port,
            registrations=[
                lambda s: alerts_pb2_grpc.add_AlertServiceServicer_to_server(servicer, s)
            ],
            service_names=[SERVICE_NAME],
            tls=tls,
            interceptors=interceptors,
        )
        self.port = self._server.port
        self.consumer = await asyncio.to_thread(
            FindingsConsumer,
            self.store,
            bootstrap=cfg.kafka_addr,
            topic_prefix=cfg.topic_prefix,
            group_id=cfg.consumer_group,
            session_timeout_s=cfg.consumer_session_timeout_s,
            heartbeat_s=cfg.consumer_heartbeat_s,
            instance_id=cfg.consumer_instance_id,
            retry_initial_s=cfg.db_retry_initial_s,
            retry_max_s=cfg.db_retry_max_s,
        )
        self.consumer.on_stored = self.metrics.stored
        self.metrics.consumer.stats = self.consumer.stats
        feedback = await asyncio.to_thread(
            FeedbackDispatcher,
            sessions,
            bootstrap=cfg.kafka_addr,
            topic_prefix=cfg.topic_prefix,
            clock=self._clock,
        )
        webhooks = (
            WebhookDispatcher(sessions, cfg.webhook_urls, cfg.webhook_secret, clock=self._clock)
            if cfg.webhook_urls
            else None
        )
        if self._health_server is not None:
            await self._health_server.start()
        await self._server.start()
        consumer = self.consumer
        self._spawn("findings-consumer", lambda: self._run_consumer(consumer))
        self._spawn("outbox", lambda: self._run_outbox(feedback, webhooks))
        self._spawn("ticker", self._run_ticker)
        log.info("alerts listening on %d", self.port)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=f"alerts-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _run_consumer(self, consumer: FindingsConsumer) -> None:
        try:
            consumer.run(self._stop)
        except Exception as exc:
            log.exception("findings consumer died")
            self._report_failure(f"findings consumer died: {type(exc).__name__}: {exc}")
        finally:
            consumer.close()
        if not self._stop.is_set() and not self.failure:
            self._report_failure("findings consumer stopped")

    def _run_register(self, register: SandboxRegister) -> None:
        try:
            register.run(self._stop)
        finally:
            register.close()

    def _run_scores(self, follower: ScoresFollower) -> None:
        try:
            follower.run(self._stop)
        finally:
            follower.close()

    def _report_failure(self, reason: str) -> None:
        """From any thread: health NOT_SERVING (liveness included), ``failed`` set."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self.failure = reason
        try:
            asyncio.run_coroutine_threadsafe(self._fail(reason), loop)
        except RuntimeError:  # the loop is shutting down: so is the service
            pass

    async def _fail(self, reason: str) -> None:
        log.error("alert service unhealthy: %s; reporting NOT_SERVING", reason)
        # Liveness too: only a restart brings a dead consumer back.
        for server in (self._server, self._health_server):
            if server is not None:
                await server.begin_shutdown()
        if self.failed is not None:
            self.failed.set()

    def _run_outbox(self, feedback: FeedbackDispatcher, webhooks: WebhookDispatcher | None) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    feedback.run_once()
                    if webhooks is not None:
                        self.metrics.dispatched(webhooks.run_once())
                    failures = 0
                except Exception:  # a dispatcher failure must not stop the others
                    failures += 1
                    # One traceback per outage, not five a second while the database is down.
                    if failures == 1:
                        log.exception("outbox dispatch failed; retrying with backoff")
                    else:
                        log.warning("outbox dispatch failed again (%d in a row)", failures)
                # Backoff while failing: 0.2 s doubling up to the consumer's database backoff.
                delay = self.config.outbox_poll_s * 2 ** min(failures, 10)
                self._stop.wait(
                    min(delay, max(self.config.db_retry_max_s, self.config.outbox_poll_s))
                )
        finally:
            feedback.close()

    def tick(self) -> None:
        """One round of housekeeping: auto-resolve, expire silences, escalate overdue alerts."""
        assert self.store is not None and self.sessions is not None
        self.store.auto_resolve()
        self.store.expire_silences()
        esc = escalation.EscalationConfig.from_alerts_config(self.config)
        with self.sessions() as s, s.begin():
            escalation.escalate_due(s, self._clock(), esc)
        self.metrics.refresh(self.sessions)

    def _run_ticker(self) -> None:
        failures = 0
        while not self._stop.wait(self.config.tick_s):
            try:
                self.tick()
                failures = 0
            except Exception as exc:
                failures += 1
                # One traceback per outage (the database's, usually), then one line per tick.
                if failures == 1:
                    log.exception("housekeeping tick failed")
                else:
                    log.warning("housekeeping tick failed again (%d in a row): %r", failures, exc)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace_s=2.0)
        if self._health_server is not None:
            await self._health_server.stop(grace_s=0)
        self._stop.set()
        for t in self._threads:
            await asyncio.to_thread(t.join, 30)
        if self.engine is not None:
            self.engine.dispose()


def build_alert_service(
    config: AlertsConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> AlertApp:
    return AlertApp(config, clock)
