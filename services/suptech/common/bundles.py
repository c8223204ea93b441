"""Encoding of telemetry on Kafka: one ``TelemetryBundle`` record per batch and topic.

Written in one place (the gateway) and read in one place per consumer, through these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from suptech.common.topics import TELEMETRY_TOPICS, TopicSpec
from suptech.v1 import telemetry_pb2

__all__ = ["PAYLOAD_KINDS", "topic_spec_for", "encode_bundle", "decode_bundle", "iter_events"]

# The payload oneof's field names, which are also the keys of TELEMETRY_TOPICS.
PAYLOAD_KINDS: tuple[str, ...] = tuple(TELEMETRY_TOPICS)


def topic_spec_for(kind: str) -> TopicSpec:
    """The topic that carries events whose payload is ``kind``."""
    return TELEMETRY_TOPICS[kind]


def encode_bundle(
    institution_id: str,
    batch_id: str,
    received_unix_ns: int,
    events: Iterable[telemetry_pb2.TelemetryEnvelope],
) -> bytes:
    bundle = telemetry_pb2.TelemetryBundle(institution_id=institution_id, batch_id=batch_id)
    bundle.received_time.FromNanoseconds(received_unix_ns)
    bundle.events.extend(events)
    return bundle.SerializeToString()


def decode_bundle(value: bytes) -> telemetry_pb2.TelemetryBundle:
    """Parse one record value; raises ``google.protobuf.message.DecodeError`` when malformed."""
    bundle = telemetry_pb2.TelemetryBundle()
    bundle.ParseFromString(value)
    return bundle


def iter_events(value: bytes) -> Iterator[telemetry_pb2.TelemetryEnvelope]:
    yield from decode_bundle(value).events
