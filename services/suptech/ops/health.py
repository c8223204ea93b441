"""Readiness and liveness of suptech's gRPC services, as ``grpc.health.v1`` reports them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from suptech.common.grpc_server import LIVENESS_SERVICE

__all__ = ["Target", "ServiceStatus", "TargetHealth", "parse_target", "check_targets", "render"]

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
UNREACHABLE = "UNREACHABLE"
# The server answers but does not know the service name (NOT_FOUND): not a suptech server?
UNKNOWN_SERVICE = "UNKNOWN_SERVICE"


@dataclass(frozen=True)
class Target:
    name: str
    address: str


@dataclass(frozen=True)
class ServiceStatus:
    status: str
    latency_ms: float
    error: str = ""


@dataclass(frozen=True)
class TargetHealth:
    target: Target
    # Overall status (service ""): what a readiness probe asks.
    ready: ServiceStatus
    # suptech.liveness: what a liveness probe asks.
    live: ServiceStatus

    @property
    def healthy(self) -> bool:
        return self.ready.status == SERVING and self.live.status == SERVING

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.target.name,
            "address": self.target.address,
            "healthy": self.healthy,
            "ready": asdict(self.ready),
            "live": asdict(self.live),
        }


def parse_target(raw: str) -> Target:
    """``NAME=host:port`` (or bare ``host:port``, named after itself)."""
    name, sep, address = raw.partition("=")
    if not sep:
        name, address = raw, raw
    host, colon, port = address.rpartition(":")
    if not name or not colon or not host or not port.isdigit():
        raise ValueError(f"target must be NAME=host:port, got {raw!r}")
    return Target(name, address)


def _check(channel: grpc.Channel, service: str, timeout_s: float) -> ServiceStatus:
    started = time.perf_counter()
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    except grpc.RpcError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        code = exc.code()
        status = UNKNOWN_SERVICE if code == grpc.StatusCode.NOT_FOUND else UNREACHABLE
        return ServiceStatus(status, round(elapsed, 2), f"{code.name}: {exc.details()}")
    elapsed = (time.perf_counter() - started) * 1000
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return ServiceStatus(name, round(elapsed, 2))


def check_target(target: Target, timeout_s: float) -> TargetHealth:
    with grpc.insecure_channel(target.address) as channel:
        ready = _check(channel, "", timeout_s)
        if ready.status == UNREACHABLE:
            # Same channel, same outcome: do not wait a second timeout.
            return TargetHealth(target, ready, ready)
        return TargetHealth(target, ready, _check(channel, LIVENESS_SERVICE, timeout_s))


def check_targets(targets: list[Target], timeout_s: float) -> list[TargetHealth]:
    """Check every target concurrently: one dead service costs one timeout, not one each."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(len(targets), 16)) as pool:
        return list(pool.map(lambda t: check_target(t, timeout_s), targets))


def render(results: list[TargetHealth]) -> str:
    lines = [f"{'TARGET':<16} {'ADDRESS':<24} {'READY':<16} {'LIVE':<16} LATENCY"]
    for r in results:
        latency = f"{r.ready.latency_ms:.1f} ms"
        lines.append(
            f"{r.target.name:<16} {r.target.address:<24} {r.ready.status:<16} "
            f"{r.live.status:<16} {latency}"
        )
        for s in (r.ready, r.live):
            if s.error:
                lines.append(f"  {r.target.name}: {s.error}")
                break
    bad = sum(not r.healthy for r in results)
    lines.append(f"{len(results) - bad}/{len(results)} healthy")
    return "\n".join(lines)
