"""``deadletters --replay``: put dead letters of one reason back on the topic they came from.

Safe to repeat because every suptech consumer is idempotent (event ids, deterministic finding
ids): a replayed record that was in fact processed creates nothing new. A record that fails again
lands in the dead-letter topic again, with the same reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from suptech.common.bundles import encode_bundle
from suptech.common.topics import TELEMETRY_TOPICS, topic_name
from suptech.ops.deadletters import DeadLetterRecord
from suptech.v1 import telemetry_pb2

__all__ = ["REPLAYED_FROM_HEADER", "Replayed", "payload_for_source", "replay"]

# Where a replayed record came from: "<dead-letter topic>/<partition>/<offset>".
REPLAYED_FROM_HEADER = "x-suptech-replayed-from"

# Detector reasons whose dead letter holds one TelemetryEnvelope of a bundle, not the record.
_PER_EVENT_REASONS = frozenset({"engine_error", "missing_event_id"})


@dataclass(frozen=True)
class Replayed:
    dead_letter_offset: int
    reason: str
    to_topic: str
    # Where the record went, or why it was not replayed.
    partition: int | None = None
    offset: int | None = None
    skipped: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def payload_for_source(r: DeadLetterRecord, prefix: str) -> bytes:
    """The value to produce to ``r.source_topic`` so that its consumer reads it as it would have.

    Telemetry topics carry one TelemetryBundle per record; the detector dead-letters a single
    failing event as its bare envelope, so that one is wrapped in a bundle of its own again.
    """
    telemetry = {topic_name(s, prefix) for s in TELEMETRY_TOPICS.values()}
    if r.writer == "detector" and r.reason in _PER_EVENT_REASONS and r.source_topic in telemetry:
        env = telemetry_pb2.TelemetryEnvelope()
        env.ParseFromString(r.value)
        batch_id = f"replay-{r.partition}-{r.offset}"
        return encode_bundle(env.institution_id, batch_id, r.timestamp_ms * 1_000_000, [env])
    return r.value


def replay(
    producer: Any,
    records: list[DeadLetterRecord],
    dead_letter_topic: str,
    prefix: str,
    existing_topics: set[str],
    timeout_s: float,
) -> list[Replayed]:
    """Produce each record to its source topic (acks=all); report where each one went."""
    pending: list[tuple[DeadLetterRecord, Any]] = []
    out: list[Replayed] = []
    for r in records:
        if r.source_topic not in existing_topics:
            out.append(Replayed(r.offset, r.reason, r.source_topic, skipped="unknown source topic"))
            continue
        try:
            value = payload_for_source(r, prefix)
        except Exception as exc:  # a dead letter may hold anything; skip it, say why
            out.append(Replayed(r.offset, r.reason, r.source_topic, skipped=f"payload: {exc}"))
            continue
        headers = [(REPLAYED_FROM_HEADER, f"{dead_letter_topic}/{r.partition}/{r.offset}".encode())]
        pending.append((r, producer.send(r.source_topic, key=r.key, value=value, headers=headers)))
    producer.flush(timeout=timeout_s)
    for r, future in pending:
        meta = future.get(timeout=timeout_s)
        out.append(Replayed(r.offset, r.reason, r.source_topic, meta.partition, meta.offset))
    return sorted(out, key=lambda x: x.dead_letter_offset)
