"""Deliver feedback rows of the outbox to feedback.v1: a verdict committed is a verdict sent.

Three steps, none of which holds a database transaction across a Kafka round trip:

1. **claim** due rows in one short transaction, pushing their next attempt past a lease so that
   another dispatcher (a second replica) leaves them alone;
2. **send** them to Kafka and wait for the acknowledgements, with no transaction open;
3. **record** the outcome in one short transaction: delivered, or failed with a backoff.

A crash between 2 and 3 sends the rows again once the lease ends: delivery is at-least-once, and
consumers of feedback.v1 dedupe on the alert id (the record key) and the ``dedup_key`` header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaProducer
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from suptech.alerts.models import OUTBOX_FEEDBACK, OutboxRow
from suptech.common.kafka import open_client
from suptech.common.topics import FEEDBACK, topic_name
from suptech.v1 import alerts_pb2

__all__ = ["FeedbackDispatcher", "backoff_s"]

log = logging.getLogger(__name__)


def backoff_s(attempts: int) -> float:
    """Seconds before retry number ``attempts`` (1, 2, 4, ... capped at five minutes)."""
    return float(min(2 ** max(attempts - 1, 0), 300))


@dataclass(frozen=True)
class _Claimed:
    id: int
    payload: bytes
    dedup_key: str
    attempts: int


class FeedbackDispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        bootstrap: str,
        topic_prefix: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = 100,
        send_timeout_s: float = 10.0,
    ) -> None:
        self._sessions = session_factory
        self._clock = clock
        self._batch = batch
        self._send_timeout_s = send_timeout_s
        self.topic = topic_name(FEEDBACK, topic_prefix)
        self._producer = open_client(
            KafkaProducer,
            bootstrap_servers=bootstrap,
            acks="all",
            client_id="suptech-alerts-feedback",
            # A send waiting for metadata (Kafka away) gives up within the same bound.
            max_block_ms=int(send_timeout_s * 1000),
        )

    def _claim(self, now: datetime) -> list[_Claimed]:
        lease = now + timedelta(seconds=self._send_timeout_s * 2 + 30)
        with self._sessions.begin() as s:
            due = s.execute(
                select(OutboxRow.id)
                .where(
                    OutboxRow.kind == OUTBOX_FEEDBACK,
                    OutboxRow.delivered_at.is_(None),
                    OutboxRow.next_attempt_at <= now,
                )
                .order_by(OutboxRow.id)
                .limit(self._batch)
            ).all()
            if not due:
                return []
            # The WHERE is evaluated again on the row each claimer finds: a row another
            # dispatcher leased meanwhile is no longer due, so exactly one wins it.
            won = s.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id.in_([r.id for r in due]),
                    OutboxRow.delivered_at.is_(None),
                    OutboxRow.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease)
                .returning(OutboxRow.id, OutboxRow.payload, OutboxRow.dedup_key, OutboxRow.attempts)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((_Claimed(r.id, r.payload, r.dedup_key, r.attempts) for r in won), key=_id)

    def run_once(self) -> int:
        """Send due feedback rows; return how many were delivered."""
        now = self._clock()
        claimed = self._claim(now)
        if not claimed:
            return 0
        sent: list[tuple[_Claimed, Any]] = []
        failed: dict[int, str] = {}
        unsent: list[_Claimed] = []
        for i, row in enumerate(claimed):
            alert_id = alerts_pb2.Feedback.FromString(row.payload).alert_id
            try:
                future = self._producer.send(
                    self.topic,
                    key=alert_id.encode(),
                    value=row.payload,
                    headers=[("dedup_key", row.dedup_key.encode())],
                )
            except Exception as exc:  # Kafka unreachable: the rest would wait just as long
                failed[row.id] = f"{type(exc).__name__}: {exc}"
                unsent = claimed[i + 1 :]
                break
            sent.append((row, future))
        try:
            self._producer.flush(timeout=self._send_timeout_s)
        except Exception as exc:  # noqa: BLE001 - each row's own future says what happened
            log.warning("feedback flush did not complete: %s", exc)
        delivered: list[int] = []
        for row, future in sent:
            if not future.is_done:
                failed[row.id] = f"not acknowledged within {self._send_timeout_s:.0f}s"
            elif future.succeeded():
                delivered.append(row.id)
            else:
                failed[row.id] = f"{type(future.exception).__name__}: {future.exception}"
        self._record(claimed, delivered, failed, unsent)
        return len(delivered)

    def _record(
        self,
        claimed: list[_Claimed],
        delivered: list[int],
        failed: dict[int, str],
        unsent: list[_Claimed],
    ) -> None:
        now = self._clock()
        with self._sessions.begin() as s:
            if delivered:
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_(delivered))
                    .values(attempts=OutboxRow.attempts + 1, delivered_at=now, last_error="")
                    .execution_options(synchronize_session=False)
                )
            for row in claimed:
                if row.id not in failed:
                    continue
                attempts = row.attempts + 1
                log.warning(
                    "feedback %s not sent (attempt %d): %s", row.dedup_key, attempts, failed[row.id]
                )
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id)
                    .values(
                        attempts=attempts,
                        last_error=failed[row.id][:2000],
                        next_attempt_at=now + timedelta(seconds=backoff_s(attempts)),
                    )
                    .execution_options(synchronize_session=False)
                )
            if unsent:
                # Never tried: due again at once, without an attempt counted against them.
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_([r.id for r in unsent]))
                    .values(next_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )

    def close(self) -> None:
        self._producer.close()


def _id(row: _Claimed) -> int:
    return row.id
