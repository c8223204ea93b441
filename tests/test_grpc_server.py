"""The shared gRPC server skeleton: what Kubernetes probes see through its life."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suptech.common.grpc_server import LIVENESS_SERVICE, GrpcServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(reply.status)


async def test_unready_process_stays_alive_until_shutdown() -> None:
    server = GrpcServer(host="127.0.0.1", port=0, registrations=(), service_names=("x.v1.Foo",))
    await server.start()
    try:
        assert await _status(server.port, "") == SERVING
        assert await _status(server.port, "x.v1.Foo") == SERVING
        # A dependency is down: readiness drops, liveness does not (a restart would not help).
        await server.set_serving(False)
        assert await _status(server.port, "") == NOT_SERVING
        assert await _status(server.port, "x.v1.Foo") == NOT_SERVING
        assert await _status(server.port, LIVENESS_SERVICE) == SERVING
        await server.set_serving(True)
        assert await _status(server.port, "") == SERVING
        await server.begin_shutdown()
        assert await _status(server.port, LIVENESS_SERVICE) == NOT_SERVING
        assert await _status(server.port, "") == NOT_SERVING
    finally:
        await server.stop(0)
