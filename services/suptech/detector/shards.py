"""A worker's state shards: shard n is the engine of the institutions on partition n of every
telemetry topic, with its own checkpoint (a file in the state dir, and ``<app id>/shard-<n>`` on
partition n of the checkpoint topic), so any worker of the group can take it over."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from suptech.detector.checkpoint import (
    Checkpoint,
    CheckpointStore,
    KafkaCheckpointStore,
    newest_checkpoint,
)
from suptech.detector.config import DetectorConfig
from suptech.detector.logic import EngineConfig
from suptech.detector.processing import DetectorCore

__all__ = ["Fetched", "Shard", "ShardMaker", "restore_point"]

log = logging.getLogger("suptech.detector")


@dataclass
class Shard:
    number: int
    core: DetectorCore
    store: CheckpointStore
    remote: KafkaCheckpointStore
    # Restored from the Kafka copy: its offsets are durable, commits may reach them at once.
    from_kafka: bool
    # Size of its last checkpoint.
    checkpoint_bytes: int = 0
    # A checkpoint of it is between its snapshot and Kafka.
    snapshotting: bool = False


@dataclass
class Fetched:
    """A shard's checkpoint, read and verified, not yet decoded into an engine."""

    number: int
    store: CheckpointStore
    remote: KafkaCheckpointStore
    checkpoint: Checkpoint | None
    source: str


@dataclass
class ShardMaker:
    """Opens shards: restores each from the newer of its checkpoint file and its Kafka copy."""

    config: DetectorConfig
    engine_config: EngineConfig
    key: bytes
    remote: KafkaCheckpointStore
    telemetry_topics: set[str]
    registry_topic: str
    feedback_topic: str
    vendor_facts_topic: str
    # Partitions of every telemetry topic (shards), and of the checkpoint topic.
    shards: int
    checkpoint_partitions: int

    def open(self, number: int) -> Shard:
        """Blocking (reads the checkpoint topic's partition): call it off the event loop."""
        return self.build(self.fetch(number))

    def fetch(self, number: int) -> Fetched:
        """The shard's stores and the checkpoint it restores from (blocking: reads Kafka)."""
        c = self.config
        store = CheckpointStore(c.state_dir / f"{c.app_id}.shard-{number}.checkpoint", self.key)
        remote = self.remote.for_shard(number, self.checkpoint_partitions)
        return Fetched(number, store, remote, *restore_point(store, remote))

    def build(self, fetched: Fetched) -> Shard:
        """The shard, its engine decoded from the fetched checkpoint (blocking: CPU)."""
        c = self.config
        number, store, remote = fetched.number, fetched.store, fetched.remote
        restored, source = fetched.checkpoint, fetched.source
        fetched.checkpoint = None  # its bytes go once the engine is made
        core = DetectorCore.resume(
            restored,
            source,
            self.telemetry_topics,
            self.registry_topic,
            self.engine_config,
            c.checkpoint_interval_s,
            c.checkpoint_events,
            c.partition_idle_s,
            feedback_topic=self.feedback_topic,
            shard=number,
            shards=self.shards,
            vendor_facts_topic=self.vendor_facts_topic,
        )
        from_kafka = restored is not None and source.startswith("Kafka")
        return Shard(number, core, store, remote, from_kafka)


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
        "checkpoint choice for %s: local file %s, Kafka %s: using %s",
        remote.app_id,
        "present" if local else "absent",
        found[1] if found else "none usable",
        source if checkpoint else "none (cold start)",
    )
    return checkpoint, source
