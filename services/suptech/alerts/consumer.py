"""Consume findings.v1 into the store: at-least-once in, idempotent store, nothing blocks.

Offsets are committed only after the database transaction that stored a batch has committed, so
a crash in between replays the batch, which the store recognises (finding_id is unique). A record
that cannot be decoded or stored goes to the dead-letter topic with its reason and the consumer
moves on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy.exc import SQLAlchemyError

from suptech.alerts import grouping
from suptech.alerts.store import AlertStore
from suptech.common.topics import DEAD_LETTER, FINDINGS, topic_name
from suptech.v1 import findings_pb2

__all__ = ["FindingsConsumer", "ConsumerStats", "decode_finding"]

log = logging.getLogger(__name__)


@dataclass
class ConsumerStats:
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def decode_finding(value: bytes | None) -> tuple[findings_pb2.Finding | None, str]:
    """The finding in a record value, or None and why it is unusable."""
    if not value:
        return None, "empty record"
    try:
        finding = findings_pb2.Finding.FromString(value)
    except DecodeError as exc:
        return None, f"not a Finding protobuf: {exc}"
    reason = grouping.invalid_reason(finding)
    if reason is not None:
        return None, f"invalid finding: {reason}"
    return finding, ""


class FindingsConsumer:
    """One member of the alert service's consumer group on findings.v1."""

    def __init__(
        self,
        store: AlertStore,
        *,
        bootstrap: str,
        topic_prefix: str = "",
        group_id: str = "suptech-alerts",
        max_records: int = 500,
        metadata_timeout_s: float = 30.0,
    ) -> None:
        self._store = store
        self.topic = topic_name(FINDINGS, topic_prefix)
        self.dead_letter_topic = topic_name(DEAD_LETTER, topic_prefix)
        self.stats = ConsumerStats()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            client_id=f"{group_id}-findings",
        )
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", client_id=f"{group_id}-deadletter"
        )
        self._wait_for_partitions(metadata_timeout_s)
        self._consumer.subscribe([self.topic])

    def _wait_for_partitions(self, timeout_s: float) -> None:
        # Joining the group before the broker reports the topic's partitions (a topic just
        # created) gets an empty assignment that stays empty until the next metadata refresh,
        # minutes later: the service would sit idle with findings waiting.
        deadline = time.monotonic() + timeout_s
        while not self._consumer.partitions_for_topic(self.topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions after {timeout_s:.0f}s")
            time.sleep(0.1)

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Store one poll's worth of records and commit their offsets; return records seen."""
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        records = [r for batch in polled.values() for r in batch]
        if not records:
            return 0
        good: list[tuple[Any, findings_pb2.Finding]] = []
        for rec in records:
            finding, reason = decode_finding(rec.value)
            if finding is None:
                self._dead_letter(rec, reason)
            else:
                good.append((rec, finding))
        if good:
            self._store_batch(good)
        # Dead letters must be on Kafka before their source offsets are committed.
        self._producer.flush()
        # Asynchronous: a lost commit only replays findings the store already holds, and not
        # waiting for the broker's answer takes its round trip off every alert's latency.
        self._consumer.commit_async(callback=_log_commit_failure)
        self.stats.records += len(records)
        return len(records)

    def _store_batch(self, good: Sequence[tuple[Any, findings_pb2.Finding]]) -> None:
        try:
            result = self._store.ingest([f for _, f in good])
        except SQLAlchemyError as exc:
            if len(good) == 1:
                self._dead_letter(
                    good[0][0], f"store rejected the finding: {exc.__class__.__name__}"
                )
                log.warning("finding dead-lettered by the store: %s", exc)
                return
            # One bad finding must not hold back the others: split until it is alone.
            mid = len(good) // 2
            self._store_batch(good[:mid])
            self._store_batch(good[mid:])
            return
        self.stats.stored += result.new_findings
        self.stats.duplicates += result.duplicates

    def _dead_letter(self, rec: Any, reason: str) -> None:
        source = f"{rec.topic}/{rec.partition}/{rec.offset}"
        log.warning("dead-lettering %s: %s", source, reason)
        self._producer.send(
            self.dead_letter_topic,
            key=rec.key,
            value=rec.value or b"",
            headers=[("reason", reason.encode()), ("source", source.encode())],
        )
        self.stats.dead_lettered += 1
        short = reason.split(":", 1)[0]
        self.stats.reasons[short] = self.stats.reasons.get(short, 0) + 1

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a database outage is retried, never skipped."""
        while not stop.is_set():
            try:
                self.poll_once()
            except SQLAlchemyError:
                # Not committed: the batch comes back after the group rewinds to the last commit.
                log.exception("storing findings failed; rewinding to the last committed offset")
                self._rewind()
                stop.wait(1.0)

    def _rewind(self) -> None:
        for tp in self._consumer.assignment():
            committed = self._consumer.committed(tp)
            if committed is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    def close(self) -> None:
        try:
            self._producer.flush()
            self._producer.close()
            # Whatever was stored is committed before leaving, so a restart replays nothing.
            self._consumer.commit()
        except Exception:
            log.exception("final offset commit failed; the next member replays (idempotently)")
        finally:
            self._consumer.close()


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("offset commit failed (the batch will replay, idempotently): %s", response)
