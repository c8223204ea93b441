"""Records framed from a batch's serialisation must be exactly what re-serialising its events into
a bundle would have written, and every record must fit what its topic takes."""

from __future__ import annotations

import time
import uuid
from typing import Any

from hypothesis import given, settings
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


# ---- nothing but what validation read reaches a record ------------------------------------------

MARK = b"RAW-ID-13800138000"
PAYLOAD_FIELD = {"data_access": 10, "it_posture": 11, "sandbox": 12, "heartbeat": 13}


def _len_field(number: int, data: bytes) -> bytes:
    return wire.encode_varint(number << 3 | 2) + wire.encode_varint(len(data)) + data


def _unknown(draw: st.DrawFn) -> bytes:
    """An unknown field: the raw identifier length-delimited, or a varint or fixed64 one."""
    number = draw(st.integers(min_value=500, max_value=2**29 - 1))
    kind = draw(st.sampled_from(["len", "varint", "fixed64"]))
    if kind == "len":
        return _len_field(number, MARK + draw(st.binary(max_size=8)))
    if kind == "varint":
        return wire.encode_varint(number << 3) + wire.encode_varint(draw(st.integers(0, 2**63)))
    return wire.encode_varint(number << 3 | 1) + draw(st.binary(min_size=8, max_size=8))


@st.composite
def hostile_envelope(draw: st.DrawFn, n: int) -> bytes:
    """A valid envelope whose bytes carry the raw identifier where parsing leaves it out: unknown
    fields at any depth, a field or a payload member sent twice (the last one counts)."""
    kind = draw(st.sampled_from(sorted(PAYLOAD_FIELD)))
    ev = valid_event(kind, n)
    ev.event_id = f"evt-{n:08d}-{uuid.uuid4().hex[:8]}"
    targets: list[Any] = [ev, getattr(ev, kind), ev.event_time]
    if kind == "data_access":
        targets += [ev.classification, ev.data_access.fields]
    if kind == "it_posture":
        targets.append(ev.it_posture.components[0])
    for target in draw(st.lists(st.sampled_from(targets), max_size=4)):
        target.MergeFromString(_unknown(draw))
    payload = getattr(ev, kind).SerializeToString()
    ev.ClearField(kind)  # type: ignore[arg-type]
    head = ev.SerializeToString()
    shadows = b""
    if draw(st.booleans()):
        # The first copy of a field that is set: the later one wins.
        payload = _len_field(2 if kind == "data_access" else 1, MARK) + payload
    if draw(st.booleans()):
        # Another payload member before the real one: replaced by it.
        other = draw(st.sampled_from(sorted(set(PAYLOAD_FIELD) - {kind})))
        shadows = _len_field(PAYLOAD_FIELD[other], _len_field(1, MARK))
    return head + shadows + _len_field(PAYLOAD_FIELD[kind], payload)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_records_hold_no_unknown_field_and_no_shadowed_value(data: st.DataObject) -> None:
    from suptech.gateway.forward import sizes_then_clean
    from suptech.gateway.producer import TelemetryProducer
    from suptech.gateway.validation import validate_batch

    from tests.test_gateway_validation import INST, NOW

    n = data.draw(st.integers(min_value=1, max_value=12))
    envelopes = [data.draw(hostile_envelope(i)) for i in range(n)]
    raw = _len_field(1, b"b-1") + b"".join(_len_field(2, e) for e in envelopes)
    received = parse_batch(raw)
    sizes_then_clean(received, 256 * 1024)
    verdict = validate_batch(received.batch.events, INST, NOW)
    assert verdict.accepted_count == n, verdict.rejections
    producer = TelemetryProducer("127.0.0.1:9", "", 1.0)
    try:
        paths = [None] + ([received.batch] if len(verdict.accepted) == 1 else [])
        for whole in paths:
            records, refused = producer._records(INST, "b-1", verdict.accepted, whole)
            assert refused == []
            written: list[str] = []
            for r in records:
                assert MARK not in r.value
                bundle = decode_bundle(r.value)
                clean = type(bundle)()
                clean.CopyFrom(bundle)
                clean.DiscardUnknownFields()
                assert clean.SerializeToString() == r.value
                written += [e.event_id for e in bundle.events]
            assert sorted(written) == sorted(e.event_id for e in received.batch.events)
    finally:
        producer.close()
