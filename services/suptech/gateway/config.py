"""Gateway configuration, read once from environment variables; every error names its variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suptech.common.config import ConfigError, Setting, env_float, env_int, env_str
from suptech.gateway.forward import MAX_EVENT_BYTES_CEILING
from suptech.gateway.registry import Registry, RegistryError, read_entries

__all__ = ["GatewayConfig", "SETTINGS", "load_config", "load_tokens"]


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    # Plain-text grpc.health.v1 only, served when TLS is on: kubelet probes speak no TLS.
    health_port: int = 50052
    kafka_addr: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    # The registry of institutions (gateway/registry.py's format: token or "cert:<identity>" ->
    # institution id or {"institution", "expires"}), as read at start or given in-process.
    tokens: Mapping[str, Any] = field(default_factory=dict)
    # Its file, re-read when it changes (checked at most every tokens_reload_s): revocations and
    # new institutions take effect without a restart. Empty: ``tokens`` stay as given.
    tokens_file: str = ""
    tokens_reload_s: float = 5.0
    tls_cert: str | None = None
    tls_key: str | None = None
    # When set, every caller must present a certificate signed by this CA (mutual TLS).
    tls_client_ca: str | None = None
    rate_limit_eps: float = 200_000.0
    rate_limit_burst: float = 200_000.0
    max_batch_events: int = 5000
    # Serialised size of one event: a larger one is refused alone (TOO_LARGE).
    max_event_bytes: int = 256 * 1024
    max_skew_s: float = 300.0
    # The SDK spools through long outages, so old events are still legitimate.
    max_age_s: float = 30 * 24 * 3600.0
    produce_timeout_s: float = 10.0
    grace_s: float = 10.0
    # Prometheus /metrics on every interface (0 = off).
    metrics_port: int = 9464

    def __post_init__(self) -> None:
        if not self.tokens and not self.tokens_file:
            # Client certificates too are only accepted when registered there.
            raise ConfigError(
                "no institution is registered: set GATEWAY_TOKENS_FILE (tokens and "
                '"cert:<identity>" entries; GATEWAY_TLS_CLIENT_CA alone admits nobody)'
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be set together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("GATEWAY_TLS_CLIENT_CA needs GATEWAY_TLS_CERT and GATEWAY_TLS_KEY")
        if self.tls_cert and self.health_port and self.health_port == self.port:
            raise ConfigError("GATEWAY_HEALTH_PORT must differ from GATEWAY_PORT when TLS is on")
        checks = (
            ("GATEWAY_PORT", 0 <= self.port <= 65535),
            ("GATEWAY_HEALTH_PORT", 0 <= self.health_port <= 65535),
            ("GATEWAY_RATE_LIMIT_EPS", self.rate_limit_eps > 0),
            ("GATEWAY_MAX_BATCH_EVENTS", self.max_batch_events > 0),
            ("GATEWAY_MAX_EVENT_BYTES", 1024 <= self.max_event_bytes <= MAX_EVENT_BYTES_CEILING),
            # A batch larger than the bucket could never pass.
            ("GATEWAY_RATE_LIMIT_BURST", self.rate_limit_burst >= self.max_batch_events),
            ("GATEWAY_MAX_SKEW_S", self.max_skew_s >= 0),
            ("GATEWAY_MAX_AGE_S", self.max_age_s > 0),
            ("GATEWAY_PRODUCE_TIMEOUT_S", self.produce_timeout_s >= 1),
            ("GATEWAY_GRACE_S", self.grace_s >= 0),
            ("GATEWAY_TOKENS_RELOAD_S", self.tokens_reload_s > 0),
            ("SUPTECH_METRICS_PORT", 0 <= self.metrics_port <= 65535),
        )
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"environment variable {name} is out of range")


_D = GatewayConfig(tokens={"-": "-"})

SETTINGS: tuple[Setting, ...] = (
    Setting("GATEWAY_HOST", _D.host, "address the gRPC ingest API binds"),
    Setting("GATEWAY_PORT", _D.port, "port of the gRPC ingest API"),
    Setting("GATEWAY_HEALTH_PORT", _D.health_port, "plain-text grpc.health.v1 port (TLS only)"),
    Setting("KAFKA_ADDR", _D.kafka_addr, "Kafka bootstrap address, host:port"),
    Setting("SUPTECH_TOPIC_PREFIX", "", "prefix of every topic name"),
    Setting("GATEWAY_TOKENS_FILE", "", 'registry, JSON {"<token>"|"cert:<id>": "<institution>"}'),
    Setting("GATEWAY_TOKENS_RELOAD_S", _D.tokens_reload_s, "tokens file re-read every, s"),
    Setting("GATEWAY_TLS_CERT", "", "server certificate PEM (TLS on with the key)"),
    Setting("GATEWAY_TLS_KEY", "", "server private key PEM"),
    Setting("GATEWAY_TLS_CLIENT_CA", "", "CA PEM: callers must present a certificate (mTLS)"),
    Setting("GATEWAY_RATE_LIMIT_EPS", _D.rate_limit_eps, "events/s allowed per institution"),
    Setting("GATEWAY_RATE_LIMIT_BURST", "= EPS", "token-bucket size per institution, events"),
    Setting("GATEWAY_MAX_BATCH_EVENTS", _D.max_batch_events, "most events in one batch"),
    Setting("GATEWAY_MAX_EVENT_BYTES", _D.max_event_bytes, "largest serialised event, bytes"),
    Setting("GATEWAY_MAX_SKEW_S", _D.max_skew_s, "how far in the future an event may be, s"),
    Setting("GATEWAY_MAX_AGE_S", _D.max_age_s, "how old an event may be, s"),
    Setting("GATEWAY_PRODUCE_TIMEOUT_S", _D.produce_timeout_s, "wait for Kafka's ack, s"),
    Setting("GATEWAY_GRACE_S", _D.grace_s, "drain time for in-flight batches at SIGTERM, s"),
    Setting("SUPTECH_METRICS_PORT", _D.metrics_port, "Prometheus /metrics port (0 = off)"),
)


def load_tokens(path: str) -> dict[str, Any]:
    """Read and validate the registry (see :mod:`suptech.gateway.registry`); raise
    :class:`ConfigError` naming GATEWAY_TOKENS_FILE when it is malformed or empty."""
    where = f"GATEWAY_TOKENS_FILE ({path})"
    try:
        entries = read_entries(path, where)
        Registry.from_entries(entries, where)
    except RegistryError as e:
        raise ConfigError(str(e)) from None
    if not entries:
        raise ConfigError(f'{where}: must be a non-empty object {{"<token>": "<institution_id>"}}')
    return entries


def load_config(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    tokens_file = env_str("GATEWAY_TOKENS_FILE", "", environ)
    eps = env_float("GATEWAY_RATE_LIMIT_EPS", 200_000.0, environ)
    return GatewayConfig(
        host=env_str("GATEWAY_HOST", "127.0.0.1", environ),
        port=env_int("GATEWAY_PORT", 50051, environ),
        health_port=env_int("GATEWAY_HEALTH_PORT", 50052, environ),
        kafka_addr=env_str("KAFKA_ADDR", "127.0.0.1:19092", environ),
        topic_prefix=env_str("SUPTECH_TOPIC_PREFIX", "", environ),
        tokens=load_tokens(tokens_file) if tokens_file else {},
        tokens_file=tokens_file,
        tokens_reload_s=env_float("GATEWAY_TOKENS_RELOAD_S", 5.0, environ),
        tls_cert=env_str("GATEWAY_TLS_CERT", "", environ) or None,
        tls_key=env_str("GATEWAY_TLS_KEY", "", environ) or None,
        tls_client_ca=env_str("GATEWAY_TLS_CLIENT_CA", "", environ) or None,
        rate_limit_eps=eps,
        rate_limit_burst=env_float("GATEWAY_RATE_LIMIT_BURST", eps, environ),
        max_batch_events=env_int("GATEWAY_MAX_BATCH_EVENTS", 5000, environ),
        max_event_bytes=env_int("GATEWAY_MAX_EVENT_BYTES", 256 * 1024, environ),
        max_skew_s=env_float("GATEWAY_MAX_SKEW_S", 300.0, environ),
        max_age_s=env_float("GATEWAY_MAX_AGE_S", 30 * 24 * 3600.0, environ),
        produce_timeout_s=env_float("GATEWAY_PRODUCE_TIMEOUT_S", 10.0, environ),
        grace_s=env_float("GATEWAY_GRACE_S", 10.0, environ),
        metrics_port=env_int("SUPTECH_METRICS_PORT", 9464, environ),
    )
