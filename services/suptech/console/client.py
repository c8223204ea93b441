"""The console's one way to the data: the alert service's gRPC API, with the caller's token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from suptech.console.config import ConsoleConfig
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

__all__ = ["Access", "AlertsClient", "entity_scores", "metadata", "open_channel"]

log = logging.getLogger(__name__)

# The chart shows the entity this long before the alert's first finding and after its last.
SCORES_MARGIN_NS = 3600 * 10**9
SCORES_LIMIT = 2000


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


async def entity_scores(
    stub: alerts_pb2_grpc.AlertServiceStub,
    alert: alerts_pb2.Alert,
    md: tuple[tuple[str, str], ...],
) -> list[findings_pb2.AnomalyScore]:
    """The alerted entity's per-event scores around the alert; none when the service has none
    or cannot say (an older service, scores not followed): the page falls back to the findings."""
    times = [f.event_time.ToNanoseconds() for f in alert.findings if f.HasField("event_time")]
    times = times or [t.ToNanoseconds() for t in (alert.first_seen, alert.last_seen)]
    req = alerts_pb2.ListEntityScoresRequest(
        institution_id=alert.institution_id,
        entity_kind=alert.entity_kind,
        entity_id=alert.entity_id,
        limit=SCORES_LIMIT,
    )
    req.from_time.FromNanoseconds(max(min(times) - SCORES_MARGIN_NS, 0))
    req.to_time.FromNanoseconds(max(times) + SCORES_MARGIN_NS)
    try:
        resp = await stub.ListEntityScores(req, metadata=md)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise
        log.warning("ListEntityScores failed (%s): charting the findings", exc.code().name)
        return []
    return list(resp.scores)
