"""What a hostile or broken client can send the gateway, for real (grpc.aio in-process, the shared
broker): events too large for a Kafka record, unknown protobuf fields and shadowed values carrying
raw identifiers, and bytes that are not a ``TelemetryBatch`` at all."""

from __future__ import annotations

import base64
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import grpc
import pytest
from kafka import KafkaConsumer, TopicPartition
from suptech.common.bundles import decode_bundle, topic_spec_for
from suptech.common.topics import delete_topics_with_prefix, ensure_topics, topic_name
from suptech.sdk.wire import encode_varint
from suptech.v1 import ingest_pb2, telemetry_pb2

from tests.test_gateway import TOKEN_A, Running, base_config, batch, now_event, send
from tests.test_gateway_validation import PSEUDONYM

pytestmark = pytest.mark.integration

RAW_ID = "zhang.san.13800138000"
METHOD = "/suptech.v1.IngestService/StreamTelemetry"
TOO_LARGE = "REJECT_REASON_TOO_LARGE"


def field(number: int, data: bytes) -> bytes:
    """One length-delimited field, serialised."""
    return encode_varint(number << 3 | 2) + encode_varint(len(data)) + data


def read_values(kafka: str, prefix: str, kinds: Sequence[str], events: int) -> list[bytes]:
    """The raw values of every record on the topics of ``kinds``, once they hold ``events``."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None)
    try:
        parts = [
            TopicPartition(topic_name(topic_spec_for(k), prefix), p)
            for k in sorted(set(kinds))
            for p in range(topic_spec_for(k).partitions)
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        values: list[bytes] = []
        seen = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and seen < events:
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    values.append(r.value)
                    seen += len(decode_bundle(r.value).events)
        # Anything beyond what was expected is a defect to report.
        for records in consumer.poll(timeout_ms=500).values():
            values += [r.value for r in records]
        return values
    finally:
        consumer.close()


def events_of(values: Sequence[bytes]) -> list[telemetry_pb2.TelemetryEnvelope]:
    return [ev for v in values for ev in decode_bundle(v).events]


# ---- size --------------------------------------------------------------------------------------


def padded(ev: telemetry_pb2.TelemetryEnvelope, size: int) -> telemetry_pb2.TelemetryEnvelope:
    """``ev`` grown to about ``size`` bytes by an unknown field (as a newer client might send)."""
    ev.MergeFromString(field(99, os.urandom(size)))
    return ev


@pytest.mark.parametrize(
    "kind", ["heartbeat", "data_access"], ids=["one-kind (received bytes)", "mixed (re-encoded)"]
)
async def test_event_over_the_size_limit_is_refused_alone_and_the_rest_written(
    kafka_bootstrap: str, topic_prefix: str, kind: str
) -> None:
    # The case: one valid event padded past Kafka's 1 MiB record limit among 100 others.
    events = [now_event("heartbeat", i) for i in range(100)]
    big = padded(now_event(kind, 100), 1024 * 1024 + 10)
    events.insert(40, big)
    async with Running(base_config(kafka_bootstrap, topic_prefix)) as port:
        acks = await send(port, [batch(events, "big-1")])
    (ack,) = acks
    assert ack.accepted == 100
    assert [(r.index, r.event_id, _name(r.reason)) for r in ack.rejections] == [
        (40, big.event_id, TOO_LARGE)
    ]
    assert "bytes" in ack.rejections[0].detail and "262144" in ack.rejections[0].detail
    values = read_values(kafka_bootstrap, topic_prefix, ["heartbeat", kind], 100)
    got = events_of(values)
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in events if e is not big)


async def test_size_limit_is_configurable_and_counts_every_byte_of_the_event(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    small = now_event("it_posture", 0)
    large = now_event("it_posture", 1)
    for i in range(40):
        large.it_posture.components.add(
            layer=telemetry_pb2.LAYER_SERVER, vendor=f"vendor-{i:04d}", product="x" * 100
        )
    assert large.ByteSize() > 4096 > small.ByteSize()
    config = base_config(kafka_bootstrap, topic_prefix, max_event_bytes=4096)
    async with Running(config) as port:
        acks = await send(port, [batch([small, large], "cfg-1")])
    assert acks[0].accepted == 1
    assert [(r.index, _name(r.reason)) for r in acks[0].rejections] == [(1, TOO_LARGE)]
    assert f"{large.ByteSize()} bytes" in acks[0].rejections[0].detail


async def test_a_record_kafka_refuses_as_too_large_costs_only_its_own_event(
    kafka_bootstrap: str,
) -> None:
    # A topic whose max.message.bytes is below the gateway's record bound (an operator's
    # choice): Kafka refuses the record. The gateway splits it and refuses only the event that
    # cannot fit alone; before, the whole batch was UNAVAILABLE and resent forever. (Created with
    # the limit: a limit altered later reaches the partitions only some time after.)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    spec = replace(topic_spec_for("it_posture"), extra={"max.message.bytes": "60000"})
    ensure_topics(kafka_bootstrap, prefix, (spec,))
    try:
        await _kafka_refuses(kafka_bootstrap, prefix)
    finally:
        delete_topics_with_prefix(kafka_bootstrap, prefix)


async def _kafka_refuses(kafka_bootstrap: str, topic_prefix: str) -> None:
    events = [now_event("it_posture", i) for i in range(6)]
    big = events[3]
    for _ in range(250):
        # Random base64 text: lz4 cannot shrink it below the topic's limit.
        vendor, product, version = (base64.b64encode(os.urandom(93)).decode() for _ in range(3))
        big.it_posture.components.add(
            layer=telemetry_pb2.LAYER_SERVER, vendor=vendor, product=product, version=version
        )
    assert 60000 < big.ByteSize() < 256 * 1024
    after = [now_event("it_posture", 10 + i) for i in range(3)]
    async with Running(base_config(kafka_bootstrap, topic_prefix)) as port:
        acks = await send(port, [batch(events, "kafka-big")])
        # The producer is not left refusing everything after (kafka-python's fatal state).
        later = await send(port, [batch(after, "after")])
    assert acks[0].accepted == 5
    assert [(r.index, r.event_id, _name(r.reason)) for r in acks[0].rejections] == [
        (3, big.event_id, TOO_LARGE)
    ]
    assert "max.message.bytes" in acks[0].rejections[0].detail
    assert (later[0].accepted, list(later[0].rejections)) == (3, [])
    got = events_of(read_values(kafka_bootstrap, topic_prefix, ["it_posture"], 8))
    want = [e for e in events if e is not big] + after
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in want)


def _name(reason: int) -> str:
    return str(ingest_pb2.RejectReason.Name(reason))


# ---- unknown fields and shadowed values --------------------------------------------------------


def hostile_events() -> tuple[list[bytes], list[str]]:
    """Serialised data-access envelopes, each valid as parsed, each carrying RAW_ID in bytes that
    parsing leaves out of the message validation sees; and their event ids."""
    out: list[bytes] = []
    ids: list[str] = []
    raw = RAW_ID.encode()

    def new() -> telemetry_pb2.TelemetryEnvelope:
        ev = now_event("data_access", len(out))
        ids.append(ev.event_id)
        return ev

    # Unknown fields in the envelope, the payload, and messages nested in each.
    ev = new()
    ev.MergeFromString(field(99, raw))
    out.append(ev.SerializeToString())
    ev = new()
    ev.data_access.MergeFromString(field(98, raw))
    out.append(ev.SerializeToString())
    ev = new()
    ev.data_access.fields.MergeFromString(field(97, raw))
    out.append(ev.SerializeToString())
    ev = new()
    ev.classification.MergeFromString(field(96, raw))
    ev.event_time.MergeFromString(field(95, raw))
    out.append(ev.SerializeToString())
    # A field sent twice: the raw id first, the pseudonym last (the last one wins when parsed).
    ev = new()
    payload = ev.data_access.SerializeToString()
    ev.ClearField("data_access")
    out.append(ev.SerializeToString() + field(10, field(2, raw) + payload))
    # A oneof sent twice: a data access with the raw id, then a heartbeat that replaces it.
    ev = new()
    ev.ClearField("data_access")
    shadowed = field(10, field(2, raw))
    hb = telemetry_pb2.Heartbeat(source_id="app-1", interval_seconds=60).SerializeToString()
    out.append(ev.SerializeToString() + shadowed + field(13, hb))
    return out, ids


def raw_batch(batch_id: str, envelopes: Sequence[bytes]) -> bytes:
    return field(1, batch_id.encode()) + b"".join(field(2, e) for e in envelopes)


async def send_raw(
    port: int, messages: Sequence[bytes], acks: list[Any] | None = None
) -> list[Any]:
    """Send already-serialised requests on one stream; return the acks (also appended to
    ``acks`` as they come, for a stream that ends in an error)."""
    got = [] if acks is None else acks
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            METHOD,
            request_serializer=lambda b: b,
            response_deserializer=ingest_pb2.BatchAck.FromString,
        )(iter(messages), metadata=(("authorization", f"Bearer {TOKEN_A}"),), timeout=30)
        async for ack in call:
            got.append(ack)
    return got


def assert_clean(values: Sequence[bytes]) -> None:
    """No raw identifier in any record, and no unknown field anywhere in it: the record is
    exactly what the parsed, validated messages serialise to."""
    assert values
    for value in values:
        assert RAW_ID.encode() not in value
        bundle = decode_bundle(value)
        clean = telemetry_pb2.TelemetryBundle()
        clean.CopyFrom(bundle)
        clean.DiscardUnknownFields()
        assert clean.SerializeToString() == value


@pytest.mark.parametrize("mixed", [False, True], ids=["one-kind", "mixed"])
async def test_unknown_fields_and_shadowed_values_never_reach_kafka(
    kafka_bootstrap: str, topic_prefix: str, mixed: bool
) -> None:
    envelopes, ids = hostile_events()
    extra = [now_event("sandbox", 0).SerializeToString()] if mixed else []
    async with Running(base_config(kafka_bootstrap, topic_prefix)) as port:
        acks = await send_raw(port, [raw_batch("hostile-1", envelopes + extra)])
    assert (acks[0].accepted, list(acks[0].rejections)) == (len(envelopes) + len(extra), [])
    values = read_values(
        kafka_bootstrap,
        topic_prefix,
        ["data_access", "heartbeat", "sandbox"],
        len(ids) + len(extra),
    )
    assert_clean(values)
    got = {e.event_id: e for e in events_of(values)}
    assert set(ids) <= set(got)
    # What was written is what validation saw: the pseudonym, and the heartbeat that won.
    assert got[ids[4]].data_access.actor_pseudonym == PSEUDONYM
    assert got[ids[5]].WhichOneof("payload") == "heartbeat"


# ---- undecodable messages ----------------------------------------------------------------------


async def test_undecodable_request_is_invalid_argument_in_one_rate_limited_log_line(
    kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = [b"\xff\xff\xff\xff", b"\x0a\x05ab", uuid.uuid4().bytes + b"\x12\x7f"]
    caplog.set_level(logging.INFO)
    async with Running(base_config(kafka_bootstrap, topic_prefix)) as port:
        codes = []
        for i in range(30):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await send_raw(port, [garbage[i % len(garbage)]])
            codes.append(err.value.code())
        # The stream's earlier batches are still answered, and the next stream works.
        first = raw_batch("ok-1", [now_event("heartbeat", 0).SerializeToString()])
        before: list[Any] = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send_raw(port, [first, garbage[0]], before)
        good = await send(port, [batch([now_event("heartbeat", 1)], "ok-2")])
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 30
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TelemetryBatch" in (err.value.details() or "")
    assert [(a.batch_id, a.accepted) for a in before] == [("ok-1", 1)]
    assert good[0].accepted == 1
    assert [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()] == []
    about = [r for r in caplog.records if "undecodable" in r.getMessage()]
    # Logged, once per reporting interval, counting what was not logged.
    assert 1 <= len(about) <= 2
    assert all("\n" not in r.getMessage() for r in about)
    assert "bank-a" in about[0].getMessage()
