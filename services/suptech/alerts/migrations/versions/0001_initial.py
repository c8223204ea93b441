"""Initial schema: alerts, findings, alert_events, silences, audit_log, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from suptech.alerts.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("group_key", sa.String(512), nullable=False),
        sa.Column("family", sa.Integer, nullable=False),
        sa.Column("institution_id", sa.String(128), nullable=False),
        sa.Column("entity_kind", sa.String(64), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("detector_id", sa.String(256), nullable=False),
        sa.Column("grade", sa.Integer, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("assignee", sa.String(256), nullable=False),
        sa.Column("verdict", sa.Integer, nullable=False),
        sa.Column("resolution_note", sa.Text, nullable=False),
        sa.Column("finding_count", sa.Integer, nullable=False),
        sa.Column("silenced", sa.Boolean, nullable=False),
        sa.Column("auto_resolved", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("ack_deadline", UTCDateTime, nullable=True),
        sa.Column("escalation_level", sa.Integer, nullable=False),
        sa.Column("created_time", UTCDateTime, nullable=False),
        sa.Column("updated_time", UTCDateTime, nullable=False),
        sa.Column("resolved_time", UTCDateTime, nullable=True),
    )
    op.create_index("ix_alerts_group_key", "alerts", ["group_key"])
    op.create_index("ix_alerts_institution_id", "alerts", ["institution_id"])
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_created_time", "alerts", ["created_time"])
    op.create_index("ix_alerts_group_open", "alerts", ["group_key", "state"])

    op.create_table(
        "findings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("finding_id", sa.String(256), nullable=False, unique=True),
        sa.Column("alert_id", sa.String(64), sa.ForeignKey("alerts.alert_id"), nullable=False),
        sa.Column("grade", sa.Integer, nullable=False),
        sa.Column("event_time", UTCDateTime, nullable=False),
        sa.Column("received_time", UTCDateTime, nullable=False),
        sa.Column("proto", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_findings_alert_id", "findings", ["alert_id"])

    op.create_table(
        "alert_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("kind", sa.Integer, nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("institution_id", sa.String(128), nullable=False),
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_alert_events_alert_id", "alert_events", ["alert_id"])

    op.create_table(
        "silences",
        sa.Column("silence_id", sa.String(64), primary_key=True),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("ends_at", UTCDateTime, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_time", UTCDateTime, nullable=False),
        sa.Column("expired", sa.Boolean, nullable=False),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(128), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
    )
    op.create_index("ix_audit_log_alert_id", "audit_log", ["alert_id"])

    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("dedup_key", sa.String(256), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created_time", UTCDateTime, nullable=False),
        sa.UniqueConstraint("kind", "dedup_key", name="uq_outbox_kind_dedup"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["kind", "delivered_at", "next_attempt_at"])


def downgrade() -> None:
    for table in ("outbox", "audit_log", "silences", "alert_events", "findings", "alerts"):
        op.drop_table(table)
