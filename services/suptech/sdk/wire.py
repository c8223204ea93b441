"""Hand-written protobuf encoding of the two messages the SDK sends at volume.

Building a ``TelemetryEnvelope`` message object and serialising it costs several microseconds per
event in Python; concatenating pre-encoded fields costs a fraction of that. A ``TelemetryBatch`` is
assembled from the envelopes' bytes as they sit in the spool, so an event is serialised once, on
``send()``, and never parsed again on the client. Tests check the output against the generated code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "PAYLOAD_FIELDS",
    "encode_varint",
    "encode_envelope",
    "frame_batch_event",
    "envelope_template",
    "encode_timestamp",
    "encode_batch",
]

# Field numbers of the TelemetryEnvelope payload oneof (protos/suptech/v1/telemetry.proto).
PAYLOAD_FIELDS: dict[str, int] = {
    "data_access": 10,
    "it_posture": 11,
    "sandbox": 12,
    "heartbeat": 13,
    "metrics": 14,
    "maintenance": 15,
    "calendar": 16,
}

_LEN = 2  # wire type of length-delimited fields


def _encode_varint_slow(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths of ids, payloads and envelopes are almost always below 16 KiB: look them up.
_SMALL_VARINTS: tuple[bytes, ...] = tuple(_encode_varint_slow(i) for i in range(1 << 14))


def encode_varint(value: int, _small: tuple[bytes, ...] = _SMALL_VARINTS) -> bytes:
    if value < 16384:
        return _small[value]
    return _encode_varint_slow(value)


def _tag(field: int) -> bytes:
    return encode_varint((field << 3) | _LEN)


_PAYLOAD_TAGS: dict[str, bytes] = {kind: _tag(num) for kind, num in PAYLOAD_FIELDS.items()}


def _len_field(tag: bytes, value: bytes) -> bytes:
    return tag + encode_varint(len(value)) + value


def encode_timestamp(unix_ns: int) -> bytes:
    """A ``google.protobuf.Timestamp`` (seconds field 1, nanos field 2; zero fields omitted)."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    out = b""
    if seconds:
        out += b"\x08" + encode_varint(seconds)
    if nanos:
        out += b"\x10" + encode_varint(nanos)
    return out


def encode_envelope(
    event_id: str,
    institution_field: bytes,
    event_time_ns: int,
    kind: str,
    payload: bytes,
    classification: bytes = b"",
) -> bytes:
    """Serialised ``TelemetryEnvelope``.

    ``institution_field`` is the already-encoded field 2 (see :func:`institution_field`), made once
    per client; ``payload`` is the serialised payload message of ``kind``; ``classification`` the
    serialised ``Classification`` (omitted when empty).
    """
    eid = event_id.encode("ascii")
    out = b"\x0a" + encode_varint(len(eid)) + eid + institution_field
    ts = encode_timestamp(event_time_ns)
    out += b"\x1a" + encode_varint(len(ts)) + ts
    if classification:
        out += b"\x22" + encode_varint(len(classification)) + classification
    # A oneof member is written even when empty, so that the payload's presence survives.
    return out + _PAYLOAD_TAGS[kind] + encode_varint(len(payload)) + payload


def institution_field(institution_id: str) -> bytes:
    """Encoded field 2 of ``TelemetryEnvelope`` (empty when the id is empty, as proto3 does)."""
    if not institution_id:
        return b""
    return _len_field(b"\x12", institution_id.encode("utf-8"))


def envelope_template(
    institution_field: bytes, event_time_ns: int, kind: str, payload: bytes
) -> tuple[bytes, bytes]:
    """For many events differing only in their 32-character event id: the bytes before and
    after the id, so that ``head + event_id + tail`` is the serialised envelope."""
    ts = encode_timestamp(event_time_ns)
    tail = (
        institution_field
        + b"\x1a"
        + encode_varint(len(ts))
        + ts
        + _PAYLOAD_TAGS[kind]
        + encode_varint(len(payload))
        + payload
    )
    return b"\x0a\x20", tail


def frame_batch_event(envelope: bytes) -> bytes:
    """One element of ``TelemetryBatch.events`` (field 2), ready to concatenate."""
    return b"\x12" + encode_varint(len(envelope)) + envelope


def encode_batch(batch_id: str, framed_events: Iterable[bytes], traceparent: str = "") -> bytes:
    """Serialised ``TelemetryBatch`` from events framed by :func:`frame_batch_event`."""
    head = _len_field(b"\x0a", batch_id.encode("ascii"))
    tail = _len_field(b"\x1a", traceparent.encode("ascii")) if traceparent else b""
    return head + b"".join(framed_events) + tail
