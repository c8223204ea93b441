"""What the detector does with one Kafka record, in plain Python (no faust): tests call it directly.

The faust agent hands every record to :meth:`DetectorCore.handle` and publishes what comes back;
offsets, the event-time watermark and checkpoints are tracked here so that they stay consistent
with the engine state they describe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from suptech.common.bundles import decode_bundle
from suptech.common.gc_tuning import bulk_load
from suptech.common.topics import partition_of
from suptech.detector.checkpoint import REFUSED, Checkpoint, CheckpointStore, Offsets
from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.logic.candidate import SYSTEMIC_INSTITUTION
from suptech.detector.logic.scores import to_batches
from suptech.v1 import alerts_pb2, findings_pb2, sandbox_pb2, vendor_facts_pb2

__all__ = ["COUNTERS", "DeadLetter", "Outcome", "DetectorCore", "REASON_HEADER", "refused_counts"]

log = logging.getLogger(__name__)

# Header of a dead-letter record that says why it is there (a reason code, then detail).
REASON_HEADER = "x-suptech-reason"


@dataclass(frozen=True)
class DeadLetter:
    """A record (or one event of a bundle) the detector could not process."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (REASON_HEADER, self.reason.encode()),
            ("x-suptech-detail", self.detail[:500].encode()),
            ("x-suptech-source-topic", self.source_topic.encode()),
            ("x-suptech-source-partition", str(self.source_partition).encode()),
            ("x-suptech-source-offset", str(self.source_offset).encode()),
        ]


@dataclass
class Outcome:
    findings: list[findings_pb2.Finding] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Per-event anomaly scores, one batch per institution, for scores.v1.
    scores: list[findings_pb2.AnomalyScoreBatch] = field(default_factory=list)
    # Vendor facts for the vendor stage's topic (a sharded engine's; see vendor_facts_topic).
    vendor_facts: list[vendor_facts_pb2.VendorFact] = field(default_factory=list)
    events: int = 0
    # The record was already in the restored engine state.
    skipped: bool = False


class DetectorCore:
    """The engine plus what it has seen: source offsets, watermark, counters.

    A worker holds one core per state shard it owns (``shard`` n: partition n of every
    telemetry topic, so the institutions Kafka's partitioner puts there). Every shard reads the
    whole sandbox register and every verdict, but applies only the verdicts on its own
    institutions, and only shard 0 (or an unsharded core) dead-letters a bad register or
    feedback record, so each is reported once.
    """

    def __init__(
        self,
        engine: DetectionEngine,
        telemetry_topics: set[str],
        registry_topic: str,
        offsets: Offsets | None = None,
        max_event_time_ns: int = 0,
        checkpoint_interval_s: float = 30.0,
        checkpoint_events: int = 200_000,
        partition_idle_s: float = 30.0,
        feedback_topic: str | None = None,
        shard: int | None = None,
        shards: int = 1,
        vendor_facts_topic: str | None = None,
    ) -> None:
        self.engine = engine
        # With a topic, the engine's vendor facts go out on it (Outcome.vendor_facts), and its
        # vendor stage decides the facts read back from this shard's partition of it.
        self.vendor_facts_topic = vendor_facts_topic
        self.shard = shard
        self.shards = shards
        self.telemetry_topics = set(telemetry_topics)
        self.registry_topic = registry_topic
        # Supervisors' verdicts (feedback.v1); None when the detector does not learn from them.
        self.feedback_topic = feedback_topic
        self.offsets: Offsets = dict(offsets or {})
        self.max_event_time_ns = max_event_time_ns
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_events = checkpoint_events
        self.records = 0
        self.events = 0
        self.findings = 0
        self.dead_letters = 0
        self.skipped_records = 0
        self.failed = False
        self._events_at_checkpoint = 0
        self._records_at_checkpoint = 0
        self._dirty_advance = False
        self._checkpoint_at = time.monotonic()
        # Latest event time per telemetry partition and per institution, and when (wall clock)
        # each institution last delivered: the watermark is built from them (watermark_ns).
        self.partition_idle_s = partition_idle_s
        self._partition_time: dict[tuple[str, int], int] = {}
        self._institution_time: dict[str, int] = {}
        self._institution_wall: dict[str, float] = {}

    @classmethod
    def start(
        cls,
        store: CheckpointStore,
        telemetry_topics: set[str],
        registry_topic: str,
        engine_config: EngineConfig | None = None,
        checkpoint_interval_s: float = 30.0,
        checkpoint_events: int = 200_000,
        feedback_topic: str | None = None,
    ) -> DetectorCore:
        """Resume from the last checkpoint in ``store``, or start a fresh engine."""
        return cls.resume(
            store.load(),
            f"local file {store.path}",
            telemetry_topics,
            registry_topic,
            engine_config,
            checkpoint_interval_s,
            checkpoint_events,
            feedback_topic=feedback_topic,
        )

    @classmethod
    def resume(
        cls,
        checkpoint: Checkpoint | None,
        source: str,
        telemetry_topics: set[str],
        registry_topic: str,
        engine_config: EngineConfig | None = None,
        checkpoint_interval_s: float = 30.0,
        checkpoint_events: int = 200_000,
        partition_idle_s: float = 30.0,
        feedback_topic: str | None = None,
        shard: int | None = None,
        shards: int = 1,
        vendor_facts_topic: str | None = None,
    ) -> DetectorCore:
        """Resume from ``checkpoint`` (``source`` says where it came from), or start fresh."""
        # The service drives the watermark over all its partitions (see watermark_ns).
        engine_config = dataclasses.replace(
            engine_config or EngineConfig(),
            auto_advance=False,
            external_vendor_stage=vendor_facts_topic is not None,
        )
        engine = _restored_engine(checkpoint, source, engine_config)
        offsets: Offsets = {}
        max_event_time_ns = 0
        if engine is None:
            engine = DetectionEngine(engine_config)
            log.info("%s: no usable checkpoint: starting a fresh engine (cold)", _name(shard))
        elif checkpoint is not None:
            offsets = checkpoint.offsets
            max_event_time_ns = checkpoint.max_event_time_ns
            log.info(
                "%s restored from checkpoint (%s): offsets=%s stats=%s",
                _name(shard),
                source,
                {f"{t}:{p}": o for (t, p), o in sorted(offsets.items())},
                json.dumps(engine.stats(), sort_keys=True),
            )
        return cls(
            engine,
            telemetry_topics,
            registry_topic,
            offsets,
            max_event_time_ns,
            checkpoint_interval_s,
            checkpoint_events,
            partition_idle_s,
            feedback_topic,
            shard,
            shards,
            vendor_facts_topic,
        )

    @property
    def name(self) -> str:
        return _name(self.shard)

    def owns(self, institution_id: str) -> bool:
        """Whether this core's shard holds ``institution_id``'s state."""
        return self.shard is None or partition_of(institution_id, self.shards) == self.shard

    def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Outcome:
        """Process one record; never raises for bad input (it becomes a dead letter)."""
        tp = (topic, partition)
        if offset < self.offsets.get(tp, 0):
            # Replayed after a crash, and already in the restored state.
            self.skipped_records += 1
            return Outcome(skipped=True)
        self.records += 1
        if topic == self.registry_topic:
            outcome = self._handle_registry(topic, partition, offset, key, value)
        elif topic in self.telemetry_topics:
            outcome = self._handle_telemetry(topic, partition, offset, key, value)
        elif topic == self.vendor_facts_topic:
            outcome = self._handle_vendor_fact(topic, partition, offset, key, value)
        elif topic == self.feedback_topic:
            outcome = self._handle_feedback(topic, partition, offset, key, value)
        else:
            outcome = Outcome(
                dead_letters=[
                    DeadLetter("unknown_topic", topic, topic, partition, offset, key, value or b"")
                ]
            )
        if self.shard and topic in (self.registry_topic, self.feedback_topic):
            outcome.dead_letters = []  # shard 0's core reports them
        self.offsets[tp] = offset + 1
        self.findings += len(outcome.findings)
        self.dead_letters += len(outcome.dead_letters)
        return outcome

    def _handle_registry(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Outcome:
        if value is None:
            # A tombstone withdraws a test (keyed by its test_id); its findings stay valid, and
            # its app's reports are from now on those of an unregistered test.
            if key:
                self.engine.remove_sandbox_test(key.decode("utf-8", "replace"))
            return Outcome()
        test = sandbox_pb2.SandboxTest()
        try:
            test.ParseFromString(value)
        except DecodeError as exc:
            return Outcome(
                dead_letters=[
                    DeadLetter(
                        "undecodable_sandbox_test", str(exc), topic, partition, offset, key, value
                    )
                ]
            )
        if not test.test_id:
            return Outcome(
                dead_letters=[
                    DeadLetter(
                        "missing_test_id",
                        "SandboxTest without test_id",
                        topic,
                        partition,
                        offset,
                        key,
                        value,
                    )
                ]
            )
        try:
            self.engine.upsert_sandbox_test(test)
        except Exception as exc:  # one bad entry must not stop the registry
            log.exception("engine rejected sandbox test %s", test.test_id)
            return Outcome(
                dead_letters=[
                    DeadLetter("engine_error", repr(exc), topic, partition, offset, key, value)
                ]
            )
        return Outcome()

    def _handle_feedback(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Outcome:
        def dead(reason: str, detail: str) -> Outcome:
            return Outcome(
                dead_letters=[
                    DeadLetter(reason, detail, topic, partition, offset, key, value or b"")
                ]
            )

        fb = alerts_pb2.Feedback()
        try:
            fb.ParseFromString(value or b"")
        except DecodeError as exc:
            return dead("undecodable_feedback", str(exc))
        if not (fb.alert_id and fb.institution_id and fb.detector_id):
            return dead("incomplete_feedback", "needs alert_id, institution_id and detector_id")
        # A vendor's finding (institution "*") is held by the shard of the vendor's partition.
        systemic = fb.institution_id == SYSTEMIC_INSTITUTION
        if not self.owns(fb.entity_id if systemic else fb.institution_id):
            return Outcome()  # routed to the shard that holds the entity
        try:
            self.engine.apply_feedback(fb)
        except Exception as exc:  # one bad verdict must not stop the worker
            log.exception("engine rejected feedback on alert %s", fb.alert_id)
            return dead("engine_error", repr(exc))
        return Outcome()

    def _handle_vendor_fact(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Outcome:
        fact = vendor_facts_pb2.VendorFact()
        try:
            fact.ParseFromString(value or b"")
        except DecodeError as exc:
            return Outcome(
                dead_letters=[
                    DeadLetter(
                        "undecodable_vendor_fact",
                        str(exc),
                        topic,
                        partition,
                        offset,
                        key,
                        value or b"",
                    )
                ]
            )
        try:
            return Outcome(findings=self.engine.process_vendor_fact(fact))
        except Exception as exc:  # one bad fact must not stop the partition
            log.exception("vendor stage failed on a fact of %s", fact.vendor)
            return Outcome(
                dead_letters=[
                    DeadLetter(
                        "engine_error", repr(exc), topic, partition, offset, key, value or b""
                    )
                ]
            )

    def preload_registry(self, records: list[tuple[bytes | None, bytes | None]]) -> int:
        """Load the sandbox register read ahead of the stream, (key, value) in log order, a
        tombstone withdrawing its key's test; return how many tests are registered then.

        The agent reads the registry again (idempotent upserts, and bad entries dead-lettered
        there); this only makes sure the register is complete before the first report is judged.
        """
        for key, value in records:
            if value is None:
                if key:
                    self.engine.remove_sandbox_test(key.decode("utf-8", "replace"))
                continue
            test = sandbox_pb2.SandboxTest()
            try:
                test.ParseFromString(value)
            except DecodeError:
                continue
            if test.test_id and test.institution_id:
                self.engine.upsert_sandbox_test(test)
        return self.engine.stats()["sandbox_tests"]

    def _handle_telemetry(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Outcome:
        if not value:
            return Outcome(
                dead_letters=[
                    DeadLetter("empty_record", "no value", topic, partition, offset, key, b"")
                ]
            )
        try:
            bundle = decode_bundle(value)
        except DecodeError as exc:
            return Outcome(
                dead_letters=[
                    DeadLetter("undecodable_bundle", str(exc), topic, partition, offset, key, value)
                ]
            )
        outcome = Outcome()
        process = self.engine.process
        findings = outcome.findings
        max_t = self.max_event_time_ns
        for env in bundle.events:
            if not env.event_id:
                outcome.dead_letters.append(
                    DeadLetter(
                        "missing_event_id",
                        "event without event_id",
                        topic,
                        partition,
                        offset,
                        key,
                        env.SerializeToString(),
                    )
                )
                continue
            try:
                findings.extend(process(env))
            except Exception as exc:  # one bad event must not stop a partition
                log.exception("engine failed on event %s", env.event_id)
                outcome.dead_letters.append(
                    DeadLetter(
                        "engine_error",
                        repr(exc),
                        topic,
                        partition,
                        offset,
                        key,
                        env.SerializeToString(),
                    )
                )
                continue
            t = env.event_time.seconds * 1_000_000_000 + env.event_time.nanos
            if t > max_t:
                max_t = t
        self.max_event_time_ns = max_t
        made = self.engine.take_scores()
        if made:
            outcome.scores = to_batches(made)
        outcome.vendor_facts = self.engine.take_vendor_facts()
        if bundle.events:
            last = bundle.events[-1].event_time
            t_last = last.seconds * 1_000_000_000 + last.nanos
            tp = (topic, partition)
            if t_last > self._partition_time.get(tp, 0):
                self._partition_time[tp] = t_last
            inst = bundle.institution_id
            if t_last > self._institution_time.get(inst, 0):
                self._institution_time[inst] = t_last
            self._institution_wall[inst] = time.monotonic()
        outcome.events = len(bundle.events)
        self.events += outcome.events
        return outcome

    def watermark_ns(
        self, now: float | None = None, lagging: frozenset[tuple[str, int]] = frozenset()
    ) -> int:
        """Event time the whole input has reached, less the allowed lateness.

        Institutions stream independently (each through its own SDK, spool and retries), so one
        may be hours of event time behind another, most of all in a full-speed replay: judging
        it by the fastest would report it silent. The watermark is therefore the slowest of
        - every institution's last event time; once it has been quiet for ``partition_idle_s``
          wall seconds, that time is presumed to move on as the wall clock does. Live, that is
          what its silence means, and it is seen as soon as it lasts; in a full-speed replay,
          an institution held back for a minute (its SDK backing off from a rate limit, its
          records produced after the end offsets were read) is a minute late, not silent for
          the hours of event time the others covered meanwhile;
        - every partition with records not yet read (``lagging``, from the consumer's high-water
          marks); a lagging partition that has delivered nothing yet stops the watermark.
        With nothing delivered yet, the latest event time seen.
        """
        if any(tp not in self._partition_time for tp in lagging):
            return 0
        now = time.monotonic() if now is None else now
        wall = self._institution_wall
        idle = self.partition_idle_s
        held = [
            t + _presumed_progress_ns(now - wall[inst], idle)
            for inst, t in self._institution_time.items()
        ]
        held.extend(self._partition_time[tp] for tp in lagging)
        wm = min(held) if held else self.max_event_time_ns
        return wm - self.engine.config.allowed_lateness_ns if wm > 0 else 0

    def advance(
        self, lagging: frozenset[tuple[str, int]] = frozenset(), now: float | None = None
    ) -> list[findings_pb2.Finding]:
        """Move the engine's watermark over every partition (silence, coalesced flush)."""
        wm = self.watermark_ns(now=now, lagging=lagging)
        if wm <= 0:
            return []
        findings = self.engine.advance(wm)
        if findings:
            self._dirty_advance = True
        self.findings += len(findings)
        return findings

    @property
    def checkpointed_at(self) -> float:
        """When (monotonic) its last checkpoint was taken (or the shard opened)."""
        return self._checkpoint_at

    def checkpoint_due(self) -> bool:
        if self.failed or not (self.records > self._records_at_checkpoint or self._dirty_advance):
            return False
        return (
            self.events - self._events_at_checkpoint >= self.checkpoint_events
            or time.monotonic() - self._checkpoint_at >= self.checkpoint_interval_s
        )

    def checkpoint(self) -> Checkpoint:
        """State and the offsets it covers; call only when every output so far is published."""
        checkpoint = self.checkpoint_head()
        checkpoint.engine_blob = self.engine.snapshot()
        return checkpoint

    def checkpoint_head(self) -> Checkpoint:
        """A checkpoint of now without its engine state (for a snapshot taken elsewhere, see
        :mod:`suptech.detector.snapshot`), stamped; the next one is due from now."""
        self._events_at_checkpoint = self.events
        self._records_at_checkpoint = self.records
        self._dirty_advance = False
        self._checkpoint_at = time.monotonic()
        return Checkpoint(
            engine_blob=b"",
            offsets=dict(self.offsets),
            max_event_time_ns=self.max_event_time_ns,
            written_unix_s=time.time(),
        )

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def progress(self) -> dict[str, int]:
        return {**self.counters(), **refused_counts()}


def refused_counts() -> dict[str, int]:
    """Checkpoints this process refused, by reason (one count for all its shards)."""
    return {f"checkpoints_refused_{reason}": n for reason, n in sorted(REFUSED.items())}


# What DetectorCore.counters reports (a worker's progress line sums them over its shards).
COUNTERS = ("records", "events", "findings", "dead_letters", "skipped_records")


def _name(shard: int | None) -> str:
    return "engine" if shard is None else f"shard {shard}"


def _presumed_progress_ns(quiet_s: float, idle_s: float) -> int:
    """Event time an institution quiet for ``quiet_s`` wall seconds is presumed to have moved
    on by: none within ``idle_s``, then as much as the wall clock."""
    return int((quiet_s - idle_s) * 1e9) if quiet_s > idle_s else 0


def _restored_engine(
    checkpoint: Checkpoint | None, source: str, engine_config: EngineConfig
) -> DetectionEngine | None:
    """The checkpoint's engine; None for no checkpoint, or one whose state this worker cannot
    read (an older or newer snapshot version, a river that changed shape): logged and counted,
    and the worker starts cold instead of crash-looping on it."""
    if checkpoint is None:
        return None
    try:
        with bulk_load():
            return DetectionEngine.restore(checkpoint.engine_blob, engine_config)
    except Exception as exc:
        REFUSED["engine_state"] = REFUSED.get("engine_state", 0) + 1
        log.error(
            "checkpoint (%s) holds engine state this worker cannot read (%r): starting cold",
            source,
            exc,
        )
        return None
