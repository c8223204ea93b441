"""Records framed from a batch's serialisation must be exactly what re-serialising its events into
a bundle would have written, and every record must fit what its topic takes."""

from __future__ import annotations

import time
import uuid

from hypothesis import given
from hypothesis import strategies as st
from suptech.common.bundles import decode_bundle, encode_bundle
from suptech.gateway.forward import (
    MAX_EVENT_BYTES_CEILING,
    MAX_RECORD_BYTES,
    bundle_event_fields,
    encode_bundle_head,
    pack_fields,
    parse_batch,
)
from suptech.gateway.producer import record_bound
from suptech.sdk import wire
from suptech.v1 import ingest_pb2

from tests.test_gateway_validation import valid_event


def sdk_batch(n: int, payload_bytes: int = 40) -> bytes:
    """A batch as the SDK encodes it (hand-framed bytes, never a protobuf message)."""
    institution = wire.institution_field("bank-a")
    now = time.time_ns()
    return wire.encode_batch(
        "b-1",
        [
            wire.frame_batch_event(
                wire.encode_envelope(
                    uuid.uuid4().hex,
                    institution,
                    now,
                    "heartbeat",
                    b"\x0a"
                    + bytes([i % 100 + 1])
                    + b"x" * (i % 100 + 1)
                    + b"\x12"
                    + bytes([payload_bytes])
                    + b"v" * payload_bytes,
                )
            )
            for i in range(n)
        ],
    )


def rebuilt(raw: bytes) -> bytes | None:
    fields = bundle_event_fields(raw)
    return None if fields is None else encode_bundle_head("bank-a", "b-1", 123) + b"".join(fields)


def reserialised(raw: bytes) -> bytes:
    batch = ingest_pb2.TelemetryBatch.FromString(raw)
    return encode_bundle("bank-a", "b-1", 123, batch.events)


def test_sdk_batch_forwards_to_the_same_bundle_bytes() -> None:
    # Payloads from 0 to over 16 KiB cover one-, two- and three-byte length varints.
    for n, size in ((0, 1), (1, 5), (300, 120), (3, 127)):
        raw = sdk_batch(n, size)
        assert rebuilt(raw) == reserialised(raw)
        # A client's non-canonical encoding (an explicit empty field) forwards as sent: the same
        # message for every reader.
        odd = raw + wire.frame_batch_event(
            b"\x0a\x00"
            + wire.encode_envelope("e" * 32, wire.institution_field("bank-a"), 5, "heartbeat", b"")
        )
        assert decode_bundle(rebuilt(odd) or b"") == decode_bundle(reserialised(odd))
    big = ingest_pb2.TelemetryBatch(batch_id="b-1", events=[valid_event("heartbeat", 1)])
    big.events[0].heartbeat.sdk_version = "v" * 20_000
    raw = big.SerializeToString()
    assert decode_bundle(rebuilt(raw) or b"") == decode_bundle(reserialised(raw))


@given(
    st.lists(st.sampled_from(["data_access", "it_posture", "sandbox", "heartbeat"]), max_size=20)
)
def test_generated_batches_forward_to_the_same_bundle(kinds: list[str]) -> None:
    batch = ingest_pb2.TelemetryBatch(
        batch_id="b-1", events=[valid_event(k, i) for i, k in enumerate(kinds)]
    )
    raw = batch.SerializeToString()
    assert rebuilt(raw) == reserialised(raw)


def test_anything_but_batch_id_and_events_falls_back() -> None:
    raw = sdk_batch(2)
    # An unknown field 3 (varint) and field 4 (length-delimited: bundle's events number).
    assert bundle_event_fields(raw + b"\x18\x01") is None
    assert bundle_event_fields(raw + b"\x22\x00") is None
    # events (field 2) sent with a varint wire type is not an event.
    assert bundle_event_fields(raw + b"\x10\x01") is None
    # A length running past the end.
    assert bundle_event_fields(raw + b"\x12\x05ab") is None


@given(st.lists(st.integers(min_value=1, max_value=5000), max_size=60), st.integers(1, 20000))
def test_packing_covers_every_event_in_order_within_budget(sizes: list[int], budget: int) -> None:
    fields = [b"x" * n for n in sizes]
    runs = pack_fields(fields, budget)
    assert [i for a, b in runs for i in range(a, b)] == list(range(len(fields)))
    for a, b in runs:
        # Over the budget only as a lone event.
        assert b - a == 1 or sum(sizes[a:b]) <= budget


def test_a_lone_event_at_the_ceiling_fits_a_record_of_the_default_topic() -> None:
    # The worst head: ids of 128 four-byte characters.
    head = encode_bundle_head("銀" * 128, "批" * 128, 2**62)
    framing = 1 + 3  # tag, length varint
    assert len(head) + framing + MAX_EVENT_BYTES_CEILING < record_bound(1048588) == MAX_RECORD_BYTES


def test_parse_never_raises_and_says_what_is_wrong() -> None:
    bad = parse_batch(b"\xff\xff\xff")
    assert bad.batch is None and bad.size == 3 and "TelemetryBatch" in bad.error
    good = parse_batch(sdk_batch(2))
    assert good.batch is not None and len(good.batch.events) == 2 and not good.error
