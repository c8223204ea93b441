"""Every Kafka topic of suptech, declared once: the scripts, the tests and the Helm chart use this.

Topic names can carry a prefix (``SUPTECH_TOPIC_PREFIX``) so that tests and several deployments
share one broker without seeing each other's data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2

from suptech.common.kafka import load_replication, open_client

__all__ = [
    "TopicSpec",
    "TOPICS",
    "DATA_ACCESS",
    "IT_POSTURE",
    "SANDBOX",
    "HEARTBEAT",
    "METRICS",
    "CONTEXT",
    "SCORES",
    "REGISTRY_SANDBOX",
    "FINDINGS",
    "FEEDBACK",
    "DEAD_LETTER",
    "DETECTOR_CHECKPOINTS",
    "VENDOR_FACTS",
    "TELEMETRY_TOPICS",
    "TELEMETRY_PARTITIONS",
    "partition_of",
    "topic_name",
    "ensure_topics",
    "delete_topics_with_prefix",
]

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    compacted: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        cfg = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(-1 if self.compacted else self.retention_ms),
        }
        cfg.update(self.extra)
        return cfg


# Every telemetry topic has this many partitions, keyed by institution id (the gateway's key,
# Kafka's default partitioner): an institution's telemetry is on the same partition number of
# each, so one detector worker owns all of it (faust co-partitions co-subscribed topics of one
# partition count), and partition n is the detector's state shard n (see partition_of).
TELEMETRY_PARTITIONS = 6
DATA_ACCESS = TopicSpec("telemetry.data_access.v1", TELEMETRY_PARTITIONS, 14 * DAY_MS)
IT_POSTURE = TopicSpec("telemetry.it_posture.v1", TELEMETRY_PARTITIONS, 30 * DAY_MS)
SANDBOX = TopicSpec("telemetry.sandbox.v1", TELEMETRY_PARTITIONS, 30 * DAY_MS)
HEARTBEAT = TopicSpec("telemetry.heartbeat.v1", TELEMETRY_PARTITIONS, 3 * DAY_MS)
METRICS = TopicSpec("telemetry.metrics.v1", TELEMETRY_PARTITIONS, 14 * DAY_MS)
# What institutions declare about themselves (maintenance windows, business calendars): rare
# records the detector needs long after they were sent.
CONTEXT = TopicSpec("telemetry.context.v1", TELEMETRY_PARTITIONS, 400 * DAY_MS)
# Per-event anomaly scores (AnomalyScoreBatch keyed by institution), for charts and ROC/PR.
SCORES = TopicSpec("scores.v1", 3, 7 * DAY_MS)
REGISTRY_SANDBOX = TopicSpec(
    "registry.sandbox.v1", 1, -1, compacted=True, extra={"min.cleanable.dirty.ratio": "0.1"}
)
FINDINGS = TopicSpec("findings.v1", 3, 90 * DAY_MS)
FEEDBACK = TopicSpec("feedback.v1", 1, 365 * DAY_MS)
DEAD_LETTER = TopicSpec("deadletter.v1", 1, 30 * DAY_MS)
# Detector state checkpoints, one per shard (telemetry partition n), in chunks of <= 1 MiB keyed
# <app id>/shard-<n>/<i>, then <app id>/shard-<n>/manifest, all on partition n: a worker taking
# over shard n reads that partition only, in order; hourly segments let compaction drop
# superseded checkpoints.
DETECTOR_CHECKPOINTS = TopicSpec(
    "detector.checkpoints.v1",
    TELEMETRY_PARTITIONS,
    -1,
    compacted=True,
    extra={
        "max.message.bytes": "2097152",
        "segment.ms": str(3600 * 1000),
        "min.cleanable.dirty.ratio": "0.1",
    },
)

# The IT-autonomy family's vendor facts (VendorFact), keyed by vendor, between the detector's
# shards (which see their own institutions) and the vendor stage (which sees every institution's
# dependence on one vendor). As many partitions as the telemetry, read by the same agent, so
# partition n goes with shard n and its stage state is in shard n's checkpoint.
VENDOR_FACTS = TopicSpec("detector.vendor_facts.v1", TELEMETRY_PARTITIONS, 30 * DAY_MS)

TELEMETRY_TOPICS: dict[str, TopicSpec] = {
    "data_access": DATA_ACCESS,
    "it_posture": IT_POSTURE,
    "sandbox": SANDBOX,
    "heartbeat": HEARTBEAT,
    "metrics": METRICS,
    "maintenance": CONTEXT,
    "calendar": CONTEXT,
}

TOPICS: tuple[TopicSpec, ...] = (
    DATA_ACCESS,
    IT_POSTURE,
    SANDBOX,
    HEARTBEAT,
    METRICS,
    CONTEXT,
    REGISTRY_SANDBOX,
    FINDINGS,
    SCORES,
    FEEDBACK,
    DEAD_LETTER,
    DETECTOR_CHECKPOINTS,
    VENDOR_FACTS,
)


def topic_name(spec: TopicSpec, prefix: str = "") -> str:
    return f"{prefix}{spec.name}"


def partition_of(key: str, partitions: int = TELEMETRY_PARTITIONS) -> int:
    """The partition Kafka's default partitioner (Java's and kafka-python's: murmur2 of the key)
    puts a record keyed ``key`` on: where an institution's telemetry is, so the detector shard
    that owns it."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def ensure_topics(
    bootstrap: str, prefix: str = "", specs: tuple[TopicSpec, ...] = TOPICS, timeout_s: float = 30
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Idempotent.

    Each gets the replication factor and ``min.insync.replicas`` of ``SUPTECH_KAFKA_*``
    (:func:`suptech.common.kafka.load_replication`), read before anything connects."""
    replication = load_replication()
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = open_client(
        KafkaAdminClient,
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=topic_name(s, prefix),
                num_partitions=s.partitions,
                replication_factor=replication.factor,
                topic_configs={**s.configs(), "min.insync.replicas": str(replication.min_insync)},
            )
            for s in specs
            if topic_name(s, prefix) not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted, timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                pass
            # Metadata propagates asynchronously: wait until every topic is listed.
            deadline = time.monotonic() + timeout_s
            names = {t.name for t in wanted}
            while not names <= set(admin.list_topics()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(names)}")
                time.sleep(0.1)
        return [t.name for t in wanted]
    finally:
        admin.close()


def delete_topics_with_prefix(bootstrap: str, prefix: str, timeout_s: float = 30) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test's or a demo run's namespace);
    return the names. A non-empty prefix is required: this never deletes a deployment's topics."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    from kafka import KafkaAdminClient

    admin = open_client(
        KafkaAdminClient,
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
            # Metadata propagates asynchronously: wait until none is listed any more.
            deadline = time.monotonic() + timeout_s
            while set(names) & set(admin.list_topics()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics still listed after {timeout_s}s: {names}")
                time.sleep(0.1)
        return names
    finally:
        admin.close()


def main() -> None:
    """``python -m suptech.common.topics``: create every topic on KAFKA_ADDR."""
    from suptech.common.config import env_str

    bootstrap = env_str("KAFKA_ADDR", "127.0.0.1:19092")
    prefix = env_str("SUPTECH_TOPIC_PREFIX", "")
    created = ensure_topics(bootstrap, prefix)
    print(f"topics: created {len(created)}: {', '.join(created) or '-'}")


if __name__ == "__main__":
    main()
