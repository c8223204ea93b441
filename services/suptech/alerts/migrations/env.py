"""Alembic environment: run with the connection the alert store hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from suptech.alerts.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
