"""The gateway's Prometheus metrics: what an SRE watches of ingest (served by ``__main__``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from suptech.common.metrics import counter, histogram, new_registry

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """Counted once per batch, never per event: the hot path stays free of instrumentation."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = new_registry() if registry is None else registry
        r = self.registry
        self.events = counter(
            r,
            "gateway_events",
            "Events received in batches, by outcome (accepted, rejected) and reject reason",
            ("outcome", "reason"),
        )
        self.batches = counter(
            r,
            "gateway_batches",
            "Batches by outcome (acked, invalid_argument, resource_exhausted, unavailable, "
            "kafka_unavailable)",
            ("outcome",),
        )
        self.ingest_seconds = histogram(
            r, "gateway_ingest_seconds", "From a batch received to its ack, seconds"
        )
        self.produce_seconds = histogram(
            r, "gateway_kafka_produce_seconds", "From a batch handed to Kafka to its confirmation"
        )
        # The children every acked batch touches, looked up once (a labels() call is ~5 µs).
        self._accepted = self.events.labels("accepted", "")
        self._acked = self.batches.labels("acked")

    def batch(self, outcome: str) -> None:
        self.batches.labels(outcome).inc()

    def acked(self, accepted: int, refused: dict[str, int], ingest_s: float) -> None:
        """One acknowledged batch: its events by outcome and its end-to-end time."""
        self._acked.inc()
        self._accepted.inc(accepted)
        for reason, n in refused.items():
            self.events.labels("rejected", reason).inc(n)
        self.ingest_seconds.observe(ingest_s)
