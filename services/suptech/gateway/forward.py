"""From a received ``TelemetryBatch`` to the bytes of ``TelemetryBundle`` records.

A request is parsed here (never raising: bytes that are not a batch are reported as such), and
an all-accepted batch of one payload kind is framed into records from one serialisation of the
parsed batch: each event re-framed from ``TelemetryBatch.events`` (field 2) to
``TelemetryBundle.events`` (field 4), instead of copying every parsed message into a bundle and
serialising it again, which cost about 1 µs per event.

The bytes framed are the gateway's own serialisation of the messages validation read, never the
bytes the client sent: received bytes may hold what parsing leaves out of the message (unknown
fields, a field or a oneof member sent twice, of which only the last counts), and that must
never reach Kafka. The servicer drops unknown fields before validation
(``DiscardUnknownFields``); serialising the parsed message drops the shadowed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import DecodeError

from suptech.v1 import ingest_pb2, telemetry_pb2

__all__ = [
    "ReceivedBatch",
    "parse_batch",
    "sizes_then_clean",
    "bundle_event_fields",
    "encode_bundle_head",
    "pack_fields",
    "MAX_RECORD_BYTES",
    "MAX_EVENT_BYTES_CEILING",
]

# Below the broker's default message.max.bytes (1 MiB): a larger bundle is split so that a big
# batch can never become a record the broker refuses.
MAX_RECORD_BYTES = 900 * 1024
# The largest per-event limit the gateway may be configured with: a lone event, framed in a
# bundle (institution and batch ids of at most 128 characters, a timestamp: under 1.1 KiB), is
# then far below MAX_RECORD_BYTES, so splitting a batch always ends in records Kafka takes.
MAX_EVENT_BYTES_CEILING = 512 * 1024

_BATCH_ID_TAG = 0x0A  # TelemetryBatch field 1, length-delimited
_EVENTS_TAG = 0x12  # TelemetryBatch field 2, length-delimited
_BUNDLE_EVENTS_TAG = b"\x22"  # TelemetryBundle field 4, length-delimited


class ReceivedBatch:
    """A request as received: the parsed ``TelemetryBatch`` (``None`` when the bytes are not
    one, ``error`` then says why) and the size of the bytes it was parsed from."""

    __slots__ = ("batch", "size", "error")

    def __init__(self, batch: Any, size: int, error: str = "") -> None:
        self.batch = batch
        self.size = size
        self.error = error


def parse_batch(raw: bytes) -> ReceivedBatch:
    """The gRPC request deserializer of the gateway. It never raises: gRPC would log a traceback
    and hand the servicer ``None``, and the caller would see a retryable INTERNAL."""
    try:
        return ReceivedBatch(ingest_pb2.TelemetryBatch.FromString(raw), len(raw))
    except DecodeError as e:
        return ReceivedBatch(None, len(raw), str(e) or "not a protobuf message")


def sizes_then_clean(received: ReceivedBatch, max_event_bytes: int) -> list[int] | None:
    """Each event's serialised size as received (unknown fields included), when the request is
    larger than one event may be (else ``None``: none can exceed the limit); then drop the
    unknown fields of every message of the batch, nested ones included, so that nothing
    validation does not read can reach Kafka (values shadowed by a later copy of their field
    vanish when the parsed messages are serialised)."""
    batch = received.batch
    sizes = None
    if received.size > max_event_bytes:
        sizes = [ev.ByteSize() for ev in batch.events]
    batch.DiscardUnknownFields()
    return sizes


def bundle_event_fields(serialised: bytes) -> list[bytes] | None:
    """Every event of the serialised batch, framed as a ``TelemetryBundle.events`` field, in
    order; ``None`` when ``serialised`` holds anything but ``batch_id`` and ``events`` fields
    (other fields, other wire types), so that only the events can ever reach a record."""
    out: list[bytes] = []
    append = out.append
    tag_ = _BUNDLE_EVENTS_TAG
    raw = serialised
    pos = 0
    end = len(raw)
    while pos < end:
        tag = raw[pos]
        if tag != _EVENTS_TAG and tag != _BATCH_ID_TAG:
            return None
        # Length varint: events are almost always below 16 KiB, i.e. one or two bytes.
        i = pos + 1
        if i >= end:
            return None
        b = raw[i]
        length = b & 0x7F
        shift = 7
        while b & 0x80:
            i += 1
            if i >= end or shift > 28:
                return None
            b = raw[i]
            length |= (b & 0x7F) << shift
            shift += 7
        stop = i + 1 + length
        if stop > end:
            return None
        if tag == _EVENTS_TAG:
            # The new tag, then the length varint and the event's bytes.
            append(tag_ + raw[pos + 1 : stop])
        pos = stop
    return out


def pack_fields(fields: Sequence[bytes], budget: int) -> list[tuple[int, int]]:
    """Split framed events into runs of at most ``budget`` bytes each (a run of one event may
    exceed it): ``[(start, stop), ...]`` indexes into ``fields``, in order, covering all."""
    runs: list[tuple[int, int]] = []
    start = 0
    size = 0
    for i, f in enumerate(fields):
        n = len(f)
        if size + n > budget and i > start:
            runs.append((start, i))
            start = i
            size = 0
        size += n
    if start < len(fields) or not runs:
        runs.append((start, len(fields)))
    return runs


def encode_bundle_head(institution_id: str, batch_id: str, received_unix_ns: int) -> bytes:
    """The ``TelemetryBundle`` fields before its events (fields 1-3), serialised."""
    head = telemetry_pb2.TelemetryBundle(institution_id=institution_id, batch_id=batch_id)
    head.received_time.FromNanoseconds(received_unix_ns)
    return head.SerializeToString()
