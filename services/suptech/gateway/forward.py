"""Forwarding received event bytes to Kafka without re-serialising them.

When every event of a batch is accepted and of one payload kind, the Kafka record holds exactly the
batch's events: the record is built from the bytes the client sent (each event re-framed from
``TelemetryBatch.events``, field 2, to ``TelemetryBundle.events``, field 4) instead of copying the
parsed messages into a bundle and serialising it again, which cost about 1 µs per event.
"""

from __future__ import annotations

from typing import Any

from suptech.v1 import ingest_pb2, telemetry_pb2

__all__ = ["ReceivedBatch", "parse_batch", "bundle_event_fields", "encode_bundle_head"]

_BATCH_ID_TAG = 0x0A  # TelemetryBatch field 1, length-delimited
_EVENTS_TAG = 0x12  # TelemetryBatch field 2, length-delimited
_BUNDLE_EVENTS_TAG = b"\x22"  # TelemetryBundle field 4, length-delimited


class ReceivedBatch:
    """A ``TelemetryBatch`` as parsed, with the bytes it was parsed from."""

    __slots__ = ("batch", "raw")

    def __init__(self, batch: Any, raw: bytes) -> None:
        self.batch = batch
        self.raw = raw


def parse_batch(raw: bytes) -> ReceivedBatch:
    """The gRPC request deserializer of the gateway (raises ``DecodeError`` like the generated)."""
    return ReceivedBatch(ingest_pb2.TelemetryBatch.FromString(raw), raw)


def bundle_event_fields(raw: bytes) -> bytes | None:
    """Every event of the serialised batch ``raw``, framed as ``TelemetryBundle.events`` fields,
    in order; ``None`` when ``raw`` holds anything but ``batch_id`` and ``events`` fields (unknown
    fields, other wire types), so that only the events can ever reach the record."""
    out: list[bytes] = []
    append = out.append
    pos = 0
    end = len(raw)
    while pos < end:
        tag = raw[pos]
        if tag != _EVENTS_TAG and tag != _BATCH_ID_TAG:
            return None
        # Length varint: events are almost always below 16 KiB, i.e. one or two bytes.
        i = pos + 1
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
            # The length varint and the event's bytes, as received.
            append(raw[pos + 1 : stop])
        pos = stop
    if not out:
        return b""
    return _BUNDLE_EVENTS_TAG + _BUNDLE_EVENTS_TAG.join(out)


def encode_bundle_head(institution_id: str, batch_id: str, received_unix_ns: int) -> bytes:
    """The ``TelemetryBundle`` fields before its events (fields 1-3), serialised."""
    head = telemetry_pb2.TelemetryBundle(institution_id=institution_id, batch_id=batch_id)
    head.received_time.FromNanoseconds(received_unix_ns)
    return head.SerializeToString()
