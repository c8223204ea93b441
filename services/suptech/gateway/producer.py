"""Writing accepted telemetry to Kafka: one record per batch and topic, confirmed by all replicas.

kafka-python's producer is blocking and thread-safe; every blocking call runs in a worker thread
so the gRPC event loop keeps serving other institutions while Kafka confirms.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.codec import has_lz4

from suptech.common.bundles import PAYLOAD_KINDS, encode_bundle, topic_spec_for
from suptech.common.topics import ensure_topics, topic_name
from suptech.gateway.forward import bundle_event_fields, encode_bundle_head
from suptech.v1 import telemetry_pb2

__all__ = ["ProduceError", "TelemetryProducer", "MAX_RECORD_BYTES"]

log = logging.getLogger(__name__)

# Below the broker's default message.max.bytes (1 MiB): a larger bundle is split in halves so a
# big batch can never become a record the broker refuses forever.
MAX_RECORD_BYTES = 900 * 1024
# Small: it adds latency to every ack, and batches already group events.
LINGER_MS = 2


class ProduceError(Exception):
    """Kafka did not confirm the batch; nothing may be acknowledged."""


def _bundles(
    institution_id: str,
    batch_id: str,
    received_ns: int,
    events: Sequence[telemetry_pb2.TelemetryEnvelope],
) -> list[bytes]:
    value = encode_bundle(institution_id, batch_id, received_ns, events)
    if len(value) <= MAX_RECORD_BYTES or len(events) == 1:
        return [value]
    half = len(events) // 2
    return _bundles(institution_id, batch_id, received_ns, events[:half]) + _bundles(
        institution_id, batch_id, received_ns, events[half:]
    )


class TelemetryProducer:
    def __init__(self, bootstrap: str, topic_prefix: str, timeout_s: float) -> None:
        self._bootstrap = bootstrap
        self._prefix = topic_prefix
        self._timeout_s = timeout_s
        self._topics = {
            kind: topic_name(topic_spec_for(kind), topic_prefix) for kind in PAYLOAD_KINDS
        }
        self._lock = threading.Lock()
        self._producer: Any = None
        # Only the health monitor's thread uses it.
        self._admin: Any = None

    def _config(self) -> dict[str, Any]:
        timeout_ms = int(self._timeout_s * 1000)
        return {
            "bootstrap_servers": self._bootstrap,
            "client_id": "suptech-gateway",
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": "lz4" if has_lz4() else "gzip",
            "linger_ms": LINGER_MS,
            "max_request_size": 1024 * 1024,
            # Topics come from suptech.common.topics with their declared partitions, never from
            # the broker's defaults.
            "allow_auto_create_topics": False,
            # Every wait is bounded by the produce timeout, so a call fails instead of hanging.
            "bootstrap_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "delivery_timeout_ms": timeout_ms,
            "request_timeout_ms": max(500, timeout_ms - LINGER_MS - 100),
            "reconnect_backoff_max_ms": 1000,
        }

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(**self._config())
                except Exception as e:
                    raise ProduceError(f"cannot connect to Kafka at {self._bootstrap}: {e}") from e
            return self._producer

    def _discard(self, producer: Any) -> None:
        """Drop a producer after a failure: the next batch starts on a fresh one.

        After a delivery timeout an idempotent producer may hold sequence state the broker no
        longer agrees with; a new producer id is the simple way out.
        """
        with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            producer.close(timeout=0)
        except Exception:
            log.debug("closing a failed producer", exc_info=True)

    def check(self) -> bool:
        """Create missing telemetry topics; whether Kafka answers. Logs what is wrong."""
        try:
            ensure_topics(
                self._bootstrap,
                self._prefix,
                tuple(topic_spec_for(kind) for kind in self._topics),
                timeout_s=self._timeout_s,
            )
            producer = self._get()
            for topic in self._topics.values():
                if not producer.partitions_for(topic):
                    log.warning("topic %s has no partitions (not created?)", topic)
                    return False
        except Exception as e:
            log.warning("Kafka not ready at %s: %s", self._bootstrap, e)
            return False
        return True

    def ping(self) -> bool:
        """Blocking: whether a broker answers a metadata request within the produce timeout.

        A real Kafka request rather than a TCP connect, so a broker that accepts connections but
        cannot answer counts as down; one admin client is kept between pings (a ping then costs
        about a millisecond).
        """
        timeout_ms = int(self._timeout_s * 1000)
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self._bootstrap,
                    client_id="suptech-gateway-health",
                    request_timeout_ms=timeout_ms,
                    bootstrap_timeout_ms=timeout_ms,
                    reconnect_backoff_max_ms=1000,
                )
            self._admin.describe_cluster()
        except Exception as e:
            log.debug("Kafka ping failed: %s", e)
            self._close_admin()
            return False
        return True

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:
                log.debug("closing the health admin client", exc_info=True)

    def publish_sync(
        self,
        institution_id: str,
        batch_id: str,
        groups: Mapping[str, Sequence[telemetry_pb2.TelemetryEnvelope]],
        headers: Sequence[tuple[str, bytes]] = (),
        received: bytes | None = None,
    ) -> None:
        """Write each group to its topic (every record with ``headers``: the batch's trace
        context) and wait for Kafka; raise :class:`ProduceError`.

        ``received``: the serialised batch, when ``groups`` is exactly all of its events (one
        kind): the record is then built from those bytes instead of re-serialising the events.
        """
        producer = self._get()
        key = institution_id.encode()
        received_ns = time.time_ns()
        deadline = time.monotonic() + self._timeout_s
        values: list[tuple[str, bytes]] = []
        if received is not None and len(groups) == 1:
            fields = bundle_event_fields(received)
            if fields is not None:
                value = encode_bundle_head(institution_id, batch_id, received_ns) + fields
                if len(value) <= MAX_RECORD_BYTES:
                    values = [(self._topics[next(iter(groups))], value)]
        if not values:
            values = [
                (self._topics[kind], value)
                for kind, events in groups.items()
                for value in _bundles(institution_id, batch_id, received_ns, events)
            ]
        try:
            futures = [
                producer.send(topic, key=key, value=value, headers=list(headers))
                for topic, value in values
            ]
            for future in futures:
                future.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as e:
            self._discard(producer)
            raise ProduceError(f"Kafka did not confirm the batch: {type(e).__name__}: {e}") from e

    async def publish(
        self,
        institution_id: str,
        batch_id: str,
        groups: Mapping[str, Sequence[telemetry_pb2.TelemetryEnvelope]],
        headers: Sequence[tuple[str, bytes]] = (),
        received: bytes | None = None,
    ) -> None:
        if not groups:
            return
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(
            None, self.publish_sync, institution_id, batch_id, groups, headers, received
        )
        try:
            # The thread bounds itself too; this keeps the call's bound even if Kafka's client
            # overruns (a batch that lands late is resent by the client and deduped downstream).
            await asyncio.wait_for(asyncio.shield(work), timeout=self._timeout_s + 1)
        except TimeoutError as e:
            raise ProduceError(f"Kafka did not answer within {self._timeout_s:.0f}s") from e

    def close(self, timeout_s: float = 10.0) -> None:
        self._close_admin()
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)
