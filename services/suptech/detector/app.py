"""The faust app: one agent over the telemetry, one timer, the state in shards.

Workers of one app id form a consumer group. Every telemetry topic has the same partitions,
keyed by institution, and faust gives partition n of all of them to one worker: that worker holds
shard n (:mod:`suptech.detector.shards`), the engine of those institutions, checkpointed on its
own, and restored by whichever worker is assigned it next. The sandbox register and the verdicts
are read whole by every worker (:mod:`suptech.detector.side_inputs`).

Delivery is at-least-once and each shard's state is exact across a crash:

* findings and dead letters of a record are written (producer futures awaited) before the record
  is acknowledged;
* faust's own periodic commit is switched off; offsets are committed right after a checkpoint
  reached Kafka, and every other commit faust makes (at a rebalance, at shutdown) is clamped to
  the checkpoints' offsets (:class:`~suptech.detector.commits.CommitGuard`), so the committed
  offsets never pass the state that covers them;
* after a restart or a takeover, records below a shard checkpoint's offsets are skipped (already
  in the restored engine), and the rest are processed again: the engine dedups by (institution,
  event_id), and finding ids are deterministic, so a replay repeats ids and never invents new
  ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import TP
from opentelemetry import trace

from suptech.common.gc_tuning import StateFreezer
from suptech.common.kafka import faust_credentials
from suptech.common.logging_setup import faust_logging
from suptech.common.otel import extract_context, inject_headers, setup_telemetry
from suptech.common.topics import (
    DEAD_LETTER,
    DETECTOR_CHECKPOINTS,
    FEEDBACK,
    FINDINGS,
    REGISTRY_SANDBOX,
    SCORES,
    TELEMETRY_PARTITIONS,
    TELEMETRY_TOPICS,
    VENDOR_FACTS,
    topic_name,
)
from suptech.detector.checkpoint import Checkpoint, CheckpointStore, KafkaCheckpointStore
from suptech.detector.commits import CommitGuard
from suptech.detector.config import DetectorConfig
from suptech.detector.continuity import DROP, OK, Continuity
from suptech.detector.health import HealthPort
from suptech.detector.logic import EngineConfig
from suptech.detector.logic.vendor_stage import vendor_fact_key
from suptech.detector.metrics import DetectorMetrics, entity_stats
from suptech.detector.pacing import CheckpointPacer, on_cpu_clock
from suptech.detector.processing import COUNTERS, DeadLetter, Outcome, refused_counts
from suptech.detector.shards import Shard, ShardMaker
from suptech.detector.side_inputs import SideFollower, SideReader, SideRecord
from suptech.detector.snapshot import finish_snapshot, start_snapshot
from suptech.detector.state_key import load_state_key
from suptech.v1 import findings_pb2, vendor_facts_pb2

__all__ = ["Detector", "build_app", "build_worker"]

log = logging.getLogger("suptech.detector")

# Commits happen after checkpoints only; this keeps faust's timer and counter out of the way.
_NEVER_S = 10 * 365 * 24 * 3600.0
_NEVER_N = 2**62


@dataclass
class Detector:
    """The faust app together with the state shards its agent drives."""

    app: faust.App
    maker: ShardMaker
    config: DetectorConfig
    lock: asyncio.Lock
    findings_topic: Any
    dead_letter_topic: Any
    scores_topic: Any
    vendor_facts_topic: Any
    health: HealthPort
    tracer: trace.Tracer
    # The shards this worker holds, by number (= telemetry partition).
    shards: dict[int, Shard] = field(default_factory=dict)
    # The sandbox register and the verdicts, read outside the group (from the first assignment).
    side: SideFollower | None = None
    commits: CommitGuard = field(default_factory=CommitGuard)
    failed: bool = False
    # Checkpoints between their snapshot and their commit.
    _checkpoints: set[asyncio.Task[None]] = field(default_factory=set)
    _last_progress: dict[str, int] = field(default_factory=dict)
    # What faust delivers, checked against what each shard needs next (see continuity.py).
    continuity: Continuity = field(
        default_factory=lambda: Continuity(stall_s=DetectorConfig.stall_rewind_s)
    )
    _ends: dict[tuple[str, int], int] = field(default_factory=dict)
    _log_starts: dict[tuple[str, int], int] = field(default_factory=dict)
    _background: set[asyncio.Future[None]] = field(default_factory=set)
    metrics: DetectorMetrics = field(default_factory=DetectorMetrics)
    pacer: CheckpointPacer = field(default_factory=CheckpointPacer)
    freezer: StateFreezer = field(default_factory=StateFreezer)
    # checkpoint_all calls running (a rebalance's and a shutdown's may overlap).
    _finalising: int = 0
    # The latest assignment's restore, run after faust's callback has returned (assign_later).
    _assigning: asyncio.Future[None] | None = None

    @property
    def telemetry_topics(self) -> set[str]:
        return self.maker.telemetry_topics

    @property
    def source_topics(self) -> set[str]:
        return {*self.maker.telemetry_topics, self.maker.vendor_facts_topic}

    @property
    def side_topics(self) -> list[str]:
        return [self.maker.registry_topic, self.maker.feedback_topic]

    async def publish(self, outcome: Outcome) -> None:
        await self._publish(
            outcome.findings, outcome.dead_letters, outcome.scores, outcome.vendor_facts
        )

    async def _publish(
        self,
        findings: Iterable[findings_pb2.Finding],
        dead_letters: Iterable[DeadLetter],
        scores: Iterable[findings_pb2.AnomalyScoreBatch] = (),
        vendor_facts: Iterable[vendor_facts_pb2.VendorFact] = (),
    ) -> None:
        futures = []
        for fact in vendor_facts:
            futures.extend(await self._send_vendor_fact(fact))
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

    async def _send_vendor_fact(self, fact: vendor_facts_pb2.VendorFact) -> list[Any]:
        """To the partition of its vendor, or (no vendor: an institution's core system, which
        every vendor's share counts) to every partition."""
        key = vendor_fact_key(fact)
        value = fact.SerializeToString()
        topic = self.vendor_facts_topic
        if key is not None:
            return [await topic.send(key=key, value=value, force=True)]
        return [
            await topic.send(key=None, value=value, partition=p, force=True)
            for p in range(self.maker.shards)
        ]

    def checkpoint_next(self) -> asyncio.Task[None] | None:
        """The routine checkpoint, when the pacer lets one start: of the due shard checkpointed
        longest ago (between two records every shard may be snapshot, not only the one whose
        record came: the first due one in turn would take every turn while others wait)."""
        if self.failed or self._finalising or not self.pacer.may_start(time.monotonic()):
            return None
        due = [s for s in self.shards.values() if not s.snapshotting and s.core.checkpoint_due()]
        if not due:
            return None
        return self.checkpoint(min(due, key=lambda s: s.core.checkpointed_at))

    def checkpoint(self, shard: Shard) -> asyncio.Task[None] | None:
        """Start a shard's checkpoint: the snapshot now, between two records (in a forked child
        unless DETECTOR_FORK_SNAPSHOTS is off), then, in a task off the record path, the file,
        Kafka, and a commit of the offsets the checkpoints cover. Routine ones come through
        :meth:`checkpoint_next` (paced), final ones through :meth:`checkpoint_all`.

        Offsets are committed only once Kafka has the checkpoint: a worker that loses its disk
        restores from Kafka, and must find there everything its committed offsets skip.
        """
        if self.failed or shard.snapshotting:
            return None
        shard.snapshotting = True
        try:
            if self.config.fork_snapshots:
                head, pid = start_snapshot(shard.core, shard.store)
                written = finish_snapshot(pid, shard.store)
            else:
                head = shard.core.checkpoint()
                written = asyncio.to_thread(_saved, shard.store, head)
        except BaseException:
            shard.snapshotting = False
            raise
        self.pacer.started()
        task = asyncio.ensure_future(self._finish_checkpoint(shard, head, written))
        self._checkpoints.add(task)
        task.add_done_callback(self._checkpoints.discard)
        return task

    async def _finish_checkpoint(
        self, shard: Shard, head: Checkpoint, written: Awaitable[tuple[int, float]]
    ) -> None:
        cpu_s = 0.0
        try:
            try:
                size, cpu_s = await written
            finally:
                self.pacer.written()
            checkpoint_id, send_cpu_s = await asyncio.to_thread(
                on_cpu_clock, shard.remote.save_file, shard.store.path, head
            )
            cpu_s += send_cpu_s
        except Exception as exc:
            self._remote_failed(shard, exc)
            return
        finally:
            shard.snapshotting = False
            self.pacer.finished(cpu_s, time.monotonic())
        self._written(shard, size, head, checkpoint_id)
        await self.commit_covered()

    async def checkpoint_all(self) -> None:
        """Checkpoint every shard held and wait for all of them (rebalance, shutdown): each
        snapshot between two records (under the lock, so no record's outputs are in flight),
        at most ``pacer.final_children`` snapshot children at a time. No routine checkpoint
        starts meanwhile: one in flight would make a shard skip its final one."""
        self._finalising += 1
        try:
            await asyncio.gather(*list(self._checkpoints), return_exceptions=True)
            started = []
            for number in sorted(self.shards):
                await self.pacer.child_slot()
                async with self.lock:
                    shard = self.shards.get(number)
                    task = None if shard is None else self.checkpoint(shard)
                if task is not None:
                    started.append(task)
            await asyncio.gather(*started, return_exceptions=True)
        finally:
            self._finalising -= 1

    async def commit_covered(self) -> None:
        """Commit what the last durable checkpoints cover; a refusal only means the records
        above the previous commit are read again."""
        try:
            await self.app.consumer.commit()
        except Exception as exc:
            log.warning("offsets not committed after the checkpoint (%r): re-read later", exc)

    def _written(self, shard: Shard, size: int, checkpoint: Checkpoint, checkpoint_id: str) -> None:
        shard.checkpoint_bytes = size
        self.metrics.checkpoint_bytes.set(sum(s.checkpoint_bytes for s in self.shards.values()))
        self.commits.durable(checkpoint.offsets)
        log.info(
            "checkpoint written: %s, %d bytes to %s and Kafka %s as %s, stats=%s",
            shard.core.name,
            size,
            shard.store.path,
            shard.remote.topic,
            checkpoint_id,
            json.dumps(shard.core.engine.stats(), sort_keys=True),
        )

    def _remote_failed(self, shard: Shard, exc: BaseException) -> None:
        log.error(
            "checkpoint written to %s only, not to Kafka %s (%r): offsets of %s not committed",
            shard.store.path,
            shard.remote.topic,
            exc,
            shard.core.name,
        )

    async def on_tick(self) -> None:
        """The register and verdicts come since the last tick, and the progress line. A timer of
        its own: the watermark's waits for the broker's end offsets (a second or more while the
        worker is busy), and progress is what shows a stalled worker."""
        await self.read_side_inputs()
        self._log_progress()

    async def on_watermark(self) -> None:
        # Asked of the broker before taking the lock, so records keep flowing meanwhile. Offsets
        # can only move on in between: a partition seen lagging may have caught up, which holds
        # the watermark back a moment longer, never lets it run ahead.
        lagging = await self._lagging_partitions()
        async with self.lock:
            if self.failed:
                return
            for shard in list(self.shards.values()):
                await self._advance(shard, lagging)
            await self._rewind_stalled()

    async def _advance(self, shard: Shard, lagging: frozenset[tuple[str, int]]) -> None:
        own = frozenset(tp for tp in lagging if tp[1] == shard.number)
        with self.tracer.start_as_current_span("detector.advance"):
            findings = shard.core.advance(own)
            try:
                await self._publish(findings, ())
            except Exception as exc:
                await self._fail(exc)
                return
        self.checkpoint_next()

    def _log_progress(self) -> None:
        cores = [s.core for s in self.shards.values()]
        progress = {
            # Zeros while no shard is held yet (restoring) or any more.
            **dict.fromkeys(COUNTERS, 0),
            **_summed(c.counters() for c in cores),
            **refused_counts(),
            "partition_rewinds": self.continuity.rewinds,
            "retention_gaps": self.continuity.gaps_accepted,
        }
        if progress != self._last_progress:
            self._last_progress = progress
            log.info("detector progress %s", json.dumps(progress, sort_keys=True))
        watermarks = [c.watermark_ns() for c in cores]
        stats = _summed(c.engine.stats() for c in cores)
        self.metrics.refresh(stats, min(watermarks) if watermarks else 0)
        held = sum(entity_stats(stats).values())
        if self.freezer.held(held):
            log.info("heap frozen at %d entities held (gc_tuning.StateFreezer)", held)

    async def read_side_inputs(self) -> None:
        """Hand what came on the register and the verdicts to every shard held."""
        if self.side is None:
            return
        records = self.side.take()
        if records:
            async with self.lock:
                await self._feed_side(records)

    async def _feed_side(self, records: list[SideRecord]) -> None:
        for shard in self.shards.values():
            for topic, partition, offset, key, value in records:
                try:
                    await self.publish(shard.core.handle(topic, partition, offset, key, value))
                except Exception as exc:
                    await self._fail(exc)
                    return

    async def _lagging_partitions(self) -> frozenset[tuple[str, int]]:
        """Telemetry partitions with records not yet read, by their end offsets on the broker.

        Asked of the broker each time: the high-water marks a consumer keeps from its fetches go
        stale for a partition it has not fetched lately, which is exactly the lagging one.
        """
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.telemetry_topics]
        if not tps:
            return frozenset()
        try:
            ends = await consumer.highwaters(*tps)
        except Exception as exc:  # unknown: assume every partition may hold a backlog
            log.warning("cannot read end offsets (%r): holding the watermark", exc)
            return frozenset((tp.topic, tp.partition) for tp in tps)
        self._ends = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        lagging = []
        for tp in tps:
            shard = self.shards.get(tp.partition)
            done = shard.core.offsets.get((tp.topic, tp.partition), 0) if shard else 0
            self.metrics.lag(tp.topic, tp.partition, ends.get(tp, 0) - done)
            if ends.get(tp, 0) > done:
                lagging.append((tp.topic, tp.partition))
        return frozenset(lagging)

    async def _rewind_stalled(self) -> None:
        """Rewind the partitions that have records on the broker and delivered none for a while
        (see :mod:`suptech.detector.continuity`); under the lock."""
        now = time.monotonic()
        for (topic, partition), end in self._ends.items():
            shard = self.shards.get(partition)
            if shard is None:
                continue
            needed = shard.core.offsets.get((topic, partition))
            if needed is not None and self.continuity.stalled((topic, partition), needed, end, now):
                log.warning(
                    "%s:%d has records up to %d but delivered none past %d for %.0f s: "
                    "rewinding to %d",
                    topic,
                    partition,
                    end,
                    needed,
                    self.continuity.stall_s,
                    needed,
                )
                await self._rewind((topic, partition), needed)

    async def _continue(self, shard: Shard, tp: tuple[str, int], offset: int, verdict: str) -> bool:
        """Whether to process a record that came past the offset its shard needs next."""
        if verdict == DROP:
            return False
        needed = shard.core.offsets[tp]
        if offset <= self._log_starts.get(tp, -1) or offset <= (
            await self._read_log_starts(shard.number)
        ).get(tp, -1):
            self.continuity.accept_gap(tp)
            self.metrics.retention_gaps.inc()
            log.warning(
                "records %d-%d of %s:%d are gone from the broker (retention): going on from %d",
                needed,
                offset - 1,
                *tp,
                offset,
            )
            return True
        log.warning(
            "record %d of %s:%d came while %d was due: the consumer skipped records; rewinding",
            offset,
            *tp,
            needed,
        )
        await self._rewind(tp, needed)
        return False

    async def _rewind(self, tp: tuple[str, int], offset: int) -> None:
        try:
            await self.app.consumer.seek_wait({TP(*tp): offset})
        except Exception as exc:  # the partition stays stalled: the next stall check retries
            log.warning("cannot rewind %s:%d to %d (%r)", *tp, offset, exc)
            return
        self.continuity.rewinding(tp, offset)
        self.metrics.rewinds.inc()

    async def _read_log_starts(self, partition: int) -> dict[tuple[str, int], int]:
        """The first offsets the broker still has of ``partition`` of every source topic."""
        tps = [TP(topic, partition) for topic in sorted(self.source_topics)]
        try:
            starts = await self.app.consumer.earliest_offsets(*tps)
        except Exception as exc:  # unknown: rewinding is safe, and the next gap asks again
            log.warning("cannot read the first offsets of partition %d (%r)", partition, exc)
            return self._log_starts
        self._log_starts.update({(tp.topic, tp.partition): o for tp, o in starts.items()})
        return self._log_starts

    async def on_record(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        async with self.lock:
            if self.failed:
                return
            shard = self.shards.get(partition)
            if shard is None:  # not announced by an assignment: take it on now
                await self._take_on({partition})
                shard = self.shards[partition]
            tp = (topic, partition)
            verdict = self.continuity.check(tp, offset, shard.core.offsets.get(tp))
            if verdict != OK and not await self._continue(shard, tp, offset, verdict):
                return
            outcome = shard.core.handle(topic, partition, offset, key, value)
            try:
                await self.publish(outcome)
            except Exception as exc:
                await self._fail(exc)
                return
            self.metrics.events.inc(outcome.events)
            self.checkpoint_next()

    def assign_later(self, partitions: set[int]) -> asyncio.Future[None]:
        """:meth:`assigned`, after the previous assignment's and outside the rebalance callback.

        aiokafka sends no heartbeat while its assignment callback runs, so a restore longer
        than the session timeout (a million actors take tens of seconds) had the coordinator
        drop the worker: right after taking its shards on, it rejoined, checkpointed every one
        of them at the revocation (30 s more) and got them back. Off the callback, the group
        moves on while the shards are restored; their records wait for them on the lock, as
        the partitions did paused (a record of a shard not yet there restores it itself).
        """
        previous = self._assigning

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await self.assigned(partitions)
            except Exception as exc:  # a shard that cannot be restored must not be run cold
                log.error("cannot take on shards %s (%r): stopping the worker", partitions, exc)
                self.failed = True
                await self.app.crash(exc)

        self._assigning = task = asyncio.ensure_future(run())
        return task

    async def restored(self) -> None:
        """Wait until the latest assignment's shards are restored (or failed to be)."""
        if self._assigning is not None:
            await asyncio.gather(self._assigning, return_exceptions=True)

    async def assigned(self, partitions: set[int]) -> None:
        """The shards of a new assignment: drop the others (checkpointed at the revocation),
        keep those held already (no one else ran them meanwhile), restore the new ones."""
        async with self.lock:
            for number in set(self.shards) - partitions:
                log.info("shard %d handed over to another worker", number)
                del self.shards[number]
                self.continuity.forget({tp for tp in self._ends if tp[1] == number})
            await self._take_on(partitions - set(self.shards))

    async def _take_on(self, numbers: set[int]) -> None:
        if not numbers:
            return
        started = time.monotonic()
        opened = await self._open(sorted(numbers))
        for shard in opened:
            if shard.from_kafka:
                self.commits.durable(shard.core.offsets)
            self.shards[shard.number] = shard
        self._in_background(self._seed_empty(opened))
        await self._catch_up(opened)
        log.info(
            "shards %s taken on in %.2f s (%d held)",
            sorted(numbers),
            time.monotonic() - started,
            len(self.shards),
        )

    async def _open(self, numbers: list[int]) -> list[Shard]:
        """Restore shards one at a time, the next one's checkpoint read from Kafka while the
        current one is decoded. Decoding holds the GIL, so several at once were no faster, and
        each held its checkpoint's bytes meanwhile (a million actors: 5.5 GB at the peak of a
        takeover, 4.0 GB one at a time)."""
        opened: list[Shard] = []
        maker = self.maker
        ahead = asyncio.ensure_future(asyncio.to_thread(maker.fetch, numbers[0]))
        for i in range(len(numbers)):
            fetched = await ahead
            if i + 1 < len(numbers):
                ahead = asyncio.ensure_future(asyncio.to_thread(maker.fetch, numbers[i + 1]))
            opened.append(await asyncio.to_thread(maker.build, fetched))
        return opened

    async def _seed_empty(self, opened: list[Shard]) -> None:
        """A partition a new shard has never read and the broker held nothing of: the shard
        needs its end offset of then next, so that a record past it shows a gap (continuity.py).
        Off the assignment (the broker's answer takes seconds on a busy consumer); a record read
        meanwhile sets the offset itself."""
        tps = [TP(topic, s.number) for s in opened for topic in sorted(self.source_topics)]
        consumer = self.app.consumer
        try:
            starts = await consumer.earliest_offsets(*tps)
            ends = await consumer.highwaters(*tps)
        except Exception as exc:  # unknown: those partitions start where the consumer does
            log.warning("cannot read the offsets of the new shards' partitions (%r)", exc)
            return
        mine = {id(s) for s in opened}
        async with self.lock:
            for tp in tps:
                shard = self.shards.get(tp.partition)
                end = ends.get(tp)
                if shard is None or id(shard) not in mine or end is None or starts.get(tp) != end:
                    continue
                shard.core.offsets.setdefault((tp.topic, tp.partition), end)

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _catch_up(self, opened: list[Shard]) -> None:
        """Bring new shards to the ends of the register and the verdicts before their first
        record (every shard skips what it has); the live reads go on from there."""
        reader = await asyncio.to_thread(SideReader, self.config.kafka_addr, self.side_topics)
        start = {
            (tp.topic, tp.partition): min(
                s.core.offsets.get((tp.topic, tp.partition), 0) for s in opened
            )
            for tp in reader.partitions
        }
        try:
            records, ends = await asyncio.to_thread(reader.read_to_end, start)
        except BaseException:
            reader.close()
            raise
        await self._feed_side(records + (self.side.take() if self.side else []))
        if self.side is None:  # the first: it follows on from there
            self.side = SideFollower(reader, ends)
        else:
            reader.close()
        log.info(
            "sandbox register preloaded: %d tests in shards %s",
            opened[0].core.engine.stats()["sandbox_tests"],
            sorted(s.number for s in opened),
        )

    async def revoked(self) -> None:
        """Partitions may move to another worker: hand over every shard's state. faust has
        committed already, clamped to the previous checkpoints; each checkpoint commits up to
        its own. A restore still running is finished first (its shards are handed over too)."""
        await self.restored()
        await self.checkpoint_all()

    async def _fail(self, exc: BaseException) -> None:
        # A shard now holds a record whose outputs may be lost: it must never be checkpointed.
        # Crashing lets the restart replay from the last checkpoint instead.
        self.failed = True
        log.error("cannot publish detector output (%r): stopping the worker", exc)
        await self.app.crash(exc)


def _saved(store: CheckpointStore, head: Checkpoint) -> tuple[int, float]:
    """A checkpoint taken on the loop, written by a thread: its size and the thread's CPU."""
    data, cpu_s = on_cpu_clock(store.save, head)
    return len(data), cpu_s


def _summed(dicts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def build_app(config: DetectorConfig, engine_config: EngineConfig | None = None) -> Detector:
    """The detector's faust app; its shards are restored as partitions are assigned to it."""
    engine_config = dataclasses.replace(
        engine_config or EngineConfig(), record_scores=config.publish_scores
    )
    prefix = config.topic_prefix
    telemetry = sorted({topic_name(spec, prefix) for spec in TELEMETRY_TOPICS.values()})
    vendor_facts = topic_name(VENDOR_FACTS, prefix)
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
    remote = KafkaCheckpointStore(
        config.kafka_addr, topic_name(DETECTOR_CHECKPOINTS, prefix), config.app_id, key
    )
    maker = ShardMaker(
        config,
        dataclasses.replace(engine_config, auto_advance=False),
        key,
        remote,
        set(telemetry),
        topic_name(REGISTRY_SANDBOX, prefix),
        topic_name(FEEDBACK, prefix),
        vendor_facts,
        TELEMETRY_PARTITIONS,
        remote.partition_count(),
    )
    detector = Detector(
        app,
        maker,
        config,
        asyncio.Lock(),
        app.topic(topic_name(FINDINGS, prefix), key_type=bytes, value_type=bytes),
        app.topic(topic_name(DEAD_LETTER, prefix), key_type=bytes, value_type=bytes),
        app.topic(topic_name(SCORES, prefix), key_type=bytes, value_type=bytes),
        app.topic(vendor_facts, key_type=bytes, value_type=bytes),
        HealthPort(config.health_host, config.health_port),
        setup_telemetry("detector")[0],
        continuity=Continuity(stall_s=config.stall_rewind_s),
        pacer=CheckpointPacer(budget=config.checkpoint_budget),
    )
    # The telemetry and the vendor facts, all of one partition count: faust assigns partition n
    # of every topic to the same worker (shard n). The register and the verdicts are read
    # outside the group.
    source = app.topic(*telemetry, vendor_facts, key_type=bytes, value_type=bytes)

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
    app.timer(config.watermark_interval_s, name=f"{config.app_id}.tick")(detector.on_tick)
    _connect_lifecycle(detector)
    return detector


def _connect_lifecycle(detector: Detector) -> None:
    """Health, assignment, revocation and shutdown hooks of the faust app."""
    app = detector.app
    ready = asyncio.Event()

    async def start_health() -> None:
        # On faust's loop, after the app has started; SERVING waits for the first assignment.
        await detector.health.start()

    app.task(start_health)

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned = args[0] if args else set()
        # Before faust's first commit at a revocation or a shutdown.
        detector.commits.install(detector.app.consumer)
        # Restored after this returns (see assign_later), before their records are processed.
        restoring = detector.assign_later(
            {tp.partition for tp in assigned if tp.topic in detector.source_topics}
        )
        if assigned and not ready.is_set():
            ready.set()
            detector._in_background(_ready_once_restored(restoring, len(assigned)))

    async def _ready_once_restored(restoring: asyncio.Future[None], partitions: int) -> None:
        await asyncio.gather(restoring, return_exceptions=True)
        if not detector.failed:
            await detector.health.mark_ready()
            log.info("detector ready: %d partitions assigned", partitions)

    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        if args and args[0]:
            await detector.revoked()

    async def on_shutdown(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # Streams are drained and faust's (clamped) commit is done: checkpoint, then commit.
        await detector.health.begin_shutdown()
        await detector.revoked()
        await detector.health.stop()
        detector.maker.remote.close()
        if detector.side is not None:
            detector.side.close()

    app.on_partitions_assigned.connect(cast(Any, on_assigned))
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_before_shutdown.connect(cast(Any, on_shutdown))


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
