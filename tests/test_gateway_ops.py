"""Operating the gateway: the plain-text health port for Kubernetes probes, trace context on the
records it writes, and draining on SIGTERM. Real gRPC, the real shared broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from suptech.common.bundles import decode_bundle, topic_spec_for
from suptech.common.topics import topic_name
from suptech.gateway.metrics import GatewayMetrics
from suptech.gateway.server import SERVICE_NAME, build_gateway
from suptech.v1 import ingest_pb2_grpc

from tests.test_gateway import TOKEN_A, base_config, batch, closed_port, make_pki, now_event

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
        return int(reply.status)


async def wait_status(port: int, want: int, bound_s: float = 60.0) -> int:
    """Poll until the health is ``want`` (or the bound passes); return the last status seen."""
    deadline = time.monotonic() + bound_s
    status = await health_status(port)
    while status != want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = await health_status(port)
    return status


def tls_config(kafka: str, prefix: str, tmp_path: Path, **overrides: Any) -> Any:
    make_pki(tmp_path)
    config = base_config(
        kafka,
        prefix,
        tls_cert=str(tmp_path / "server.pem"),
        tls_key=str(tmp_path / "server_key.pem"),
        health_port=0,
    )
    return replace(config, **overrides)


async def test_tls_gateway_serves_plaintext_health_until_it_drains(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    server, cleanup = build_gateway(tls_config(kafka_bootstrap, topic_prefix, tmp_path))
    await server.start()
    stopping = None
    try:
        port = server.health_port
        assert port is not None and port != server.port
        assert [await health_status(port, name) for name in ("", SERVICE_NAME)] == [SERVING] * 2
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30
            )
            seen = [(await watch.read()).status]
            stopping = asyncio.create_task(server.stop(1.0))
            seen.append((await watch.read()).status)
        assert seen == [SERVING, NOT_SERVING]
    finally:
        if stopping is None:
            await server.stop(1.0)
        else:
            await stopping
        await cleanup()


async def test_plaintext_gateway_has_no_second_port(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    server, cleanup = build_gateway(base_config(kafka_bootstrap, topic_prefix))
    await server.start()
    try:
        assert server.health_port is None
        assert await health_status(server.port, SERVICE_NAME) == SERVING
    finally:
        await server.stop(1.0)
        await cleanup()


async def test_health_port_not_serving_while_kafka_is_unreachable(
    topic_prefix: str, tmp_path: Path
) -> None:
    config = tls_config(f"127.0.0.1:{closed_port()}", topic_prefix, tmp_path, produce_timeout_s=1.0)
    server, cleanup = build_gateway(config)
    await server.start()
    try:
        port = server.health_port
        assert port is not None
        assert await wait_status(port, NOT_SERVING) == NOT_SERVING
        assert await health_status(port, SERVICE_NAME) == NOT_SERVING
    finally:
        await server.stop(1.0)
        await cleanup()


# ---- trace context and counters ----------------------------------------------------------------

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def records_of(kafka: str, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None)
    try:
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        consumer.seek_to_beginning()
        found: list[Any] = []
        deadline = time.monotonic() + 20
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found += records
        return found
    finally:
        consumer.close()


def counters(registry: CollectorRegistry) -> dict[tuple[str, tuple[Any, ...]], int]:
    """(sample name, sorted labels) -> value, for every counter sample the gateway recorded."""
    out: dict[tuple[str, tuple[Any, ...]], int] = {}
    for family in registry.collect():
        if family.type != "counter" or not family.name.startswith("suptech_"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.value:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = int(sample.value)
    return out


async def test_records_carry_the_callers_trace_and_counters_add_up(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    tracer = TracerProvider().get_tracer("test")
    server, cleanup = build_gateway(
        base_config(kafka_bootstrap, topic_prefix), tracer=tracer, metrics=metrics
    )
    await server.start()
    try:
        bad = now_event("data_access", 2)
        bad.data_access.actor_pseudonym = "raw-employee-id"
        events = [now_event("data_access", 0), now_event("data_access", 1), bad]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            call = stub.StreamTelemetry(
                iter([batch(events, "traced-1"), batch([now_event("heartbeat", 3)], "traced-2")]),
                metadata=(("authorization", f"Bearer {TOKEN_A}"), ("traceparent", TRACEPARENT)),
                timeout=30,
            )
            acks = [ack async for ack in call]
    finally:
        await server.stop(1.0)
        await cleanup()
    assert [(a.batch_id, a.accepted) for a in acks] == [("traced-1", 2), ("traced-2", 1)]

    topic = topic_name(topic_spec_for("data_access"), topic_prefix)
    (record,) = await asyncio.to_thread(records_of, kafka_bootstrap, topic, 1)
    assert decode_bundle(record.value).batch_id == "traced-1"
    traceparents = [v.decode() for k, v in record.headers if k == "traceparent"]
    assert len(traceparents) == 1
    version, trace_id, span_id, _flags = traceparents[0].split("-")
    # The same trace as the caller's, under the gateway's own span for the batch.
    assert (version, trace_id) == ("00", CALLER_TRACE)
    assert span_id != "00f067aa0ba902b7"

    assert counters(metrics.registry) == {
        ("suptech_gateway_batches_total", (("outcome", "acked"),)): 2,
        ("suptech_gateway_events_total", (("outcome", "accepted"), ("reason", ""))): 3,
        (
            "suptech_gateway_events_total",
            (("outcome", "rejected"), ("reason", "INVALID_FORMAT")),
        ): 1,
    }


# ---- draining on SIGTERM -----------------------------------------------------------------------


async def start_gateway_process(
    kafka: str, prefix: str, tmp_path: Path
) -> tuple[asyncio.subprocess.Process, int]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN_A: "bank-a"}))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(["services", "."]),
        GATEWAY_PORT="0",
        GATEWAY_TOKENS_FILE=str(tokens),
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        GATEWAY_GRACE_S="20",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "suptech.gateway",
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert line, "gateway exited before listening"
        match = re.search(r"gateway listening on (\d+)", line)
        if match:
            return proc, int(match.group(1))


async def test_sigterm_drains_batches_in_flight_then_refuses_and_exits_0(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    proc, port = await start_gateway_process(kafka_bootstrap, topic_prefix, tmp_path)
    events = [now_event("data_access", i) for i in range(1000)]
    # Far more than the gateway keeps in flight (8 per stream): the stream is still busy when
    # the signal lands, so batches are between "read" and "acknowledged" at that moment.
    batches = [batch(events, f"drain-{i:02d}") for i in range(40)]
    acked: list[str] = []
    acked_after_signal: list[str] = []
    signalled = False
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            call = stub.StreamTelemetry(
                iter(batches), metadata=(("authorization", f"Bearer {TOKEN_A}"),), timeout=60
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for ack in call:
                    acked.append(ack.batch_id)
                    if signalled:
                        acked_after_signal.append(ack.batch_id)
                    else:
                        proc.send_signal(signal.SIGTERM)
                        signalled = True
            # A stream opened once the drain began is refused too (by the gateway or, once it
            # closed its port, by the connection).
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await stub.StreamTelemetry(
                    iter([batch(events[:1], "late")]),
                    metadata=(("authorization", f"Bearer {TOKEN_A}"),),
                    timeout=30,
                ).read()
        assert proc.stderr is not None
        rest = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The draining gateway refuses the next batch with UNAVAILABLE; when that lands while the
    # client is still writing a batch, grpc's client core reports its failed write as INTERNAL
    # instead. The SDK retries both.
    code = refused.value.code()
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
    if code == grpc.StatusCode.UNAVAILABLE:
        assert "shutting down" in (refused.value.details() or "")
    # UNAVAILABLE from the draining gateway, or CANCELLED / INTERNAL ("Failed execute_batch",
    # from the client's own core) when the stream lands while the server is closing its port; the
    # SDK retries all three elsewhere, so none loses an event.
    assert late.value.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
    )
    # Batches the gateway had taken when the signal came were still written and acknowledged.
    assert acked_after_signal, "no batch was in flight at SIGTERM"
    assert len(acked) < len(batches)
    assert "gateway stopped" in rest
    topic = topic_name(topic_spec_for("data_access"), topic_prefix)
    records = await asyncio.to_thread(records_of, kafka_bootstrap, topic, len(acked))
    written = [decode_bundle(r.value).batch_id for r in records]
    assert sorted(set(written)) == sorted(acked)
