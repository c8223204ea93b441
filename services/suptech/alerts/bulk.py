"""Many rows into one table inside the caller's transaction: COPY on PostgreSQL.

Ingest writes hundreds of alerts, findings and change-log entries per batch. Through SQLAlchemy's
multi-row ``INSERT ... VALUES`` psycopg re-parses a statement with one placeholder per value
(12,000 for 500 alerts) in Python on every batch, which cost more than everything else the
consumer does; binary COPY streams the rows with no statement to parse and no per-row round trip.
Other databases (SQLite) take a plain executemany.

Errors come out as SQLAlchemy exceptions (a duplicate key is an ``IntegrityError``), as they would
from any other statement, so the callers' retry and dead-letter handling is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Table, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from suptech.alerts.models import UTCDateTime

__all__ = ["copy_supported", "insert_rows", "reserve_ids"]


def copy_supported(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _pg_type(sa_type: TypeEngine[Any]) -> str:
    # Order matters: BigInteger is an Integer, Text is a String.
    if isinstance(sa_type, UTCDateTime):
        return "timestamptz"
    if isinstance(sa_type, Boolean):
        return "bool"
    if isinstance(sa_type, BigInteger):
        return "int8"
    if isinstance(sa_type, Integer):
        return "int4"
    if isinstance(sa_type, LargeBinary):
        return "bytea"
    if isinstance(sa_type, String):
        # varchar and text share their binary form.
        return "text"
    raise TypeError(f"no COPY type for {sa_type!r}")


def insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table``; datetimes must be aware."""
    if not rows:
        return
    if not copy_supported(session):
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    types = [_pg_type(table.c[name].type) for name in columns]
    conn = session.connection().connection.driver_connection
    assert isinstance(conn, psycopg.Connection)
    try:
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def reserve_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new ids of ``table``'s serial ``id`` in increasing order (PostgreSQL only).

    One round trip whatever the count. The caller must hold the lock that orders ids of this
    table (``store.lock_event_log`` for ``alert_events``) so that they become visible in order.
    """
    last = session.scalar(
        text(
            "SELECT setval(pg_get_serial_sequence(:t, 'id'),"
            " nextval(pg_get_serial_sequence(:t, 'id')) + :n - 1)"
        ),
        {"t": table.name, "n": count},
    )
    assert isinstance(last, int)
    return list(range(last - count + 1, last + 1))
