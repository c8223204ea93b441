"""Tamper-evident audit log of every human action: an append-only SHA-256 hash chain.

Each entry's ``hash`` is ``sha256(prev_hash || canonical JSON of (id, ts, actor, role, action,
alert_id, details))`` and its ``prev_hash`` is the previous entry's hash (64 zeros for the first).
Ids are consecutive from 1, given out under a lock, so a deleted entry anywhere (even the first)
breaks the chain; removing the newest entries is caught by comparing the head hash with one noted
earlier (``verify --expect-head``). There is deliberately no update or delete path in this module;
on PostgreSQL a trigger (migration ``audit_append_only``) also refuses them.

Check a database from the command line::

    python -m suptech.alerts.audit verify --db sqlite:///alerts.db
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from suptech.alerts.database import make_engine
from suptech.alerts.models import AuditLogRow

__all__ = ["GENESIS_HASH", "AuditEntry", "VerifyResult", "append", "entry_hash", "verify", "main"]

GENESIS_HASH = "0" * 64
# Any constant: it names the lock every PostgreSQL appender takes before reading the chain head.
_PG_APPEND_LOCK = 0x5A0D17
_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: datetime
    actor: str
    role: str
    action: str
    alert_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""
    # Hash of the newest entry verified; note it down to detect truncation later.
    head_hash: str = GENESIS_HASH


def _canonical(
    id_: int,
    ts: datetime,
    actor: str,
    role: str,
    action: str,
    alert_id: str | None,
    details: Any,
) -> bytes:
    ts_text = ts.astimezone(UTC).isoformat(timespec="microseconds")
    record = [id_, ts_text, actor, role, action, alert_id, details]
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(
    prev_hash: str,
    *,
    id: int,
    ts: datetime,
    actor: str,
    role: str,
    action: str,
    alert_id: str | None,
    details: Any,
) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(_canonical(id, ts, actor, role, action, alert_id, details))
    return digest.hexdigest()


def _lock_chain(session: Session) -> None:
    """Serialise appenders until the caller's transaction ends.

    PostgreSQL: a transaction-scoped advisory lock, which unlike ``SELECT ... FOR UPDATE`` on the
    last row also covers the empty table. SQLite allows one writer at a time but Python's driver
    opens the write transaction only at the first write, so two appenders could read the same head;
    a write that matches no row takes the writer lock first (the primary key would turn such a race
    into an error, never a fork, but the action would fail).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPEND_LOCK})
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit_log SET id = id WHERE 0 = 1"))


def append(
    session: Session,
    *,
    actor: str,
    role: str,
    action: str,
    alert_id: str | None,
    details: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> AuditEntry:
    """Add one entry inside the caller's transaction; it is kept only if the caller commits.

    Writing the entry in the same transaction as the action means no action without its record and
    no record of an action that rolled back.
    """
    if not actor:
        raise ValueError("audit entry needs an actor")
    if not action:
        raise ValueError("audit entry needs an action")
    try:
        # Round-trip so that what is hashed is exactly what the JSON column gives back later.
        normalised = json.loads(json.dumps(details or {}, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit details must be plain JSON: {exc}") from None
    when = (ts or datetime.now(UTC)).astimezone(UTC)
    _lock_chain(session)
    head = session.execute(
        select(AuditLogRow.id, AuditLogRow.hash).order_by(AuditLogRow.id.desc()).limit(1)
    ).first()
    new_id, prev_hash = (1, GENESIS_HASH) if head is None else (head.id + 1, head.hash)
    digest = entry_hash(
        prev_hash,
        id=new_id,
        ts=when,
        actor=actor,
        role=role,
        action=action,
        alert_id=alert_id,
        details=normalised,
    )
    row = AuditLogRow(
        id=new_id,
        ts=when,
        actor=actor,
        role=role,
        action=action,
        alert_id=alert_id,
        details=normalised,
        prev_hash=prev_hash,
        hash=digest,
    )
    session.add(row)
    session.flush()
    return AuditEntry(new_id, when, actor, role, action, alert_id, normalised, prev_hash, digest)


def verify(session: Session, expect_head: str | None = None) -> VerifyResult:
    """Walk the whole chain in id order and report the first entry that does not fit."""
    checked = 0
    expected_id = 1
    prev_hash = GENESIS_HASH
    last_id = 0
    while True:
        rows = (
            session.execute(
                select(AuditLogRow)
                .where(AuditLogRow.id > last_id)
                .order_by(AuditLogRow.id)
                .limit(_VERIFY_BATCH)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
            if row.id != expected_id:
                return VerifyResult(
                    False,
                    checked,
                    row.id,
                    f"entry {expected_id} is missing (next present is {row.id})",
                    prev_hash,
                )
            if row.prev_hash != prev_hash:
                return VerifyResult(
                    False,
                    checked,
                    row.id,
                    f"prev_hash does not match the hash of entry {row.id - 1} "
                    "(that entry was rewritten, or this one was moved)",
                    prev_hash,
                )
            recomputed = entry_hash(
                prev_hash,
                id=row.id,
                ts=row.ts,
                actor=row.actor,
                role=row.role,
                action=row.action,
                alert_id=row.alert_id,
                details=row.details,
            )
            if recomputed != row.hash:
                return VerifyResult(
                    False, checked, row.id, "content does not match its hash", prev_hash
                )
            prev_hash = row.hash
            expected_id += 1
            checked += 1
        last_id = rows[-1].id
        # Entries are immutable: release them instead of holding the whole log in the session.
        session.expunge_all()
    if expect_head is not None and expect_head != prev_hash:
        return VerifyResult(
            False,
            checked,
            None,
            f"head hash {prev_hash} is not the expected {expect_head}: entries were removed "
            "from the end or the log was replaced",
            prev_hash,
        )
    return VerifyResult(True, checked, None, "", prev_hash)


def _verify_url(url: str, expect_head: str | None) -> VerifyResult:
    if url.startswith("postgresql://"):
        # The driver installed with the server extra is psycopg 3, not SQLAlchemy's psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return verify(session, expect_head)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suptech.alerts.audit", description="Check the alert audit log's hash chain."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="verify the chain; exit 1 at the first broken link")
    check.add_argument("--db", required=True, help="database URL, e.g. sqlite:///alerts.db")
    check.add_argument("--expect-head", help="head hash noted earlier, to detect truncation")
    args = parser.parse_args(argv)
    try:
        result = _verify_url(args.db, args.expect_head)
    except Exception as exc:  # noqa: BLE001 - any failure to read the log is a failed check
        print(f"ERROR: cannot read the audit log: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"OK: {result.checked} entries, head {result.head_hash}")
        return 0
    where = f"entry {result.first_broken_id}" if result.first_broken_id is not None else "chain"
    print(
        f"BROKEN: {where}: {result.reason} ({result.checked} entries verified before it)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
