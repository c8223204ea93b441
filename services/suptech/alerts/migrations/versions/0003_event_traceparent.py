"""Keep the W3C ``traceparent`` of the finding that caused an alert change with the change.

Adds the nullable ``alert_events.traceparent``: StreamAlerts reads it back when it sends the
change, in whichever replica and however long after the store committed it, and records its
stream span in the finding's trace. Changes with no trace (triage, escalation, housekeeping,
findings that arrived without one, and everything written before this revision) keep NULL.

Telemetry, not evidence: the column is outside the change log's hash chain (``audit.event_hash``),
so adding it rewrites no entry (the table is append-only) and verification is unchanged.

Revision ID: event_traceparent
Revises: state_chain
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "event_traceparent"
down_revision = "state_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert_events", sa.Column("traceparent", sa.String(64), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE DROP COLUMN on both databases (SQLite >= 3.35): a batch table copy
    # would drop alert_events' append-only triggers with the old table.
    op.drop_column("alert_events", "traceparent")
