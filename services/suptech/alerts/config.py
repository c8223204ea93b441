"""Configuration of the alert service, from environment variables (failing fast, by name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from suptech.common.config import ConfigError, Setting, env_bool, env_float, env_int, env_str

__all__ = ["AlertsConfig", "LOOPBACK", "SETTINGS", "check_authentication", "load_config"]

LOOPBACK = "127.0.0.1"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class AlertsConfig:
    port: int = 50053
    # Empty: every interface when callers authenticate, loopback only in insecure development.
    host: str = ""
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
    # Set explicitly: kafka-python's 45 s default kept a crashed member's partitions idle that
    # long. The broker's group.min.session.timeout.ms (6 s by default) is the floor.
    consumer_session_timeout_s: float = 6.0
    consumer_heartbeat_s: float = 2.0
    # Static group membership (KIP-345): a restarted process with the same id (a pod name that
    # survives container restarts) takes its partitions back at once, without a rebalance.
    # Empty: dynamic membership. Two live processes must never share one.
    consumer_instance_id: str = ""
    # Backoff while the database is unavailable (findings are retried, never skipped).
    db_retry_initial_s: float = 0.5
    db_retry_max_s: float = 5.0
    # JSON {token: {"name", "role", "jurisdictions", "expires"}}, re-read when it changes.
    # Required unless insecure_dev is set.
    tokens_file: str = ""
    # No tokens file: every caller is an admin. Local development only; the port is then bound
    # to loopback and nothing else.
    insecure_dev: bool = False
    # How often the tokens file is checked for changes (revocations take effect within this).
    tokens_reload_s: float = 1.0
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
    # Prometheus /metrics on every interface (0 = off).
    metrics_port: int = 9466
    # Recent per-event scores kept in memory for ListEntityScores: the last so many per entity,
    # at most so many entities (least recently scored dropped), read back this far at start.
    # About 125 bytes a score: 2000 x 500 is at most ~125 MB; a score costs ~4 us to keep.
    scores_per_entity: int = 2000
    scores_entities: int = 500
    scores_lookback_s: float = 3600.0

    def bind_host(self) -> str:
        """The address the API binds: loopback only when nobody authenticates."""
        if self.host:
            return self.host
        return LOOPBACK if self.insecure_dev and not self.tokens_file else "0.0.0.0"

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


_D = AlertsConfig()

SETTINGS: tuple[Setting, ...] = (
    Setting("ALERTS_HOST", "", "API address (empty: all interfaces; loopback in insecure dev)"),
    Setting("ALERTS_PORT", _D.port, "port of the gRPC AlertService"),
    Setting("ALERTS_HEALTH_PORT", _D.health_port, "plain-text grpc.health.v1 port (TLS only)"),
    Setting("ALERTS_TLS_CERT", "", "server certificate PEM (TLS on with the key)"),
    Setting("ALERTS_TLS_KEY", "", "server private key PEM"),
    Setting("ALERTS_TLS_CLIENT_CA", "", "CA PEM: mutual TLS only, CN looked up as cert:<CN>"),
    Setting("ALERTS_DB_URL", _D.db_url, "SQLAlchemy URL (sqlite or postgresql+psycopg)"),
    Setting("KAFKA_ADDR", _D.kafka_addr, "Kafka bootstrap address, host:port"),
    Setting("SUPTECH_TOPIC_PREFIX", "", "prefix of every topic name"),
    Setting("ALERTS_CONSUMER_GROUP", _D.consumer_group, "findings consumer group"),
    Setting("ALERTS_CONSUMER_SESSION_TIMEOUT_S", _D.consumer_session_timeout_s, "its session, s"),
    Setting("ALERTS_CONSUMER_HEARTBEAT_S", _D.consumer_heartbeat_s, "its heartbeat, s"),
    Setting("ALERTS_CONSUMER_INSTANCE_ID", "", "static group membership id (a pod name)"),
    Setting("ALERTS_DB_RETRY_INITIAL_S", _D.db_retry_initial_s, "first backoff, database down"),
    Setting("ALERTS_DB_RETRY_MAX_S", _D.db_retry_max_s, "longest backoff, database down"),
    Setting("ALERTS_TOKENS_FILE", "", "JSON {token: {name, role, jurisdictions, expires}}"),
    Setting("ALERTS_INSECURE_DEV", "false", "no tokens: everyone admin, loopback only (dev)"),
    Setting("ALERTS_TOKENS_RELOAD_S", _D.tokens_reload_s, "tokens file re-read every, s"),
    Setting("ALERTS_GROUP_WINDOW_S", _D.group_window_s, "findings this close join one alert, s"),
    Setting("ALERTS_AUTO_RESOLVE_S", _D.auto_resolve_s, "quiet alert resolves itself after, s"),
    Setting("ALERTS_GROWTH_THRESHOLDS", "10,50,200", "finding counts raising a grade each"),
    Setting("ALERTS_WEBHOOK_URLS", "", "comma-separated webhook receivers"),
    Setting("ALERTS_WEBHOOK_SECRET", "", "HMAC secret signing webhooks (required with URLs)"),
    Setting("ALERTS_DEADLINE_GENERAL_S", _D.deadline_general_s, "time to acknowledge, s"),
    Setting("ALERTS_DEADLINE_SIGNIFICANT_S", _D.deadline_significant_s, "time to acknowledge, s"),
    Setting("ALERTS_DEADLINE_MAJOR_S", _D.deadline_major_s, "time to acknowledge, s"),
    Setting("ALERTS_DEADLINE_CRITICAL_S", _D.deadline_critical_s, "time to acknowledge, s"),
    Setting("ALERTS_TICK_S", _D.tick_s, "escalation / auto-resolve / gauges period, s"),
    Setting("ALERTS_STREAM_POLL_S", _D.stream_poll_s, "StreamAlerts poll for other replicas, s"),
    Setting("SUPTECH_METRICS_PORT", _D.metrics_port, "Prometheus /metrics port (0 = off)"),
    Setting("ALERTS_SCORES_PER_ENTITY", _D.scores_per_entity, "recent scores kept per entity"),
    Setting("ALERTS_SCORES_ENTITIES", _D.scores_entities, "entities whose scores are kept"),
    Setting("ALERTS_SCORES_LOOKBACK_S", _D.scores_lookback_s, "scores.v1 read back at start, s"),
)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def check_authentication(cfg: AlertsConfig) -> None:
    """Fail closed: no tokens file means no service, unless insecure development is explicit."""
    if cfg.tokens_file:
        return
    if not cfg.insecure_dev:
        raise ConfigError(
            "environment variable ALERTS_TOKENS_FILE is required: the alert service does not "
            "serve unauthenticated callers (for local development only, ALERTS_INSECURE_DEV=true "
            "serves everyone as admin on loopback)"
        )
    if cfg.host and cfg.host not in _LOOPBACK_HOSTS:
        raise ConfigError(
            f"ALERTS_INSECURE_DEV binds to loopback only: ALERTS_HOST={cfg.host!r} needs "
            "ALERTS_TOKENS_FILE"
        )


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
        consumer_session_timeout_s=env_float(
            "ALERTS_CONSUMER_SESSION_TIMEOUT_S", d.consumer_session_timeout_s, environ
        ),
        consumer_heartbeat_s=env_float(
            "ALERTS_CONSUMER_HEARTBEAT_S", d.consumer_heartbeat_s, environ
        ),
        consumer_instance_id=env_str("ALERTS_CONSUMER_INSTANCE_ID", "", environ),
        db_retry_initial_s=env_float("ALERTS_DB_RETRY_INITIAL_S", d.db_retry_initial_s, environ),
        db_retry_max_s=env_float("ALERTS_DB_RETRY_MAX_S", d.db_retry_max_s, environ),
        tokens_file=env_str("ALERTS_TOKENS_FILE", "", environ),
        insecure_dev=env_bool("ALERTS_INSECURE_DEV", False, environ),
        tokens_reload_s=env_float("ALERTS_TOKENS_RELOAD_S", d.tokens_reload_s, environ),
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
        metrics_port=env_int("SUPTECH_METRICS_PORT", d.metrics_port, environ),
        scores_per_entity=env_int("ALERTS_SCORES_PER_ENTITY", d.scores_per_entity, environ),
        scores_entities=env_int("ALERTS_SCORES_ENTITIES", d.scores_entities, environ),
        scores_lookback_s=env_float("ALERTS_SCORES_LOOKBACK_S", d.scores_lookback_s, environ),
    )
    if not 0 < cfg.consumer_heartbeat_s < cfg.consumer_session_timeout_s:
        raise ConfigError(
            "ALERTS_CONSUMER_HEARTBEAT_S must be positive and below "
            "ALERTS_CONSUMER_SESSION_TIMEOUT_S (about a third of it)"
        )
    if not 0 < cfg.db_retry_initial_s <= cfg.db_retry_max_s:
        raise ConfigError(
            "ALERTS_DB_RETRY_INITIAL_S must be positive and at most ALERTS_DB_RETRY_MAX_S"
        )
    if cfg.scores_per_entity < 1 or cfg.scores_entities < 1 or cfg.scores_lookback_s < 0:
        raise ConfigError(
            "ALERTS_SCORES_PER_ENTITY and ALERTS_SCORES_ENTITIES must be positive, "
            "ALERTS_SCORES_LOOKBACK_S at least 0"
        )
    if cfg.tokens_reload_s <= 0:
        raise ConfigError("ALERTS_TOKENS_RELOAD_S must be positive seconds")
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
    check_authentication(cfg)
    return cfg
