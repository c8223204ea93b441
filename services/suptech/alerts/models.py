"""The alert service's tables, shared by the store, the audit log, webhooks and escalation.

Timestamps are timezone-aware UTC in Python whatever the database: SQLite keeps no zone, so
:class:`UTCDateTime` puts it back on the way out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "UTCDateTime",
    "AlertRow",
    "FindingRow",
    "AlertEventRow",
    "SilenceRow",
    "AuditLogRow",
    "OutboxRow",
    "OUTBOX_WEBHOOK",
    "OUTBOX_FEEDBACK",
]

# Outbox kinds: the webhook dispatcher sends the first, the Kafka dispatcher the second.
OUTBOX_WEBHOOK = "webhook"
OUTBOX_FEEDBACK = "feedback"

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class AlertRow(Base):
    __tablename__ = "alerts"

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # institution|family|entity_kind|entity_id|detector_id: findings with the same key group.
    group_key: Mapped[str] = mapped_column(String(512), index=True)
    family: Mapped[int] = mapped_column(Integer)
    institution_id: Mapped[str] = mapped_column(String(128), index=True)
    entity_kind: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(256))
    detector_id: Mapped[str] = mapped_column(String(256))
    grade: Mapped[int] = mapped_column(Integer)
    # AlertState enum value of alerts.proto.
    state: Mapped[int] = mapped_column(Integer, index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str] = mapped_column(String(256), default="")
    verdict: Mapped[int] = mapped_column(Integer, default=0)
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    finding_count: Mapped[int] = mapped_column(Integer, default=0)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    # Raised by every change (the ORM checks it on UPDATE): stale writers get StaleDataError.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Event time of the first and last finding.
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    ack_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    created_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_time: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (Index("ix_alerts_group_open", "group_key", "state"),)


class FindingRow(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Unique: a replayed finding is recognised and ignored.
    finding_id: Mapped[str] = mapped_column(String(256), unique=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.alert_id"), index=True)
    grade: Mapped[int] = mapped_column(Integer)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime)
    received_time: Mapped[datetime] = mapped_column(UTCDateTime)
    # The Finding protobuf as received.
    proto: Mapped[bytes] = mapped_column(LargeBinary)


class AlertEventRow(Base):
    """Append-only change log of alerts; its id is the StreamAlerts cursor."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    # AlertEventKind enum value of alerts.proto.
    kind: Mapped[int] = mapped_column(Integer)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    # Copied from the alert so that a jurisdiction filter needs no join.
    institution_id: Mapped[str] = mapped_column(String(128))
    # The Alert protobuf (without findings) as it was after the change.
    snapshot: Mapped[bytes] = mapped_column(LargeBinary)
    # audit.alert_state_digest of the alert row after the change (every column).
    state_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Hash chain (audit.event_hash): the previous entry's hash and this one's.
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # W3C traceparent of the store span of the finding that caused the change (NULL when it
    # came with no trace, or no finding caused it): StreamAlerts continues that trace. Outside
    # the hash chain: telemetry, not evidence.
    traceparent: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SilenceRow(Base):
    __tablename__ = "silences"

    silence_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # [{"name": ..., "value": ...}], every matcher must match.
    matchers: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(256), default="")
    created_time: Mapped[datetime] = mapped_column(UTCDateTime)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditLogRow(Base):
    """Tamper-evident record of every human action (hash chain written by ``audit.py``)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(128))
    hash: Mapped[str] = mapped_column(String(128))
    # The alert change log's head when the action committed: the state it produced. NULL only
    # in entries written before migration state_chain.
    events_head_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    events_head_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class OutboxRow(Base):
    """Messages to deliver after the transaction that made them commits (webhooks, feedback)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Webhook: JSON body bytes. Feedback: the Feedback protobuf.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # Same key twice is the same message: receivers dedupe on it, the outbox refuses a second row.
    dedup_key: Mapped[str] = mapped_column(String(256))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_time: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("kind", "dedup_key", name="uq_outbox_kind_dedup"),
        Index("ix_outbox_pending", "kind", "delivered_at", "next_attempt_at"),
    )
