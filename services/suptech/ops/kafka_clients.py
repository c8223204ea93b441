"""The Kafka clients ``suptech ops`` opens, all bounded in time and none in a consumer group."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec

from suptech.common.kafka import open_client

__all__ = ["open_admin", "open_reader", "open_producer", "log_offsets"]


def open_admin(bootstrap: str, timeout_s: float) -> Any:
    return open_client(
        KafkaAdminClient,
        bootstrap_servers=bootstrap,
        client_id="suptech-ops",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )


def open_reader(bootstrap: str, timeout_s: float) -> Any:
    """A consumer outside any group: it commits nothing and moves no one's offsets."""
    return open_client(
        KafkaConsumer,
        bootstrap_servers=bootstrap,
        client_id="suptech-ops",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )


def open_producer(bootstrap: str, timeout_s: float) -> Any:
    return open_client(
        KafkaProducer,
        bootstrap_servers=bootstrap,
        client_id="suptech-ops",
        acks="all",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )


def log_offsets(
    admin: Any, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Beginning and end offsets of ``partitions`` (end = the offset the next record gets)."""
    if not partitions:
        return {}, {}
    begin = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
    end = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
    return (
        {tp: int(o.offset) for tp, o in begin.items()},
        {tp: int(o.offset) for tp, o in end.items()},
    )
