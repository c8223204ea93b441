"""The faust app: one agent over the telemetry, the sandbox registry and the verdicts, one timer.

Delivery is at-least-once and the engine state is exact across a crash:

* findings and dead letters of a record are written (producer futures awaited) before the record
  is acknowledged;
* faust's own periodic commit is switched off; offsets are committed right after a checkpoint
  reached Kafka, and every other commit faust makes (at a rebalance, at shutdown) is clamped to
  that checkpoint's offsets (:class:`~suptech.detector.commits.CommitGuard`), so the committed
  offsets never pass the state that covers them;
* after a restart, records below the checkpoint's offsets are skipped (already in the restored
  engine), and the rest are processed again: the engine dedups by event_id, and finding ids are
  deterministic, so a replay repeats ids and never invents new ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from opentelemetry import trace

from suptech.common.kafka import faust_credentials, open_client
from suptech.common.logging_setup import faust_logging
from suptech.common.otel import extract_context, inject_headers, setup_telemetry
from suptech.common.topics import (
    DEAD_LETTER,
    DETECTOR_CHECKPOINTS,
    FEEDBACK,
    FINDINGS,
    REGISTRY_SANDBOX,
    SCORES,
    TELEMETRY_TOPICS,
    topic_name,
)
from suptech.detector.checkpoint import (
    Checkpoint,
    CheckpointStore,
    KafkaCheckpointStore,
    newest_checkpoint,
)
from suptech.detector.commits import CommitGuard
from suptech.detector.config import DetectorConfig
from suptech.detector.health import HealthPort
from suptech.detector.logic import EngineConfig
from suptech.detector.metrics import DetectorMetrics
from suptech.detector.processing import DeadLetter, DetectorCore, Outcome
from suptech.detector.state_key import load_state_key
from suptech.v1 import findings_pb2

__all__ = ["Detector", "build_app", "build_worker"]

log = logging.getLogger("suptech.detector")

# Commits happen after checkpoints only; this keeps faust's timer and counter out of the way.
_NEVER_S = 10 * 365 * 24 * 3600.0
_NEVER_N = 2**62


@dataclass
class Detector:
    """The faust app together with the state its agent drives."""

    app: faust.App
    core: DetectorCore
    store: CheckpointStore
    remote: KafkaCheckpointStore
    config: DetectorConfig
    lock: asyncio.Lock
    findings_topic: Any
    dead_letter_topic: Any
    scores_topic: Any
    health: HealthPort
    tracer: trace.Tracer
    commits: CommitGuard = field(default_factory=CommitGuard)
    _last_progress: dict[str, int] = field(default_factory=dict)
    metrics: DetectorMetrics = field(default_factory=DetectorMetrics)

    async def publish(self, outcome: Outcome) -> None:
        await self._publish(outcome.findings, outcome.dead_letters, outcome.scores)

    async def _publish(
        self,
        findings: Iterable[findings_pb2.Finding],
        dead_letters: Iterable[DeadLetter],
        scores: Iterable[findings_pb2.AnomalyScoreBatch] = (),
    ) -> None:
        futures = []
        for batch in scores:
            futures.append(
                await self.scores_topic.send(
                    key=batch.institution_id.encode(), value=batch.SerializeToString(), force=True
                )
            )
        for finding in findings:
            self.metrics.published(finding)
            futures.append(
                await self.findings_topic.send(
                    key=finding.institution_id.encode(),
                    value=finding.SerializeToString(),
                    # The span of the record (or watermark tick) that produced the finding.
                    headers=inject_headers(),
                    force=True,
                )
            )
        for dead in dead_letters:
            log.warning(
                "dead letter: %s (%s) from %s:%d@%d",
                dead.reason,
                dead.detail[:200],
                dead.source_topic,
                dead.source_partition,
                dead.source_offset,
            )
            self.metrics.dead_letters.labels(dead.reason).inc()
            futures.append(
                await self.dead_letter_topic.send(
                    key=dead.key, value=dead.value, headers=dead.headers(), force=True
                )
            )
        if futures:
            # Delivered (acks=all) before the source record may be acknowledged.
            await asyncio.gather(*futures)

    async def checkpoint(self) -> None:
        """Write a checkpoint to disk and Kafka, then commit offsets (never past the checkpoint's).

        Offsets are committed only once Kafka has the checkpoint: a worker that loses its disk
        restores from Kafka, and must find there everything its committed offsets skip.
        """
        if self.core.failed:
            return
        # The snapshot itself must be taken between records, on the loop; writing and fsyncing
        # the file, and a few MiB at acks=all, go off it so heartbeats and health keep going.
        checkpoint = self.core.checkpoint()
        taken = checkpoint, await asyncio.to_thread(self.store.save, checkpoint)
        try:
            checkpoint_id = await asyncio.to_thread(self.remote.save, taken[1], taken[0])
        except Exception as exc:
            self._remote_failed(exc)
            return
        self._written(taken[1], taken[0], checkpoint_id)
        await self.app.consumer.commit()

    async def commit_covered(self) -> None:
        """Commit what the last durable checkpoint covers; a refusal only means the records
        above the previous commit are read again."""
        try:
            await self.app.consumer.commit()
        except Exception as exc:
            log.warning("offsets not committed after the checkpoint (%r): re-read later", exc)

    def checkpoint_now(self) -> None:
        """The same, blocking, for rebalances and shutdown (faust commits after those itself)."""
        taken = self._write_local()
        if taken is None:
            return
        try:
            checkpoint_id = self.remote.save(taken[1], taken[0])
        except Exception as exc:
            self._remote_failed(exc)
            return
        self._written(taken[1], taken[0], checkpoint_id)

    def _write_local(self) -> tuple[Checkpoint, bytes] | None:
        if self.core.failed:
            return None
        checkpoint = self.core.checkpoint()
        return checkpoint, self.store.save(checkpoint)

    def _written(self, data: bytes, checkpoint: Checkpoint, checkpoint_id: str) -> None:
        self.metrics.checkpoint_bytes.set(len(data))
        self.commits.durable(checkpoint.offsets)
        log.info(
            "checkpoint written: %d bytes to %s and Kafka %s as %s, stats=%s",
            len(data),
            self.store.path,
            self.remote.topic,
            checkpoint_id,
            json.dumps(self.core.engine.stats(), sort_keys=True),
        )

    def _remote_failed(self, exc: BaseException) -> None:
        log.error(
            "checkpoint written to %s only, not to Kafka %s (%r): offsets not committed",
            self.store.path,
            self.remote.topic,
            exc,
        )

    async def on_watermark(self) -> None:
        # Asked of the broker before taking the lock, so records keep flowing meanwhile. Offsets
        # can only move on in between: a partition seen lagging may have caught up, which holds
        # the watermark back a moment longer, never lets it run ahead.
        lagging = await self._lagging_partitions()
        async with self.lock:
            if self.core.failed:
                return
            with self.tracer.start_as_current_span("detector.advance"):
                findings = self.core.advance(lagging)
                try:
                    await self._publish(findings, ())
                except Exception as exc:
                    await self._fail(exc)
                    return
            progress = self.core.progress()
            if progress != self._last_progress:
                self._last_progress = progress
                log.info("detector progress %s", json.dumps(progress, sort_keys=True))
            self.metrics.refresh(self.core.engine.stats(), self.core.watermark_ns(lagging=lagging))
            if self.core.checkpoint_due():
                await self.checkpoint()

    async def _lagging_partitions(self) -> frozenset[tuple[str, int]]:
        """Telemetry partitions with records not yet read, by their end offsets on the broker.

        Asked of the broker each time: the high-water marks a consumer keeps from its fetches go
        stale for a partition it has not fetched lately, which is exactly the lagging one.
        """
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.core.telemetry_topics]
        if not tps:
            return frozenset()
        try:
            ends = await consumer.highwaters(*tps)
        except Exception as exc:  # unknown: assume every partition may hold a backlog
            log.warning("cannot read end offsets (%r): holding the watermark", exc)
            return frozenset((tp.topic, tp.partition) for tp in tps)
        offsets = self.core.offsets
        for tp in tps:
            done = offsets.get((tp.topic, tp.partition), 0)
            self.metrics.lag(tp.topic, tp.partition, ends.get(tp, 0) - done)
        return frozenset(
            (tp.topic, tp.partition)
            for tp in tps
            if ends.get(tp, 0) > offsets.get((tp.topic, tp.partition), 0)
        )

    async def on_record(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        async with self.lock:
            if self.core.failed:
                return
            outcome = self.core.handle(topic, partition, offset, key, value)
            try:
                await self.publish(outcome)
            except Exception as exc:
                await self._fail(exc)
                return
            self.metrics.events.inc(outcome.events)
            if self.core.checkpoint_due():
                await self.checkpoint()

    async def _fail(self, exc: BaseException) -> None:
        # The engine now holds a record whose outputs may be lost: it must never be checkpointed.
        # Crashing lets the restart replay from the last checkpoint instead.
        self.core.failed = True
        log.error("cannot publish detector output (%r): stopping the worker", exc)
        await self.app.crash(exc)


def read_registry(
    bootstrap: str, topic: str, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on the (compacted) registry topic, from its beginning to its current
    end, tombstones (value None) included, in log order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = open_client(
        KafkaConsumer, bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = {tp: o for tp, o in consumer.end_offsets(tps).items() if o > 0}
        values: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < o for tp, o in end.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot read {topic} to its end in {timeout_s}s")
            for records in consumer.poll(timeout_ms=500).values():
                values.extend((r.key, r.value) for r in records)
        return values
    finally:
        consumer.close()


def preload_registry(detector: Detector) -> None:
    """Load the whole sandbox register before any report is judged against it."""
    config = detector.config
    values = read_registry(config.kafka_addr, topic_name(REGISTRY_SANDBOX, config.topic_prefix))
    log.info("sandbox register preloaded: %d tests", detector.core.preload_registry(values))


def restore_point(
    store: CheckpointStore, remote: KafkaCheckpointStore
) -> tuple[Checkpoint | None, str]:
    """The newer of the local checkpoint file and the checkpoint in Kafka, and where it is."""
    local = store.load()
    try:
        found = remote.load()
    except Exception as exc:  # the local file (or a cold start) still lets the worker run
        log.error("cannot read Kafka checkpoints from %s (%r): ignoring them", remote.topic, exc)
        found = None
    checkpoint, source = newest_checkpoint(
        local,
        found[0] if found else None,
        str(store.path),
        f"{remote.topic} {found[1]}" if found else "",
    )
    log.info(
        "checkpoint choice: local file %s, Kafka %s: using %s",
        "present" if local else "absent",
        found[1] if found else "none usable",
        source if checkpoint else "none (cold start)",
    )
    return checkpoint, source


def build_app(config: DetectorConfig, engine_config: EngineConfig | None = None) -> Detector:
    """The detector's faust app, its engine restored from the last checkpoint if there is one."""
    engine_config = dataclasses.replace(
        engine_config or EngineConfig(), record_scores=config.publish_scores
    )
    prefix = config.topic_prefix
    telemetry = sorted({topic_name(spec, prefix) for spec in TELEMETRY_TOPICS.values()})
    registry = topic_name(REGISTRY_SANDBOX, prefix)
    feedback = topic_name(FEEDBACK, prefix)
    (config.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.kafka_addr}",
        # SUPTECH_KAFKA_* (TLS, SASL/SCRAM), as every other client of the project.
        broker_credentials=faust_credentials(),
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(config.state_dir / "faust"),
        # Topics are declared once, in suptech.common.topics, and created before the worker.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=config.web_enabled,
        web_port=config.web_port,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=max(1.0, config.session_timeout_s / 5),
        broker_rebalance_timeout=config.session_timeout_s,
        broker_commit_interval=_NEVER_S,
        broker_commit_every=_NEVER_N,
        producer_acks=-1,
    )
    key = load_state_key(config.state_key_path, create=config.state_key_file is None)
    store = CheckpointStore(config.checkpoint_path, key)
    remote = KafkaCheckpointStore(
        config.kafka_addr, topic_name(DETECTOR_CHECKPOINTS, prefix), config.app_id, key
    )
    restored, restored_from = restore_point(store, remote)
    core = DetectorCore.resume(
        restored,
        restored_from,
        set(telemetry),
        registry,
        engine_config,
        config.checkpoint_interval_s,
        config.checkpoint_events,
        config.partition_idle_s,
        feedback_topic=feedback,
    )
    detector = Detector(
        app,
        core,
        store,
        remote,
        config,
        asyncio.Lock(),
        app.topic(topic_name(FINDINGS, prefix), key_type=bytes, value_type=bytes),
        app.topic(topic_name(DEAD_LETTER, prefix), key_type=bytes, value_type=bytes),
        app.topic(topic_name(SCORES, prefix), key_type=bytes, value_type=bytes),
        HealthPort(config.health_host, config.health_port),
        setup_telemetry("detector")[0],
    )
    if restored is not None and restored_from.startswith("Kafka"):
        detector.commits.durable(core.offsets)
    source = app.topic(*telemetry, registry, feedback, key_type=bytes, value_type=bytes)

    async def detect(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            # A child of the producer's span (the gateway's ingest call), so a finding can be
            # followed back to the batch that carried its evidence.
            with detector.tracer.start_as_current_span(
                "detector.process",
                context=extract_context(m.headers),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": m.topic,
                    "messaging.kafka.destination.partition": m.partition,
                    "messaging.kafka.message.offset": m.offset,
                },
            ):
                await detector.on_record(m.topic, m.partition, m.offset, m.key, m.value)

    app.agent(source, name=f"{config.app_id}.detect")(detect)
    app.timer(config.watermark_interval_s, name=f"{config.app_id}.watermark")(detector.on_watermark)

    async def start_health() -> None:
        # On faust's loop, after the app has started; SERVING waits for the first assignment.
        await detector.health.start()

    app.task(start_health)

    ready = asyncio.Event()

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned = args[0] if args else set()
        # Before faust's first commit at a revocation or a shutdown.
        detector.commits.install(detector.app.consumer)
        if assigned and not ready.is_set():
            ready.set()
            # The engine was restored from its checkpoint before the worker started.
            await detector.health.mark_ready()
            log.info("detector ready: %d partitions assigned", len(assigned))

    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # Partitions may move to another worker: hand over as much state as possible. faust has
        # committed already, clamped to the previous checkpoint; commit up to this one.
        if args and args[0]:
            detector.checkpoint_now()
            await detector.commit_covered()

    async def on_shutdown(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # Streams are drained and faust's (clamped) commit is done: checkpoint, then commit.
        await detector.health.begin_shutdown()
        detector.checkpoint_now()
        await detector.commit_covered()
        await detector.health.stop()
        detector.remote.close()

    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_before_shutdown.connect(cast(Any, on_shutdown))
    return detector


def build_worker(detector: Detector) -> faust.Worker:
    """A faust worker whose health port turns NOT_SERVING as soon as a shutdown begins."""
    health = detector.health

    class DetectorWorker(faust.Worker):
        async def on_stop(self) -> None:
            # Before the consumer stops and the final checkpoint is written: probes see it now.
            await health.begin_shutdown()
            await super().on_stop()

    # Our root handler (SUPTECH_LOG_FORMAT) for faust's lines too, not faust's coloured one;
    # faust.Worker takes the handlers from the app's settings only.
    options = faust_logging()
    detector.app.conf.loghandlers = options.pop("loghandlers")
    return DetectorWorker(detector.app, redirect_stdouts=False, **options)
