"""The detector's Prometheus metrics: throughput, findings, state held, and how far behind it is.

Set on faust's loop (the agent and the watermark timer) and read by the metrics thread; a gauge
set every watermark tick is at most that old when scraped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from suptech.common.metrics import counter, gauge, new_registry
from suptech.v1 import findings_pb2

__all__ = ["DetectorMetrics", "entity_stats"]

# Names of engine stats() entries that are running totals, not things held in state.
_TOTAL_WORDS = (
    "evicted",
    "processed",
    "skipped",
    "emitted",
    "coalesced",
    "applied",
    "ignored",
    "muted",
    "folded",
    "findings",
)


def entity_stats(stats: Mapping[str, int]) -> dict[str, int]:
    """The entries of ``DetectionEngine.stats()`` that count what the engine holds (actors,
    systems, open conditions, remembered event ids): the size of the state to checkpoint."""
    return {k: v for k, v in stats.items() if not any(w in k for w in _TOTAL_WORDS)}


def _family(finding: findings_pb2.Finding) -> str:
    return findings_pb2.Family.Name(finding.family).removeprefix("FAMILY_").lower()


class DetectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = new_registry() if registry is None else registry
        r = self.registry
        self.events = counter(r, "detector_events", "Telemetry events processed (rate = events/s)")
        self.findings = counter(
            r, "detector_findings", "Findings published, by family", ("family",)
        )
        self.dead_letters = counter(
            r, "detector_dead_letters", "Records dead-lettered, by reason", ("reason",)
        )
        self.entities = gauge(
            r, "detector_state_entities", "Entities the engine holds, by kind", ("kind",)
        )
        self.checkpoint_bytes = gauge(
            r, "detector_checkpoint_bytes", "Size of the last checkpoint written (the state)"
        )
        self.rewinds = counter(
            r,
            "detector_partition_rewinds",
            "Partitions sought back because the consumer skipped records (see continuity.py)",
        )
        self.retention_gaps = counter(
            r,
            "detector_retention_gaps",
            "Gaps accepted because retention deleted the records before they were read",
        )
        self.watermark_lag = gauge(
            r,
            "detector_watermark_lag_seconds",
            "Wall clock minus the event-time watermark (silence detection waits this long)",
        )
        self.consumer_lag = gauge(
            r,
            "detector_consumer_lag",
            "Records on the broker not yet processed, per telemetry partition",
            ("topic", "partition"),
        )
        for family in ("data_leakage", "it_autonomy", "sandbox"):
            self.findings.labels(family)

    def published(self, finding: findings_pb2.Finding) -> None:
        self.findings.labels(_family(finding)).inc()

    def refresh(self, stats: Mapping[str, int], watermark_ns: int) -> None:
        """From the watermark timer: the engine's state size and the watermark's lag."""
        for kind, n in entity_stats(stats).items():
            self.entities.labels(kind).set(n)
        if watermark_ns > 0:
            self.watermark_lag.set(max(0.0, time.time() - watermark_ns / 1e9))

    def lag(self, topic: str, partition: int, records: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(max(0, records))
