"""Escalation of alerts nobody acknowledged in time.

Each grade has a time to acknowledge, set in :class:`AlertsConfig` (defaults: critical 1 h,
major 2 h, significant 4 h, general 24 h; ``ALERTS_DEADLINE_*_S`` override them). An alert still
OPEN past its ``ack_deadline`` goes up one escalation level, gets a fresh deadline, an ESCALATED
entry in the change log (StreamAlerts subscribers see it), an audit entry, and a new webhook so
that whoever is on call is told again. Escalating moves the deadline into the future, so running
:func:`escalate_due` twice for the same ``now`` escalates once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from suptech.alerts import audit
from suptech.alerts.config import AlertsConfig
from suptech.alerts.models import AlertRow
from suptech.alerts.store import append_event, enqueue_webhook
from suptech.v1 import alerts_pb2, findings_pb2

__all__ = [
    "DEFAULT_DEADLINES_S",
    "EscalationConfig",
    "deadline_for",
    "escalate_due",
]

# Defined by AlertsConfig, not here: the store sets ``ack_deadline`` from the same numbers.
DEFAULT_DEADLINES_S: Mapping[int, float] = MappingProxyType(AlertsConfig().deadlines_by_grade())
# Enough to page through every rung of an on-call ladder; past it, more noise helps nobody.
DEFAULT_MAX_LEVEL = 5
# Bounded work per transaction; the next tick takes the rest.
BATCH = 200


@dataclass(frozen=True)
class EscalationConfig:
    # Seconds to acknowledge by Grade enum value; an unknown grade gets the general deadline.
    deadlines_s: Mapping[int, float] = field(default_factory=lambda: DEFAULT_DEADLINES_S)
    max_level: int = DEFAULT_MAX_LEVEL
    # Whether to queue a webhook per escalation (only when webhook receivers are configured).
    notify: bool = True

    def __post_init__(self) -> None:
        bad = {g: s for g, s in self.deadlines_s.items() if not s > 0}
        if bad:
            raise ValueError(f"acknowledgement deadlines must be positive seconds, got {bad}")
        if self.max_level < 1:
            raise ValueError(f"max_level must be at least 1, got {self.max_level}")

    @classmethod
    def from_alerts_config(cls, cfg: AlertsConfig) -> EscalationConfig:
        """The deadlines the store used to set ``ack_deadline``, so both agree."""
        return cls(
            deadlines_s=MappingProxyType(cfg.deadlines_by_grade()),
            notify=bool(cfg.webhook_urls),
        )

    def seconds(self, grade: int) -> float:
        general = self.deadlines_s.get(
            findings_pb2.GRADE_GENERAL, DEFAULT_DEADLINES_S[findings_pb2.GRADE_GENERAL]
        )
        return self.deadlines_s.get(grade, general)


def deadline_for(grade: int, created: datetime, config: EscalationConfig | None = None) -> datetime:
    """When an alert of ``grade`` raised (or escalated) at ``created`` must be acknowledged."""
    if created.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware UTC time")
    return created + timedelta(seconds=(config or EscalationConfig()).seconds(grade))


def _lock_writers(session: Session) -> None:
    # Two tickers (replicas) must not both escalate one alert for the same deadline. PostgreSQL:
    # FOR UPDATE below makes the second wait and then re-check the deadline, which has moved.
    # SQLite: take the single writer lock before reading, for the same effect.
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE alerts SET version = version WHERE 0 = 1"))


def escalate_due(
    session: Session, now: datetime, config: EscalationConfig | None = None
) -> list[str]:
    """Escalate OPEN alerts whose deadline has passed, inside the caller's transaction.

    Returns the escalated alert ids. Silenced alerts escalate too (the level and the change log
    stay truthful) but send no webhook: a silence mutes notifications, not facts.
    """
    cfg = config or EscalationConfig()
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware UTC time")
    _lock_writers(session)
    rows = list(
        session.scalars(
            select(AlertRow)
            .where(
                AlertRow.state == alerts_pb2.ALERT_STATE_OPEN,
                AlertRow.ack_deadline.is_not(None),
                AlertRow.ack_deadline <= now,
                AlertRow.escalation_level < cfg.max_level,
            )
            .order_by(AlertRow.ack_deadline, AlertRow.alert_id)
            .limit(BATCH)
            .with_for_update()
        )
    )
    missed: dict[str, datetime | None] = {}
    for row in rows:
        missed[row.alert_id] = row.ack_deadline
        row.escalation_level += 1
        # From now, not from the missed deadline: after downtime an alert climbs one level per
        # tick's worth of neglect, not several at once.
        row.ack_deadline = deadline_for(row.grade, now, cfg)
        row.updated_time = now
    session.flush()
    for row in rows:
        event = append_event(session, row, alerts_pb2.ALERT_EVENT_KIND_ESCALATED, now)
        missed_at = missed[row.alert_id]
        audit.append(
            session,
            actor="system",
            role="system",
            action="escalate",
            alert_id=row.alert_id,
            details={
                "level": row.escalation_level,
                "missed_deadline": missed_at.isoformat() if missed_at else None,
                "next_deadline": row.ack_deadline.isoformat() if row.ack_deadline else None,
            },
            ts=now,
        )
        if cfg.notify:
            enqueue_webhook(session, event, row, now)
    return [row.alert_id for row in rows]
