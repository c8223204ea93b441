"""One batch's Kafka failure is its own: it neither fails the other batches sharing the producer
nor holds the threads the rest of the gateway needs. Real gRPC, the real shared broker."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from suptech.common.topics import TOPICS, delete_topics_with_prefix, ensure_topics
from suptech.v1 import ingest_pb2_grpc

from tests.conftest import kafka_down
from tests.test_gateway import (
    TOKEN_A,
    TOKEN_B,
    Running,
    base_config,
    batch,
    free_port_pair,
    now_event,
    send,
)

pytestmark = pytest.mark.integration

# asyncio's default executor on this machine (what the publishes ran on before).
PRODUCER_THREAD = "suptech-gateway-network-thread"
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)


@pytest.fixture
def no_sandbox_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A topic namespace in which every topic but the sandbox one exists: sandbox batches fail
    (Kafka cannot take them) while the other kinds are written."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka_bootstrap, prefix, tuple(s for s in TOPICS if "sandbox" not in s.name))
    yield prefix
    delete_topics_with_prefix(kafka_bootstrap, prefix)


async def open_stream(channel: grpc.aio.Channel, requests: Any, token: str) -> Any:
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    return stub.StreamTelemetry(
        requests, metadata=(("authorization", f"Bearer {token}"),), timeout=60
    )


async def failing_sandbox_batch(port: int, n: int = 0) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = await open_stream(
            channel, iter([batch([now_event("sandbox", n)], f"sbx-{n}")]), TOKEN_A
        )
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


async def test_failed_batches_neither_fail_the_batches_beside_them_nor_leak_producers(
    kafka_bootstrap: str, no_sandbox_topic: str
) -> None:
    config = base_config(kafka_bootstrap, no_sandbox_topic, produce_timeout_s=1.0)
    sent: dict[str, list[str]] = {}

    async def heartbeats(institution: str) -> AsyncIterator[Any]:
        # Streams without pause (batches always in flight) for longer than the sandbox batches
        # take to fail.
        ids = sent.setdefault(institution, [])
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ids.append(f"hb-{len(ids)}")
            yield batch([now_event("heartbeat", len(ids), institution)], ids[-1])
            await asyncio.sleep(0.001)

    async def flow(port: int, institution: str, token: str) -> list[str]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = await open_stream(channel, heartbeats(institution), token)
            return [ack.batch_id async for ack in call]

    async with Running(config) as port:
        flowing = [
            asyncio.create_task(flow(port, "bank-b", TOKEN_B)),
            asyncio.create_task(flow(port, "bank-a", TOKEN_A)),
        ]
        await asyncio.sleep(0.3)
        failed = [await failing_sandbox_batch(port, i) for i in range(3)]
        acked = await asyncio.gather(*flowing)
        producers = [t for t in threading.enumerate() if t.name == PRODUCER_THREAD and t.is_alive()]
    assert failed == [grpc.StatusCode.UNAVAILABLE] * 3
    assert acked == [sent["bank-b"], sent["bank-a"]] and len(sent["bank-b"]) > 100
    # One producer serves every batch; none is left running behind.
    assert len(producers) == 1


async def test_publishes_waiting_on_kafka_leave_the_default_executor_and_other_batches_free(
    kafka_bootstrap: str, no_sandbox_topic: str
) -> None:
    # More batches stuck on Kafka than asyncio's default executor has threads.
    config = base_config(kafka_bootstrap, no_sandbox_topic, produce_timeout_s=3.0)
    async with Running(config) as port:
        stuck = [
            asyncio.create_task(failing_sandbox_batch(port, i)) for i in range(DEFAULT_WORKERS + 2)
        ]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        # What else runs in the default executor (the health monitor's Kafka ping) still runs.
        await asyncio.to_thread(time.monotonic)
        probe_s = time.monotonic() - started
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            started = time.monotonic()
            call = await open_stream(
                channel, iter([batch([now_event("heartbeat", 0, "bank-b")], "hb")]), TOKEN_B
            )
            acks = [ack async for ack in call]
            ack_s = time.monotonic() - started
        codes = await asyncio.gather(*stuck)
    assert codes == [grpc.StatusCode.UNAVAILABLE] * len(stuck)
    assert [a.accepted for a in acks] == [1]
    assert probe_s < 1.0, f"default executor blocked for {probe_s:.1f}s"
    assert ack_s < 1.5, f"another institution's batch waited {ack_s:.1f}s"


# Slow: the private broker starts twice (a JVM cold start, 10-40 s on a loaded 2-core machine).
@pytest.mark.slow
async def test_after_a_broker_restart_under_load_the_gateway_writes_again_and_leaks_no_producer(
    private_kafka: Any,
) -> None:
    # Batches in flight when the broker stops: kafka-python 3.0's idempotent producer then
    # stalls for good (its deliveries never complete, even once the broker is back).
    port = free_port_pair()
    bootstrap = await asyncio.to_thread(private_kafka, port)
    await asyncio.to_thread(ensure_topics, bootstrap, "")
    config = base_config(bootstrap, "", produce_timeout_s=2.0)
    stop = asyncio.Event()
    acked: list[float] = []

    async def flood(port: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            events = [now_event("heartbeat", i, "bank-b") for i in range(20)]
            try:
                acks = await send(port, [batch(events, f"f-{n}")], token=TOKEN_B)
                acked.extend(time.monotonic() for _ in acks)
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                await asyncio.sleep(0.05)

    async with Running(config) as gw:
        flooding = [asyncio.create_task(flood(gw)) for _ in range(3)]
        # The new topics' partitions need their leaders first (seconds on a loaded machine).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not acked:
            await asyncio.sleep(0.2)
        assert acked
        await asyncio.sleep(1.0)  # batches in flight when the broker stops
        await asyncio.to_thread(kafka_down, port)
        stopped_at = time.monotonic()
        await asyncio.sleep(3.0)
        await asyncio.to_thread(private_kafka, port)
        back_at = time.monotonic()
        deadline = back_at + 30
        while time.monotonic() < deadline and not (acked and acked[-1] > back_at):
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*flooding)
        # Replaced producers are closed once their batches are done.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            producers = [
                t for t in threading.enumerate() if t.name == PRODUCER_THREAD and t.is_alive()
            ]
            if len(producers) <= 1:
                break
            await asyncio.sleep(0.2)
    assert acked[-1] > back_at > stopped_at, "no batch acknowledged after the broker came back"
    assert len(producers) <= 1, f"{len(producers)} producers still running"
