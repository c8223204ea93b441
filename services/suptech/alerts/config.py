"""Configuration of the alert service, from environment variables (failing fast, by name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from suptech.common.config import ConfigError, env_float, env_int, env_str

__all__ = ["AlertsConfig", "load_config"]


@dataclass(frozen=True)
class AlertsConfig:
    port: int = 50053
    host: str = "0.0.0.0"
    # TLS for the API port: PEM files. A client CA makes it mutual-TLS only (grpc's Python API
    # cannot ask for a certificate optionally); the certificate's CN is looked up in the tokens
    # file as "cert:<CN>".
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Plain-text grpc.health.v1 only, served when TLS is on: Kubernetes probes speak no TLS.
    health_port: int = 50054
    db_url: str = "sqlite:///.state/alerts.db"
    kafka_addr: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    consumer_group: str = "suptech-alerts"
    # JSON {token: {"name", "role", "jurisdictions"}}; empty means no authentication (dev only).
    tokens_file: str = ""
    # Findings of one group within this much event time join the same alert.
    group_window_s: float = 6 * 3600
    # An alert without a new finding for this long (event time) resolves itself.
    auto_resolve_s: float = 24 * 3600
    # Finding counts at which a growing alert goes up one grade each.
    growth_thresholds: tuple[int, ...] = (10, 50, 200)
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = ""
    # Seconds to acknowledge, per grade: the one place these defaults live (issue 4); the store
    # and escalation both read them from here. Env: ALERTS_DEADLINE_{GRADE}_S.
    deadline_general_s: float = 24 * 3600
    deadline_significant_s: float = 4 * 3600
    deadline_major_s: float = 2 * 3600
    deadline_critical_s: float = 3600
    # Period of the escalation / auto-resolve ticker and of the outbox dispatchers.
    tick_s: float = 5.0
    outbox_poll_s: float = 0.2
    # StreamAlerts is woken by this process's commits; it polls this often for other replicas'.
    stream_poll_s: float = 0.5

    def deadlines_by_grade(self) -> dict[int, float]:
        """Seconds to acknowledge by Grade enum value (general 1 .. critical 4)."""
        return {
            1: self.deadline_general_s,
            2: self.deadline_significant_s,
            3: self.deadline_major_s,
            4: self.deadline_critical_s,
        }

    def deadline_s(self, grade: int) -> float:
        """Seconds allowed to acknowledge an alert of ``grade``; unknown grades get general's."""
        return self.deadlines_by_grade().get(grade, self.deadline_general_s)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def load_config(environ: Mapping[str, str] | None = None) -> AlertsConfig:
    d = AlertsConfig()
    thresholds_raw = env_str("ALERTS_GROWTH_THRESHOLDS", "10,50,200", environ)
    try:
        thresholds = tuple(sorted(int(x) for x in _csv(thresholds_raw)))
    except ValueError:
        raise ConfigError(
            "environment variable ALERTS_GROWTH_THRESHOLDS must be integers, "
            f"got {thresholds_raw!r}"
        ) from None
    cfg = AlertsConfig(
        port=env_int("ALERTS_PORT", d.port, environ),
        host=env_str("ALERTS_HOST", d.host, environ),
        tls_cert=env_str("ALERTS_TLS_CERT", "", environ),
        tls_key=env_str("ALERTS_TLS_KEY", "", environ),
        tls_client_ca=env_str("ALERTS_TLS_CLIENT_CA", "", environ),
        health_port=env_int("ALERTS_HEALTH_PORT", d.health_port, environ),
        db_url=env_str("ALERTS_DB_URL", d.db_url, environ),
        kafka_addr=env_str("KAFKA_ADDR", d.kafka_addr, environ),
        topic_prefix=env_str("SUPTECH_TOPIC_PREFIX", "", environ),
        consumer_group=env_str("ALERTS_CONSUMER_GROUP", d.consumer_group, environ),
        tokens_file=env_str("ALERTS_TOKENS_FILE", "", environ),
        group_window_s=env_float("ALERTS_GROUP_WINDOW_S", d.group_window_s, environ),
        auto_resolve_s=env_float("ALERTS_AUTO_RESOLVE_S", d.auto_resolve_s, environ),
        growth_thresholds=thresholds,
        webhook_urls=_csv(env_str("ALERTS_WEBHOOK_URLS", "", environ)),
        webhook_secret=env_str("ALERTS_WEBHOOK_SECRET", "", environ),
        deadline_general_s=env_float("ALERTS_DEADLINE_GENERAL_S", d.deadline_general_s, environ),
        deadline_significant_s=env_float(
            "ALERTS_DEADLINE_SIGNIFICANT_S", d.deadline_significant_s, environ
        ),
        deadline_major_s=env_float("ALERTS_DEADLINE_MAJOR_S", d.deadline_major_s, environ),
        deadline_critical_s=env_float("ALERTS_DEADLINE_CRITICAL_S", d.deadline_critical_s, environ),
        tick_s=env_float("ALERTS_TICK_S", d.tick_s, environ),
        stream_poll_s=env_float("ALERTS_STREAM_POLL_S", d.stream_poll_s, environ),
    )
    if cfg.group_window_s <= 0 or cfg.auto_resolve_s <= 0:
        raise ConfigError("ALERTS_GROUP_WINDOW_S and ALERTS_AUTO_RESOLVE_S must be positive")
    for name, seconds in (
        ("CRITICAL", cfg.deadline_critical_s),
        ("MAJOR", cfg.deadline_major_s),
        ("SIGNIFICANT", cfg.deadline_significant_s),
        ("GENERAL", cfg.deadline_general_s),
    ):
        if not seconds > 0:
            raise ConfigError(f"ALERTS_DEADLINE_{name}_S must be positive seconds, got {seconds}")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("ALERTS_TLS_CERT and ALERTS_TLS_KEY must be set together")
    if cfg.tls_client_ca and not cfg.tls_cert:
        raise ConfigError("ALERTS_TLS_CLIENT_CA needs ALERTS_TLS_CERT and ALERTS_TLS_KEY")
    if cfg.tls_client_ca and not cfg.tokens_file:
        raise ConfigError(
            "ALERTS_TLS_CLIENT_CA needs ALERTS_TOKENS_FILE: client certificates are looked up there"
        )
    if cfg.tls_cert and cfg.health_port and cfg.health_port == cfg.port:
        raise ConfigError("ALERTS_HEALTH_PORT must differ from ALERTS_PORT when TLS is on")
    if cfg.webhook_urls and not cfg.webhook_secret:
        raise ConfigError("environment variable ALERTS_WEBHOOK_SECRET is required with webhooks")
    return cfg
