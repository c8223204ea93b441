"""Detector settings from environment variables; a bad value fails at start, naming it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from suptech.common.config import ConfigError, Setting, env_bool, env_float, env_int, env_str

__all__ = ["DetectorConfig", "SETTINGS"]


@dataclass(frozen=True)
class DetectorConfig:
    # Kafka bootstrap address, host:port (KAFKA_ADDR).
    kafka_addr: str = "127.0.0.1:19092"
    # Prefix of every topic name (SUPTECH_TOPIC_PREFIX), so deployments can share a broker.
    topic_prefix: str = ""
    # faust app id = Kafka consumer group (DETECTOR_APP_ID).
    app_id: str = "suptech-detector"
    # Where the engine checkpoint is kept (DETECTOR_STATE_DIR); must survive a restart.
    state_dir: Path = Path("var/detector")
    # Checkpoint at least this often (DETECTOR_CHECKPOINT_INTERVAL_S) ...
    checkpoint_interval_s: float = 30.0
    # ... or after this many events (DETECTOR_CHECKPOINT_EVENTS), whichever comes first.
    checkpoint_events: int = 200_000
    # At most this share of the wall clock goes to routine checkpoints (DETECTOR_CHECKPOINT_BUDGET):
    # one at a time, the next after cost * (1 - budget) / budget (pacing.py).
    checkpoint_budget: float = 0.2
    # How often the event-time watermark is pushed into the engine (DETECTOR_WATERMARK_INTERVAL_S).
    watermark_interval_s: float = 5.0
    # An institution quiet this long (DETECTOR_PARTITION_IDLE_S), its partition caught up, is
    # presumed to move on in event time as the wall clock does (see DetectorCore.watermark_ns).
    partition_idle_s: float = 30.0
    # faust's web server (statistics, health); off unless DETECTOR_WEB_ENABLED.
    web_enabled: bool = False
    web_port: int = 6066
    # Kafka group session timeout (DETECTOR_SESSION_TIMEOUT_S): a killed worker's partitions
    # are reassigned after this long.
    session_timeout_s: float = 10.0
    # A partition with records on the broker that delivered none this long is read again.
    stall_rewind_s: float = 30.0
    # grpc.health.v1 for Kubernetes probes (DETECTOR_HEALTH_PORT, 0 = ephemeral). All interfaces
    # by default (DETECTOR_HEALTH_HOST): the kubelet probes the pod's IP, not loopback.
    health_host: str = "0.0.0.0"
    health_port: int = 50071
    # Publish every per-event anomaly score to scores.v1 (DETECTOR_PUBLISH_SCORES).
    publish_scores: bool = True
    # The key that seals checkpoints (DETECTOR_STATE_KEY_FILE, at least 32 bytes; a Secret in
    # the chart). Unset: one is made in the state directory on first start.
    state_key_file: Path | None = None
    # Prometheus /metrics on every interface (SUPTECH_METRICS_PORT, 0 = off).
    metrics_port: int = 9465
    # Snapshots in a forked child (DETECTOR_FORK_SNAPSHOTS), so the loop never waits for a
    # pickle of the state; off, the pickle is taken on the loop (where fork does not exist).
    fork_snapshots: bool = hasattr(os, "fork")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DetectorConfig:
        d = cls()
        cfg = cls(
            kafka_addr=env_str("KAFKA_ADDR", d.kafka_addr, environ),
            topic_prefix=env_str("SUPTECH_TOPIC_PREFIX", "", environ),
            app_id=env_str("DETECTOR_APP_ID", d.app_id, environ),
            state_dir=Path(env_str("DETECTOR_STATE_DIR", str(d.state_dir), environ)),
            checkpoint_interval_s=env_float(
                "DETECTOR_CHECKPOINT_INTERVAL_S", d.checkpoint_interval_s, environ
            ),
            checkpoint_events=env_int("DETECTOR_CHECKPOINT_EVENTS", d.checkpoint_events, environ),
            checkpoint_budget=env_float("DETECTOR_CHECKPOINT_BUDGET", d.checkpoint_budget, environ),
            watermark_interval_s=env_float(
                "DETECTOR_WATERMARK_INTERVAL_S", d.watermark_interval_s, environ
            ),
            partition_idle_s=env_float("DETECTOR_PARTITION_IDLE_S", d.partition_idle_s, environ),
            web_enabled=env_bool("DETECTOR_WEB_ENABLED", d.web_enabled, environ),
            web_port=env_int("DETECTOR_WEB_PORT", d.web_port, environ),
            session_timeout_s=env_float("DETECTOR_SESSION_TIMEOUT_S", d.session_timeout_s, environ),
            stall_rewind_s=env_float("DETECTOR_STALL_REWIND_S", d.stall_rewind_s, environ),
            health_host=env_str("DETECTOR_HEALTH_HOST", d.health_host, environ),
            health_port=env_int("DETECTOR_HEALTH_PORT", d.health_port, environ),
            publish_scores=env_bool("DETECTOR_PUBLISH_SCORES", d.publish_scores, environ),
            state_key_file=_optional_path(env_str("DETECTOR_STATE_KEY_FILE", "", environ)),
            metrics_port=env_int("SUPTECH_METRICS_PORT", d.metrics_port, environ),
            fork_snapshots=env_bool("DETECTOR_FORK_SNAPSHOTS", d.fork_snapshots, environ),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if ":" not in self.kafka_addr:
            raise ConfigError(f"KAFKA_ADDR must be host:port, got {self.kafka_addr!r}")
        if self.checkpoint_interval_s <= 0:
            raise ConfigError("DETECTOR_CHECKPOINT_INTERVAL_S must be positive")
        if self.checkpoint_events <= 0:
            raise ConfigError("DETECTOR_CHECKPOINT_EVENTS must be positive")
        if not 0 < self.checkpoint_budget <= 1:
            raise ConfigError("DETECTOR_CHECKPOINT_BUDGET must be in (0, 1]")
        if self.watermark_interval_s <= 0:
            raise ConfigError("DETECTOR_WATERMARK_INTERVAL_S must be positive")
        if self.partition_idle_s <= 0:
            raise ConfigError("DETECTOR_PARTITION_IDLE_S must be positive")
        if self.stall_rewind_s <= 0:
            raise ConfigError("DETECTOR_STALL_REWIND_S must be positive")
        if self.session_timeout_s < 6:
            # Kafka's default group.min.session.timeout.ms is 6 s.
            raise ConfigError("DETECTOR_SESSION_TIMEOUT_S must be at least 6")
        if not 0 <= self.web_port < 65536:
            raise ConfigError(f"DETECTOR_WEB_PORT out of range: {self.web_port}")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"SUPTECH_METRICS_PORT out of range: {self.metrics_port}")
        if self.fork_snapshots and not hasattr(os, "fork"):
            raise ConfigError("DETECTOR_FORK_SNAPSHOTS: this platform cannot fork")
        if not 0 <= self.health_port < 65536:
            raise ConfigError(f"DETECTOR_HEALTH_PORT out of range: {self.health_port}")

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / f"{self.app_id}.checkpoint"

    @property
    def state_key_path(self) -> Path:
        return self.state_key_file or self.state_dir / "state.key"


_D = DetectorConfig()

SETTINGS: tuple[Setting, ...] = (
    Setting("KAFKA_ADDR", _D.kafka_addr, "Kafka bootstrap address, host:port"),
    Setting("SUPTECH_TOPIC_PREFIX", "", "prefix of every topic name"),
    Setting("DETECTOR_APP_ID", _D.app_id, "faust app id = Kafka consumer group"),
    Setting("DETECTOR_STATE_DIR", _D.state_dir, "where the engine checkpoint is kept"),
    Setting("DETECTOR_CHECKPOINT_INTERVAL_S", _D.checkpoint_interval_s, "checkpoint every, s"),
    Setting("DETECTOR_CHECKPOINT_EVENTS", _D.checkpoint_events, "... or after this many events"),
    Setting(
        "DETECTOR_CHECKPOINT_BUDGET",
        _D.checkpoint_budget,
        "at most this share of the wall clock for routine checkpoints",
    ),
    Setting(
        "DETECTOR_WATERMARK_INTERVAL_S", _D.watermark_interval_s, "event-time watermark tick, s"
    ),
    Setting(
        "DETECTOR_PARTITION_IDLE_S",
        _D.partition_idle_s,
        "quiet this long, an institution is presumed to move on at wall speed, s",
    ),
    Setting("DETECTOR_WEB_ENABLED", "false", "faust's own web server"),
    Setting("DETECTOR_WEB_PORT", _D.web_port, "its port"),
    Setting("DETECTOR_SESSION_TIMEOUT_S", _D.session_timeout_s, "Kafka group session timeout, s"),
    Setting(
        "DETECTOR_STALL_REWIND_S",
        _D.stall_rewind_s,
        "a partition with records on the broker that delivered none this long is read again, s",
    ),
    Setting("DETECTOR_HEALTH_HOST", _D.health_host, "address of grpc.health.v1"),
    Setting("DETECTOR_HEALTH_PORT", _D.health_port, "port of grpc.health.v1 (0 = ephemeral)"),
    Setting("DETECTOR_PUBLISH_SCORES", "true", "publish every anomaly score to scores.v1"),
    Setting("DETECTOR_STATE_KEY_FILE", "", "key sealing checkpoints (unset: made in state dir)"),
    Setting("SUPTECH_METRICS_PORT", _D.metrics_port, "Prometheus /metrics port (0 = off)"),
    Setting(
        "DETECTOR_FORK_SNAPSHOTS",
        str(_D.fork_snapshots).lower(),
        "take state snapshots in a forked child, off the event loop",
    ),
)


def _optional_path(raw: str) -> Path | None:
    return Path(raw) if raw else None
