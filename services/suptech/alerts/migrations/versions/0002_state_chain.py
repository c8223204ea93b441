"""Chain the alert change log and anchor audit entries to it, so that alert state is evidence.

Adds ``alert_events.state_digest / prev_hash / hash`` and ``audit_log.events_head_id /
events_head_hash`` (see ``suptech.alerts.audit``), fills them in for what is already there, and
makes ``alert_events`` append-only in the database like ``audit_log``.

Existing change-log entries are chained in id order; the newest entry of each alert records the
state digest of the alert row as it is at migration time (what the database holds then is taken
as given, as the first audit entry once was). Older entries and existing audit entries carry no
state: they are verified as they were.

Revision ID: state_chain
Revises: audit_append_only
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from alembic import op
from suptech.alerts import audit
from suptech.alerts.models import AlertEventRow, AlertRow

revision = "state_chain"
down_revision = "audit_append_only"
branch_labels = None
depends_on = None

MESSAGE = "alert_events is append-only"
_BATCH = 1000


def upgrade() -> None:
    op.add_column("alert_events", sa.Column("state_digest", sa.String(64), nullable=True))
    op.add_column("alert_events", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("alert_events", sa.Column("hash", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("events_head_id", sa.BigInteger, nullable=True))
    op.add_column("audit_log", sa.Column("events_head_hash", sa.String(64), nullable=True))
    _backfill(op.get_bind())
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION alert_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER alert_events_append_only BEFORE UPDATE OR DELETE ON alert_events "
            "FOR EACH ROW EXECUTE FUNCTION alert_events_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON alert_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION alert_events_refuse_change()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER alert_events_no_{verb.lower()} BEFORE {verb} ON alert_events "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )


def _backfill(conn: sa.Connection) -> None:
    alerts = cast(sa.Table, AlertRow.__table__)
    events = cast(sa.Table, AlertEventRow.__table__)
    newest = dict(
        conn.execute(
            sa.select(events.c.alert_id, sa.func.max(events.c.id)).group_by(events.c.alert_id)
        ).all()
    )
    state: dict[int, str] = {}
    for row in conn.execute(sa.select(*alerts.columns)):
        event_id = newest.get(row.alert_id)
        if event_id is not None:
            state[event_id] = audit.alert_state_digest(row)
    prev = audit.GENESIS_HASH
    last = 0
    while True:
        rows = conn.execute(
            sa.select(
                events.c.id,
                events.c.ts,
                events.c.kind,
                events.c.alert_id,
                events.c.institution_id,
                events.c.snapshot,
            )
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for row in rows:
            digest = state.get(row.id)
            h = audit.event_hash(
                prev,
                id=row.id,
                ts=row.ts,
                kind=row.kind,
                alert_id=row.alert_id,
                institution_id=row.institution_id,
                snapshot=row.snapshot,
                state_digest=digest,
            )
            updates.append({"b_id": row.id, "b_state": digest, "b_prev": prev, "b_hash": h})
            prev = h
        conn.execute(
            events.update()
            .where(events.c.id == sa.bindparam("b_id"))
            .values(
                state_digest=sa.bindparam("b_state"),
                prev_hash=sa.bindparam("b_prev"),
                hash=sa.bindparam("b_hash"),
            ),
            updates,
        )
        last = rows[-1].id


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS alert_events_no_truncate ON alert_events")
        op.execute("DROP TRIGGER IF EXISTS alert_events_append_only ON alert_events")
        op.execute("DROP FUNCTION IF EXISTS alert_events_refuse_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS alert_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS alert_events_no_delete")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("events_head_hash")
        batch.drop_column("events_head_id")
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("state_digest")
