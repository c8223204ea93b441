"""The console's one way to the data: the alert service's gRPC API, with the caller's token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from suptech.console.config import ConsoleConfig
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

__all__ = ["Access", "AlertsClient", "metadata", "open_channel"]


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def open_channel(cfg: ConsoleConfig) -> grpc.aio.Channel:
    if not cfg.alerts_ca:
        return grpc.aio.insecure_channel(cfg.alerts_addr)
    key = Path(cfg.alerts_client_key).read_bytes() if cfg.alerts_client_key else None
    cert = Path(cfg.alerts_client_cert).read_bytes() if cfg.alerts_client_cert else None
    creds = grpc.ssl_channel_credentials(Path(cfg.alerts_ca).read_bytes(), key, cert)
    options = []
    if cfg.alerts_server_name:
        options.append(("grpc.ssl_target_name_override", cfg.alerts_server_name))
    return grpc.aio.secure_channel(cfg.alerts_addr, creds, options=options)


@dataclass(frozen=True)
class Access:
    """What a credential may do, as the alert service itself answers it."""

    read: bool
    triage: bool
    decide: bool


class AlertsClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.stub = alerts_pb2_grpc.AlertServiceStub(channel)

    async def access(self, token: str) -> Access:
        """Ask the service: one read, and one triage and one decide call that it refuses either
        for want of permission or, once authorised, for the empty alert id (changing nothing).

        Raises grpc.RpcError UNAUTHENTICATED for an unknown or expired token.
        """
        md = metadata(token)
        try:
            await self.stub.ListAlerts(alerts_pb2.ListAlertsRequest(page_size=1), metadata=md)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                return Access(False, False, False)
            raise
        triage = await _allowed(self.stub.Acknowledge(alerts_pb2.AcknowledgeRequest(), metadata=md))
        decide = await _allowed(self.stub.Resolve(alerts_pb2.ResolveRequest(), metadata=md))
        return Access(True, triage, decide)


async def _allowed(call: grpc.aio.UnaryUnaryCall) -> bool:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            return False
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return True
        raise
    return True
