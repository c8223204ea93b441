"""The one async gRPC server skeleton every suptech service uses.

Shape of grpc/grpc ``examples/python``: ``grpc.aio.server()``, the standard health service,
reflection, and a graceful stop that lets in-flight calls finish before the port closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

__all__ = ["GrpcServer", "ServerTLS", "run_until_signal", "LIVENESS_SERVICE"]

# Health "service" a liveness probe asks: SERVING from start until shutdown, whatever the
# readiness of the process (a gateway whose Kafka is down is not ready, but restarting it helps
# nobody). Readiness probes ask the overall status ("").
LIVENESS_SERVICE = "suptech.liveness"

log = logging.getLogger(__name__)

# A registration adds one servicer: ``lambda s: add_FooServicer_to_server(x, s)``.
Registration = Callable[[grpc.aio.Server], None]


class ServerTLS:
    """Server certificate, key and (for mutual TLS) the CA that signs client certificates."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, client_ca_pem: bytes | None) -> None:
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.client_ca_pem = client_ca_pem

    @classmethod
    def from_files(cls, cert: str, key: str, client_ca: str | None) -> ServerTLS:
        def read(p: str) -> bytes:
            with open(p, "rb") as f:
                return f.read()

        return cls(read(cert), read(key), read(client_ca) if client_ca else None)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.client_ca_pem,
            # grpc's Python API can only require a client certificate or not ask for one: with a
            # client CA configured the port is mutual-TLS only; without it, callers use tokens.
            require_client_auth=self.client_ca_pem is not None,
        )


class GrpcServer:
    """An async gRPC server with health and reflection, started and stopped by its owner."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registrations: Sequence[Registration],
        service_names: Sequence[str],
        tls: ServerTLS | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        max_message_bytes: int = 8 * 1024 * 1024,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._server = grpc.aio.server(
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
                *options,
            ],
        )
        for register in registrations:
            register(self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        address = f"{host}:{port}"
        if tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, tls.credentials())
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC server to {address}")

    async def start(self) -> None:
        await self._server.start()
        for name in ("", LIVENESS_SERVICE, *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC server listening on port %d", self.port)

    async def set_serving(self, serving: bool) -> None:
        """Report every service SERVING or NOT_SERVING (readiness follows a dependency's state)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self._service_names):
            await self._health.set(name, status)

    async def begin_shutdown(self) -> None:
        """Report NOT_SERVING for everything, liveness included, from now on."""
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Report NOT_SERVING, refuse new calls, and let running ones finish within ``grace_s``."""
        await self.begin_shutdown()
        await self._server.stop(grace_s)

    async def wait(self) -> None:
        await self._server.wait_for_termination()


async def run_until_signal(
    server: GrpcServer, on_stop: Callable[[], Any] | None = None, grace_s: float = 10.0
) -> None:
    """Run ``server`` until SIGTERM or SIGINT, then stop it gracefully and call ``on_stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("signal received: draining in-flight calls (grace %.0fs)", grace_s)
    await server.stop(grace_s)
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
