"""Tamper-evident record of alerts and of every human action: two SHA-256 hash chains.

**The audit log** (``audit_log``): each entry's ``hash`` is ``sha256(prev_hash || canonical JSON
of (id, ts, actor, role, action, alert_id, details, events_head_id, events_head_hash))`` and its
``prev_hash`` is the previous entry's hash (64 zeros for the first). Ids are consecutive from 1,
given out under a lock, so a deleted entry anywhere (even the first) breaks the chain; removing
the newest entries is caught by comparing the head hash with one noted earlier
(``verify --expect-head``).

**The alert change log** (``alert_events``, the StreamAlerts log) is chained the same way: each
entry hashes its id, time, kind, alert, the snapshot served to subscribers and the *state
digest* of the alert row it produced (every column, :func:`alert_state_digest`), and links to the
previous entry's hash. Ids need not be consecutive (PostgreSQL sequences skip), links must hold.

They are tied together and to the ``alerts`` table:

- every audit entry records the change-log head (id and hash) after its action, so the state an
  action produced is in the audit chain, and rewriting the change log before it breaks the audit
  entry that anchored it;
- verification recomputes the state digest of every row of ``alerts`` and requires it to equal
  the one its newest change-log entry recorded: a verdict changed, an alert deleted or inserted
  in the database directly fails, whoever did it.

There is deliberately no update or delete path in this module; triggers (migrations
``audit_append_only`` and ``state_chain``) refuse them on both tables in the database too.

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
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from suptech.alerts.database import make_engine
from suptech.alerts.models import AlertEventRow, AlertRow, AuditLogRow, UTCDateTime

__all__ = [
    "ALERT_STATE_COLUMNS",
    "GENESIS_HASH",
    "AuditEntry",
    "VerifyResult",
    "alert_state_digest",
    "append",
    "entries_for_alert",
    "entry_hash",
    "event_hash",
    "events_head",
    "verify",
    "main",
]

GENESIS_HASH = "0" * 64
# Any constant: it names the lock every PostgreSQL appender takes before reading the chain head.
_PG_APPEND_LOCK = 0x5A0D17
_VERIFY_BATCH = 1000
_ALERTS = cast(Table, AlertRow.__table__)
# Every column of an alert: what its state digest covers.
ALERT_STATE_COLUMNS: tuple[str, ...] = tuple(c.name for c in _ALERTS.columns)


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
    # The alert change log's newest entry when the action committed (0 and GENESIS_HASH: none).
    events_head_id: int = 0
    events_head_hash: str = GENESIS_HASH


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    # Audit entries verified.
    checked: int
    # The audit entry at fault, if the fault is in the audit log.
    first_broken_id: int | None = None
    reason: str = ""
    # Hash of the newest entry verified; note it down to detect truncation later.
    head_hash: str = GENESIS_HASH
    # Alert change-log entries and alerts verified, and the change log's head hash.
    events_checked: int = 0
    alerts_checked: int = 0
    events_head_hash: str = GENESIS_HASH


def _time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def _json(record: Any) -> bytes:
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
    events_head: tuple[int, str] | None = None,
) -> str:
    """Hash of an audit entry; ``events_head`` None only for entries older than the state chain."""
    record: list[Any] = [id, _time(ts), actor, role, action, alert_id, details]
    if events_head is not None:
        record.extend(events_head)
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(_json(record))
    return digest.hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _plain(value: Any) -> Any:
    # Integer microseconds: exact, zone-free, and cheaper than isoformat at one per column.
    return (value - _EPOCH) // _MICROSECOND if isinstance(value, datetime) else value


def _compact(record: list[Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


_STATE_VALUES = attrgetter(*ALERT_STATE_COLUMNS)
_TIME_POSITIONS = tuple(i for i, c in enumerate(_ALERTS.columns) if isinstance(c.type, UTCDateTime))


def alert_state_digest(row: Any) -> str:
    """SHA-256 of every column of an alert (an ``AlertRow`` or the store's plain values)."""
    values = list(_STATE_VALUES(row))
    for i in _TIME_POSITIONS:
        if values[i] is not None:
            values[i] = (values[i] - _EPOCH) // _MICROSECOND
    return hashlib.sha256(_compact(values)).hexdigest()


def event_hash(
    prev_hash: str,
    *,
    id: int,
    ts: datetime,
    kind: int,
    alert_id: str,
    institution_id: str,
    snapshot: bytes,
    state_digest: str | None,
) -> str:
    """Hash of an alert change-log entry, linked to the previous entry's.

    ``sha256(prev_hash || JSON [id, ts, kind, alert_id, institution_id, state_digest] ||
    snapshot)``: a JSON array ends unambiguously, so the snapshot bytes can follow it as they are.
    """
    record = [id, _plain(ts), kind, alert_id, institution_id, state_digest]
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(_compact(record))
    digest.update(snapshot)
    return digest.hexdigest()


def events_head(session: Session) -> tuple[int, str]:
    """Id and hash of the newest alert change-log entry; (0, GENESIS_HASH) when there is none."""
    head = session.execute(
        select(AlertEventRow.id, AlertEventRow.hash).order_by(AlertEventRow.id.desc()).limit(1)
    ).first()
    return (0, GENESIS_HASH) if head is None else (int(head.id), head.hash or GENESIS_HASH)


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
    # The alert state this action produced: its change-log entries precede this call in the
    # same transaction, which holds the change-log lock, so the head is this action's own.
    anchor = events_head(session)
    digest = entry_hash(
        prev_hash,
        id=new_id,
        ts=when,
        actor=actor,
        role=role,
        action=action,
        alert_id=alert_id,
        details=normalised,
        events_head=anchor,
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
        events_head_id=anchor[0],
        events_head_hash=anchor[1],
    )
    session.add(row)
    session.flush()
    return AuditEntry(
        new_id, when, actor, role, action, alert_id, normalised, prev_hash, digest, *anchor
    )


def entries_for_alert(session: Session, alert_id: str) -> list[AuditEntry]:
    """Every entry about one alert, oldest first: the trail a supervisor answers for.

    Reads only; whether the caller may see the alert is the caller's check.
    """
    rows = session.scalars(
        select(AuditLogRow).where(AuditLogRow.alert_id == alert_id).order_by(AuditLogRow.id)
    )
    return [
        AuditEntry(
            r.id,
            r.ts,
            r.actor,
            r.role,
            r.action,
            r.alert_id,
            dict(r.details or {}),
            r.prev_hash,
            r.hash,
            int(r.events_head_id or 0),
            r.events_head_hash or GENESIS_HASH,
        )
        for r in rows
    ]


class _Broken(Exception):
    def __init__(self, reason: str, entry_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.entry_id = entry_id


@dataclass
class _Progress:
    audit_checked: int = 0
    audit_head: str = GENESIS_HASH
    events_checked: int = 0
    events_head: str = GENESIS_HASH
    alerts_checked: int = 0


def verify(
    session: Session, expect_head: str | None = None, expect_events_head: str | None = None
) -> VerifyResult:
    """Check both chains, their anchors and every alert's state; report the first fault.

    Run on a live database it reads one consistent snapshot (REPEATABLE READ on PostgreSQL, one
    read transaction on SQLite), so concurrent writers cause no false alarm.
    """
    _consistent_snapshot(session)
    done = _Progress()
    try:
        # change-log entry id -> (audit entry id, change-log hash it recorded)
        anchors = _verify_audit(session, done)
        if expect_head is not None and expect_head != done.audit_head:
            raise _Broken(
                f"head hash {done.audit_head} is not the expected {expect_head}: entries were "
                "removed from the end or the log was replaced"
            )
        # alert id -> (newest change-log entry id, state digest it recorded)
        newest = _verify_events(session, anchors, done)
        if expect_events_head is not None and expect_events_head != done.events_head:
            raise _Broken(
                f"change-log head hash {done.events_head} is not the expected "
                f"{expect_events_head}: entries were removed from the end or the log was replaced"
            )
        _verify_alerts(session, newest, done)
    except _Broken as broken:
        return VerifyResult(
            False,
            done.audit_checked,
            broken.entry_id,
            broken.reason,
            done.audit_head,
            done.events_checked,
            done.alerts_checked,
            done.events_head,
        )
    return VerifyResult(
        True,
        done.audit_checked,
        None,
        "",
        done.audit_head,
        done.events_checked,
        done.alerts_checked,
        done.events_head,
    )


def _consistent_snapshot(session: Session) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        if not session.in_transaction():
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    elif dialect == "sqlite":
        # The driver starts no transaction for reads: each SELECT would see its own snapshot.
        driver = session.connection().connection.driver_connection
        if driver is not None and not driver.in_transaction:
            session.execute(text("BEGIN"))


def _verify_audit(session: Session, done: _Progress) -> dict[int, tuple[int, str]]:
    anchors: dict[int, tuple[int, str]] = {}
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
            return anchors
        for row in rows:
            if row.id != expected_id:
                raise _Broken(f"entry {expected_id} is missing (next present is {row.id})", row.id)
            if row.prev_hash != prev_hash:
                raise _Broken(
                    f"prev_hash does not match the hash of entry {row.id - 1} "
                    "(that entry was rewritten, or this one was moved)",
                    row.id,
                )
            head = (
                None
                if row.events_head_id is None and row.events_head_hash is None
                else (int(row.events_head_id or 0), str(row.events_head_hash))
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
                events_head=head,
            )
            if recomputed != row.hash:
                raise _Broken("content does not match its hash", row.id)
            if head is not None:
                if head[0] == 0:
                    if head[1] != GENESIS_HASH:
                        raise _Broken("anchors an empty change log with a hash", row.id)
                else:
                    anchors[head[0]] = (row.id, head[1])
            prev_hash = row.hash
            done.audit_head = row.hash
            expected_id += 1
            done.audit_checked += 1
        last_id = rows[-1].id
        # Entries are immutable: release them instead of holding the whole log in the session.
        session.expunge_all()


def _verify_events(
    session: Session, anchors: dict[int, tuple[int, str]], done: _Progress
) -> dict[str, tuple[int, str | None]]:
    newest: dict[str, tuple[int, str | None]] = {}
    prev_hash = GENESIS_HASH
    last_id = 0
    while True:
        rows = session.execute(
            select(
                AlertEventRow.id,
                AlertEventRow.ts,
                AlertEventRow.kind,
                AlertEventRow.alert_id,
                AlertEventRow.institution_id,
                AlertEventRow.snapshot,
                AlertEventRow.state_digest,
                AlertEventRow.prev_hash,
                AlertEventRow.hash,
            )
            .where(AlertEventRow.id > last_id)
            .order_by(AlertEventRow.id)
            .limit(_VERIFY_BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            where = f"change-log entry {row.id}"
            if row.prev_hash != prev_hash:
                raise _Broken(
                    f"{where}: prev_hash does not match the entry before it (an entry was "
                    "deleted, rewritten or moved)"
                )
            recomputed = event_hash(
                prev_hash,
                id=row.id,
                ts=row.ts,
                kind=row.kind,
                alert_id=row.alert_id,
                institution_id=row.institution_id,
                snapshot=row.snapshot,
                state_digest=row.state_digest,
            )
            if recomputed != row.hash:
                raise _Broken(f"{where} (alert {row.alert_id}): content does not match its hash")
            anchor = anchors.pop(row.id, None)
            if anchor is not None and anchor[1] != row.hash:
                raise _Broken(
                    f"{where} is not the one audit entry {anchor[0]} recorded: the change log "
                    "was rewritten",
                    anchor[0],
                )
            newest[row.alert_id] = (row.id, row.state_digest)
            prev_hash = row.hash
            done.events_head = row.hash
            done.events_checked += 1
        last_id = rows[-1].id
    if anchors:
        event_id, (audit_id, _) = min(anchors.items())
        raise _Broken(
            f"change-log entry {event_id}, recorded by audit entry {audit_id}, is missing", audit_id
        )
    return newest


def _verify_alerts(
    session: Session, newest: dict[str, tuple[int, str | None]], done: _Progress
) -> None:
    last = ""
    while True:
        rows = session.execute(
            select(*_ALERTS.columns)
            .where(_ALERTS.c.alert_id > last)
            .order_by(_ALERTS.c.alert_id)
            .limit(_VERIFY_BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            recorded = newest.pop(row.alert_id, None)
            if recorded is None:
                raise _Broken(
                    f"alert {row.alert_id} has no change-log entry: it was inserted outside "
                    "the service"
                )
            event_id, digest = recorded
            if digest != alert_state_digest(row):
                raise _Broken(
                    f"alert {row.alert_id} is not in the state its newest change-log entry "
                    f"({event_id}) recorded: it was changed outside the service"
                )
            done.alerts_checked += 1
        last = rows[-1].alert_id
    if newest:
        alert_id, (event_id, _) = min(newest.items())
        raise _Broken(
            f"alert {alert_id} (change-log entry {event_id}) is missing from the alerts table: "
            "it was deleted outside the service"
        )


def _verify_url(url: str, expect_head: str | None, expect_events_head: str | None) -> VerifyResult:
    if url.startswith("postgresql://"):
        # The driver installed with the server extra is psycopg 3, not SQLAlchemy's psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return verify(session, expect_head, expect_events_head)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suptech.alerts.audit", description="Check the alert audit log's hash chain."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="verify the chain; exit 1 at the first broken link")
    check.add_argument("--db", required=True, help="database URL, e.g. sqlite:///alerts.db")
    check.add_argument("--expect-head", help="audit head hash noted earlier, to detect truncation")
    check.add_argument(
        "--expect-events-head", help="change-log head hash noted earlier, to detect truncation"
    )
    args = parser.parse_args(argv)
    try:
        result = _verify_url(args.db, args.expect_head, args.expect_events_head)
    except Exception as exc:  # noqa: BLE001 - any failure to read the log is a failed check
        print(f"ERROR: cannot read the audit log: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(
            f"OK: {result.checked} entries, head {result.head_hash}; "
            f"{result.events_checked} alert changes, head {result.events_head_hash}; "
            f"{result.alerts_checked} alerts in their recorded state"
        )
        return 0
    where = f"entry {result.first_broken_id}" if result.first_broken_id is not None else "chain"
    print(
        f"BROKEN: {where}: {result.reason} ({result.checked} entries, {result.events_checked} "
        f"alert changes, {result.alerts_checked} alerts verified before it)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
