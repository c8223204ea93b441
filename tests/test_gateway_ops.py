"""Operating the gateway: the plain-text health port for Kubernetes probes, trace context on the
records it writes, and draining on SIGTERM. Real gRPC, the real shared broker."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suptech.gateway.server import SERVICE_NAME, build_gateway

from tests.test_gateway import base_config, closed_port, make_pki

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
