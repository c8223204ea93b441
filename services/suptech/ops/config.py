"""Configuration of ``suptech ops``, from environment variables (failing fast, by name).

The consumer group ids are the services' own settings, read from the same variables the services
read (``DETECTOR_APP_ID``, ``ALERTS_CONSUMER_GROUP``) so that one environment describes both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from suptech.common.config import Setting, env_float, env_str

__all__ = ["OpsConfig", "SETTINGS", "load_config"]


@dataclass(frozen=True)
class OpsConfig:
    kafka_addr: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    # The detector's faust app id is its Kafka consumer group.
    detector_group: str = "suptech-detector"
    # The alert service's findings consumer group.
    alerts_group: str = "suptech-alerts"
    # Upper bound of each broker or gRPC request, so that a dead dependency fails the command
    # instead of hanging the Kubernetes job that runs it.
    timeout_s: float = 10.0
    # health --kube: where the Helm release runs (scripts/kind.sh's defaults), which kubeconfig
    # context to use ("" = the current one) and which kubeconfig files (the standard variable).
    kube_namespace: str = "suptech"
    kube_release: str = "suptech"
    kube_context: str = ""
    kubeconfig: str = "~/.kube/config"

    def suptech_groups(self) -> tuple[str, ...]:
        return (self.detector_group, self.alerts_group)


_D = OpsConfig()

SETTINGS: tuple[Setting, ...] = (
    Setting("KAFKA_ADDR", _D.kafka_addr, "Kafka bootstrap address, host:port"),
    Setting("SUPTECH_TOPIC_PREFIX", "", "prefix of every topic name"),
    Setting("DETECTOR_APP_ID", _D.detector_group, "the detector's consumer group"),
    Setting("ALERTS_CONSUMER_GROUP", _D.alerts_group, "the alert service's consumer group"),
    Setting("OPS_TIMEOUT_S", _D.timeout_s, "upper bound of each broker or gRPC request, s"),
    Setting("OPS_KUBE_NAMESPACE", _D.kube_namespace, "health --kube: the release's namespace"),
    Setting("OPS_KUBE_RELEASE", _D.kube_release, "health --kube: the Helm release name"),
    Setting("OPS_KUBE_CONTEXT", "", "health --kube: kubeconfig context (empty: current)"),
    Setting("KUBECONFIG", _D.kubeconfig, "health --kube: kubeconfig file(s), ':'-separated"),
)


def load_config(environ: Mapping[str, str] | None = None) -> OpsConfig:
    d = OpsConfig()
    return OpsConfig(
        kafka_addr=env_str("KAFKA_ADDR", d.kafka_addr, environ),
        topic_prefix=env_str("SUPTECH_TOPIC_PREFIX", "", environ),
        detector_group=env_str("DETECTOR_APP_ID", d.detector_group, environ),
        alerts_group=env_str("ALERTS_CONSUMER_GROUP", d.alerts_group, environ),
        timeout_s=env_float("OPS_TIMEOUT_S", d.timeout_s, environ),
        kube_namespace=env_str("OPS_KUBE_NAMESPACE", d.kube_namespace, environ),
        kube_release=env_str("OPS_KUBE_RELEASE", d.kube_release, environ),
        kube_context=env_str("OPS_KUBE_CONTEXT", "", environ),
        kubeconfig=env_str("KUBECONFIG", d.kubeconfig, environ),
    )
