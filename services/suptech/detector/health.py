"""grpc.health.v1 for the Kubernetes probes of a detector worker, on the worker's own event loop.

The worker has no gRPC API, only this health port. It answers NOT_SERVING until the worker owns
partitions with its checkpoint restored, SERVING from then on, and NOT_SERVING again once a
shutdown has begun (until the port closes).
"""

from __future__ import annotations

import logging

from suptech.common.grpc_server import GrpcServer

__all__ = ["HealthPort"]

log = logging.getLogger("suptech.detector")


class HealthPort:
    """The shared gRPC server skeleton with nothing registered but health (and reflection)."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._requested_port = port
        self._server: GrpcServer | None = None
        self._ready = False
        self._stopping = False
        self.port = 0

    @property
    def serving(self) -> bool:
        return self._ready and not self._stopping

    async def start(self) -> int:
        """Bind and serve (NOT_SERVING unless already marked ready); return the bound port."""
        # Built here, not earlier: a grpc.aio server belongs to the loop that runs it (faust's).
        server = GrpcServer(
            host=self._host, port=self._requested_port, registrations=(), service_names=()
        )
        await server.start()
        self._server = server
        # GrpcServer.start reports SERVING; correct that before the loop can answer a probe.
        await self._publish()
        self.port = server.port
        log.info("detector health: grpc.health.v1 on port %d", self.port)
        return self.port

    async def mark_ready(self) -> None:
        if not self._ready:
            self._ready = True
            await self._publish()
            log.info("detector health: SERVING")

    async def begin_shutdown(self) -> None:
        if not self._stopping:
            self._stopping = True
            await self._publish()
            log.info("detector health: NOT_SERVING (shutting down)")

    async def stop(self, grace_s: float = 1.0) -> None:
        self._stopping = True
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace_s)

    async def _publish(self) -> None:
        if self._server is None:
            return
        await self._server.set_serving(self.serving)
