"""Deliver feedback rows of the outbox to feedback.v1: a verdict committed is a verdict sent.

Rows are marked delivered only after Kafka acknowledged them; a failure is retried with backoff.
Delivery is at-least-once: consumers of feedback.v1 dedupe on the alert id (the record key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suptech.alerts.models import OUTBOX_FEEDBACK, OutboxRow
from suptech.common.topics import FEEDBACK, topic_name
from suptech.v1 import alerts_pb2

__all__ = ["FeedbackDispatcher", "backoff_s"]

log = logging.getLogger(__name__)


def backoff_s(attempts: int) -> float:
    """Seconds before retry number ``attempts`` (1, 2, 4, ... capped at five minutes)."""
    return float(min(2 ** max(attempts - 1, 0), 300))


class FeedbackDispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        bootstrap: str,
        topic_prefix: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = 100,
    ) -> None:
        self._sessions = session_factory
        self._clock = clock
        self._batch = batch
        self.topic = topic_name(FEEDBACK, topic_prefix)
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", client_id="suptech-alerts-feedback"
        )

    def run_once(self, send_timeout_s: float = 10.0) -> int:
        """Send due feedback rows; return how many were delivered."""
        with self._sessions() as s, s.begin():
            now = self._clock()
            rows = list(
                s.scalars(
                    select(OutboxRow)
                    .where(
                        OutboxRow.kind == OUTBOX_FEEDBACK,
                        OutboxRow.delivered_at.is_(None),
                        OutboxRow.next_attempt_at <= now,
                    )
                    .order_by(OutboxRow.id)
                    .limit(self._batch)
                )
            )
            delivered = 0
            for row in rows:
                alert_id = alerts_pb2.Feedback.FromString(row.payload).alert_id
                try:
                    self._producer.send(
                        self.topic,
                        key=alert_id.encode(),
                        value=row.payload,
                        headers=[("dedup_key", row.dedup_key.encode())],
                    ).get(timeout=send_timeout_s)
                except Exception as exc:  # any producer failure is retried later, never dropped
                    row.attempts += 1
                    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    row.next_attempt_at = now + timedelta(seconds=backoff_s(row.attempts))
                    log.warning(
                        "feedback for %s not sent (attempt %d): %s", alert_id, row.attempts, exc
                    )
                    continue
                row.attempts += 1
                row.delivered_at = self._clock()
                delivered += 1
            return delivered

    def close(self) -> None:
        self._producer.close()
