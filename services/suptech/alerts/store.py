"""The alert store: findings in, alerts and their change log out, every change in one transaction.

Ordering of the change log (``alert_events``) is what makes StreamAlerts gap-free: an event id is
taken under a lock held until commit, so ids become visible in increasing order and a reader that
has seen id N will never later find a committed id below N. Writers take alert row locks first,
then the event-log lock, then the audit-chain lock, always in that order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple, cast

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from suptech.alerts import audit, bulk, grouping
from suptech.alerts.changes import ChangeSignal
from suptech.alerts.config import AlertsConfig
from suptech.alerts.models import (
    OUTBOX_FEEDBACK,
    OUTBOX_WEBHOOK,
    AlertEventRow,
    AlertRow,
    FindingRow,
    OutboxRow,
    SilenceRow,
)
from suptech.v1 import alerts_pb2, findings_pb2

__all__ = [
    "AlertFilter",
    "AlertStore",
    "IngestResult",
    "LoggedEvent",
    "NewAlert",
    "InvalidRequestError",
    "InvalidTransitionError",
    "NotFoundError",
    "OutOfScopeError",
    "Scope",
    "StoreError",
    "VersionConflictError",
    "MAX_NOTE_CHARS",
    "MAX_PAGE_SIZE",
    "alert_to_proto",
    "append_event",
    "append_events",
    "enqueue_webhook",
]

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 4000
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
DEFAULT_SILENCE_PAGE = 100
# Any constant distinct from audit's: the PostgreSQL advisory lock serialising event ids.
_PG_EVENT_LOCK = 0x5A0D18
_EVENTS_APPENDED = "suptech_alert_events_appended"
_RETRIES = 8

OPEN = alerts_pb2.ALERT_STATE_OPEN
ACKNOWLEDGED = alerts_pb2.ALERT_STATE_ACKNOWLEDGED
RESOLVED = alerts_pb2.ALERT_STATE_RESOLVED


class StoreError(Exception):
    """A request the store refuses; the service maps each subclass to a gRPC status."""


class NotFoundError(StoreError):
    pass


class VersionConflictError(StoreError):
    pass


class InvalidTransitionError(StoreError):
    pass


class InvalidRequestError(StoreError):
    pass


class OutOfScopeError(StoreError):
    """The caller's jurisdictions do not cover what it asked to change."""


@dataclass(frozen=True)
class Scope:
    """Institutions a caller may see; ``None`` means all of them."""

    institutions: frozenset[str] | None = None

    def allows(self, institution_id: str) -> bool:
        return self.institutions is None or institution_id in self.institutions


ALL = Scope()


@dataclass(frozen=True)
class AlertFilter:
    family: int = 0
    min_grade: int = 0
    institution_id: str = ""
    state: int = 0
    since: datetime | None = None
    until: datetime | None = None

    def fingerprint(self) -> str:
        raw = repr(
            (self.family, self.min_grade, self.institution_id, self.state, self.since, self.until)
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class IngestResult:
    new_findings: int = 0
    duplicates: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    # Clears of a condition whose alert is no longer open: nothing to attach them to.
    unmatched_clears: int = 0


@dataclass(slots=True)
class NewAlert:
    """An alert as plain values, as ingest creates, reads and writes alerts in bulk.

    Not an ORM object: building one costs ~0.5 ms and flushing it a round trip per alert.
    """

    alert_id: str
    group_key: str
    family: int
    institution_id: str
    entity_kind: str
    entity_id: str
    detector_id: str
    grade: int
    state: int
    summary: str
    first_seen: datetime
    last_seen: datetime
    ack_deadline: datetime | None
    created_time: datetime
    updated_time: datetime
    assignee: str = ""
    verdict: int = 0
    resolution_note: str = ""
    finding_count: int = 0
    silenced: bool = False
    auto_resolved: bool = False
    version: int = 1
    escalation_level: int = 0
    resolved_time: datetime | None = None

    def values(self) -> tuple[Any, ...]:
        """Column values for :func:`bulk.insert_rows` into ``alerts``, in ``COLUMNS`` order."""
        return _NEW_ALERT_VALUES(self)


NEW_ALERT_COLUMNS: tuple[str, ...] = NewAlert.__slots__
_NEW_ALERT_VALUES = attrgetter(*NEW_ALERT_COLUMNS)
_FINDING_COLUMNS = ("finding_id", "alert_id", "grade", "event_time", "received_time", "proto")
_EVENT_COLUMNS = (
    "id",
    "ts",
    "kind",
    "alert_id",
    "institution_id",
    "snapshot",
    "state_digest",
    "prev_hash",
    "hash",
    "traceparent",
)
# The longest traceparent kept (a version-00 one is 55 characters; the column holds 64).
_TRACEPARENT_MAX = 64
_ALERTS = cast(Table, AlertRow.__table__)
_FINDINGS = cast(Table, FindingRow.__table__)
_EVENTS = cast(Table, AlertEventRow.__table__)
_ALERT_COLUMNS = [_ALERTS.c[name] for name in NEW_ALERT_COLUMNS]
# What ingest changes in an existing alert (see _absorb), and the statement that writes it.
_INGEST_UPDATES = (
    "finding_count",
    "first_seen",
    "last_seen",
    "summary",
    "grade",
    "ack_deadline",
    "silenced",
    "updated_time",
    "version",
)
_UPDATE_ALERT = (
    update(_ALERTS)
    .where(
        _ALERTS.c.alert_id == bindparam("b_alert_id"),
        _ALERTS.c.version == bindparam("b_old_version"),
    )
    .values({name: bindparam(f"b_{name}") for name in _INGEST_UPDATES})
)


class LoggedEvent(NamedTuple):
    """An appended change-log entry: its id is the StreamAlerts cursor."""

    id: int
    kind: int


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP_FIELDS = ("first_seen", "last_seen", "ack_deadline", "created_time", "updated_time")


def _set_ts(target: Timestamp, dt: datetime) -> None:
    # Integer arithmetic on the difference: a third of Timestamp.FromDatetime's cost, which
    # mattered at five timestamps per change-log entry and hundreds of entries per batch.
    delta = dt - _EPOCH
    target.seconds = delta.days * 86400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def alert_to_proto(
    row: AlertRow | NewAlert, findings: Sequence[findings_pb2.Finding] = ()
) -> alerts_pb2.Alert:
    alert = alerts_pb2.Alert(
        alert_id=row.alert_id,
        family=row.family,  # type: ignore[arg-type]
        institution_id=row.institution_id,
        entity_kind=row.entity_kind,
        entity_id=row.entity_id,
        detector_id=row.detector_id,
        grade=row.grade,  # type: ignore[arg-type]
        state=row.state,  # type: ignore[arg-type]
        summary=row.summary,
        assignee=row.assignee,
        verdict=row.verdict,  # type: ignore[arg-type]
        resolution_note=row.resolution_note,
        finding_count=row.finding_count,
        silenced=row.silenced,
        version=row.version,
        escalation_level=row.escalation_level,
        auto_resolved=row.auto_resolved,
        findings=list(findings),
    )
    for name in _TIMESTAMP_FIELDS:
        value = getattr(row, name)
        if value is not None:
            _set_ts(getattr(alert, name), value)
    return alert


def lock_event_log(session: Session) -> None:
    """Hold the event-id lock until the transaction ends (see the module docstring).

    SQLite has one writer at a time, which orders ids the same way; the driver takes the writer
    lock only at the first write, so a write matching no row takes it before the chain's head is
    read.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_EVENT_LOCK})
    elif dialect == "sqlite":
        session.execute(text("UPDATE alert_events SET id = id WHERE 0 = 1"))


def append_event(session: Session, row: AlertRow, kind: int, now: datetime) -> LoggedEvent:
    """Record the alert as it now is in the change log; call after the alert row is flushed."""
    return append_events(session, [(row, kind)], now)[0]


def append_events(
    session: Session,
    changes: Sequence[tuple[AlertRow | NewAlert, int]],
    now: datetime,
    traces: Sequence[str | None] = (),
) -> list[LoggedEvent]:
    """Record several alerts at once (one lock, one multi-row insert), in the order given.

    Each entry is chained to the one before it and records the alert row's state digest
    (``audit.event_hash``, ``audit.alert_state_digest``): what verification holds the alerts
    table to. ``traces``, when given, holds each change's ``traceparent`` (or None), kept beside
    the entry and outside its hash.
    """
    if not changes:
        return []
    lock_event_log(session)
    # Read by the after-commit hook of AlertStore, which wakes this process's StreamAlerts.
    session.info[_EVENTS_APPENDED] = True
    head_id, prev = audit.events_head(session)
    if bulk.copy_supported(session):
        # Ids taken under the event-log lock, then the rows streamed with them.
        ids = bulk.reserve_ids(session, _EVENTS, len(changes))
    else:
        # Under SQLite's writer lock the next ids are the head's successors.
        ids = list(range(head_id + 1, head_id + 1 + len(changes)))
    rows = []
    tps = list(traces) or [None] * len(changes)
    for event_id, (row, kind), tp in zip(ids, changes, tps, strict=True):
        snapshot = alert_to_proto(row).SerializeToString()
        state = audit.alert_state_digest(row)
        digest = audit.event_hash(
            prev,
            id=event_id,
            ts=now,
            kind=kind,
            alert_id=row.alert_id,
            institution_id=row.institution_id,
            snapshot=snapshot,
            state_digest=state,
        )
        rows.append(
            (
                event_id,
                now,
                kind,
                row.alert_id,
                row.institution_id,
                snapshot,
                state,
                prev,
                digest,
                tp if tp is not None and len(tp) <= _TRACEPARENT_MAX else None,
            )
        )
        prev = digest
    bulk.insert_rows(session, _EVENTS, _EVENT_COLUMNS, rows)
    return [LoggedEvent(i, kind) for i, (_, kind) in zip(ids, changes, strict=True)]


def enqueue_webhook(
    session: Session, event: LoggedEvent, row: AlertRow | NewAlert, now: datetime
) -> OutboxRow | None:
    """Queue a webhook for the event unless the alert is silenced (silences mute notifications)."""
    if row.silenced:
        return None
    body = {
        "event": alerts_pb2.AlertEventKind.Name(event.kind),
        "cursor": str(event.id),
        "alert": MessageToDict(alert_to_proto(row)),
    }
    out = OutboxRow(
        kind=OUTBOX_WEBHOOK,
        payload=json.dumps(body, sort_keys=True).encode(),
        dedup_key=f"{row.alert_id}:{row.version}:{event.kind}",
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_time=now,
    )
    session.add(out)
    return out


def _active_silences(session: Session, now: datetime) -> list[SilenceRow]:
    return list(
        session.scalars(
            select(SilenceRow).where(SilenceRow.expired.is_(False), SilenceRow.ends_at > now)
        )
    )


def _attributes(row: AlertRow | NewAlert) -> dict[str, str]:
    return grouping.alert_attributes(
        institution_id=row.institution_id,
        family=row.family,
        entity_kind=row.entity_kind,
        entity_id=row.entity_id,
        detector_id=row.detector_id,
        grade=row.grade,
    )


def _is_silenced(row: AlertRow | NewAlert, silences: Iterable[SilenceRow]) -> bool:
    attrs = _attributes(row)
    return any(grouping.silence_matches(s.matchers, attrs) for s in silences)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, StaleDataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        msg = str(exc.orig).lower()
        # SQLite busy past its timeout, PostgreSQL deadlock or serialization failure.
        return "locked" in msg or "deadlock" in msg or "could not serialize" in msg
    return False


class AlertStore:
    """Every read and write of alerts; each public method is one transaction."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        config: AlertsConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = session_factory
        self._config = config
        self._clock = clock
        self._webhooks = bool(config.webhook_urls)
        self.changes = ChangeSignal()
        # Every writer (ingest, triage, escalation, housekeeping) shares this session factory,
        # so one hook wakes StreamAlerts after any commit that grew the change log.
        sa_event.listen(session_factory, "after_commit", self._after_commit)
        sa_event.listen(session_factory, "after_soft_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_EVENTS_APPENDED, False):
            self.changes.notify()

    @staticmethod
    def _after_rollback(session: Session, _previous: Any) -> None:
        session.info.pop(_EVENTS_APPENDED, None)

    def ping(self) -> bool:
        """Whether the database answers a read of the alerts table right now."""
        try:
            with self._sessions() as s:
                s.execute(select(AlertRow.alert_id).limit(1)).all()
        except SQLAlchemyError as exc:
            log.info("database probe failed: %s", type(exc).__name__)
            return False
        return True

    # --- findings in ---------------------------------------------------------------------

    def ingest(
        self,
        findings: Sequence[findings_pb2.Finding],
        traces: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """Group valid findings into alerts; a finding already stored is skipped (idempotent).

        ``traces`` maps a finding id to the ``traceparent`` of its store span: each alert change
        keeps the one of the last finding that changed it, for StreamAlerts to continue.
        """
        for attempt in range(_RETRIES):
            try:
                with self._sessions() as s, s.begin():
                    return self._ingest(s, findings, traces or {})
            except (StaleDataError, IntegrityError, DBAPIError) as exc:
                if not _retryable(exc) or attempt == _RETRIES - 1:
                    raise
                log.info("ingest retry %d after %s", attempt + 1, type(exc).__name__)
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _ingest(
        self, s: Session, findings: Sequence[findings_pb2.Finding], traces: Mapping[str, str]
    ) -> IngestResult:
        now = self._clock()
        result = IngestResult()
        unique: dict[str, findings_pb2.Finding] = {}
        for f in findings:
            unique.setdefault(f.finding_id, f)
        result.duplicates = len(findings) - len(unique)
        ids = list(unique)
        known: set[str] = set()
        for i in range(0, len(ids), 500):
            known.update(
                s.scalars(
                    select(FindingRow.finding_id).where(FindingRow.finding_id.in_(ids[i : i + 500]))
                )
            )
        result.duplicates += len(known)
        fresh = sorted(
            (f for fid, f in unique.items() if fid not in known),
            key=lambda f: (f.event_time.seconds, f.event_time.nanos),
        )
        if not fresh:
            return result
        silences = _active_silences(s, now)
        by_group: dict[str, list[findings_pb2.Finding]] = {}
        for f in fresh:
            by_group.setdefault(grouping.group_key(f), []).append(f)

        # id -> (row, created, old grade)
        touched: dict[str, tuple[NewAlert, bool, int]] = {}
        # id -> traceparent of the last finding with one that changed the alert
        caused_by: dict[str, str] = {}
        new_alerts: list[NewAlert] = []
        max_grade: dict[str, int] = {}
        finding_rows: list[tuple[Any, ...]] = []
        # Two queries for the whole batch, not two per group: the open alerts of every group
        # touched, and the worst finding grade of each.
        # Plain values, not ORM objects: loading and flushing those cost a round trip and about
        # half a millisecond per alert; the changed ones are written by one executemany below.
        open_alerts: dict[str, list[NewAlert]] = {k: [] for k in by_group}
        keys = list(by_group)
        for i in range(0, len(keys), 500):
            for values in s.execute(
                select(*_ALERT_COLUMNS).where(
                    _ALERTS.c.group_key.in_(keys[i : i + 500]), _ALERTS.c.state != RESOLVED
                )
            ):
                a = NewAlert(*values)
                open_alerts[a.group_key].append(a)
        known_grades: dict[str, int] = {}
        open_ids = [a.alert_id for rows in open_alerts.values() for a in rows]
        for i in range(0, len(open_ids), 500):
            for alert_id, grade in s.execute(
                select(FindingRow.alert_id, func.max(FindingRow.grade))
                .where(FindingRow.alert_id.in_(open_ids[i : i + 500]))
                .group_by(FindingRow.alert_id)
            ):
                known_grades[alert_id] = int(grade or 0)
        for key, group in by_group.items():
            candidates: list[NewAlert] = sorted(
                open_alerts[key], key=lambda a: a.last_seen, reverse=True
            )
            for f in group:
                event_time = f.event_time.ToDatetime(tzinfo=UTC)
                row = next(
                    (
                        a
                        for a in candidates
                        if grouping.joins_group(
                            a.first_seen, a.last_seen, event_time, self._config.group_window_s
                        )
                    ),
                    None,
                )
                if f.phase == findings_pb2.PHASE_CLEAR:
                    # The end of a condition: kept with its alert as evidence, never an alarm
                    # (it neither opens an alert nor grows one).
                    if row is None:
                        result.unmatched_clears += 1
                    else:
                        finding_rows.append(
                            (f.finding_id, row.alert_id, 0, event_time, now, f.SerializeToString())
                        )
                    continue
                if row is None:
                    row = self._new_alert(f, key, event_time, now)
                    new_alerts.append(row)
                    candidates.insert(0, row)
                    touched[row.alert_id] = (row, True, row.grade)
                    max_grade[row.alert_id] = f.grade
                elif row.alert_id not in touched:
                    touched[row.alert_id] = (row, False, row.grade)
                    max_grade[row.alert_id] = known_grades.get(row.alert_id, 0)
                self._absorb(row, f, event_time, max_grade, now)
                tp = traces.get(f.finding_id)
                if tp:
                    caused_by[row.alert_id] = tp
                finding_rows.append(
                    (
                        f.finding_id,
                        row.alert_id,
                        f.grade,
                        event_time,
                        now,
                        f.SerializeToString(),
                    )
                )
        for row, created, old_grade in touched.values():
            if created or row.grade != old_grade:
                row.silenced = _is_silenced(row, silences)
        # Alerts first: findings reference them, and a stale alert version aborts here.
        self._update_alerts(s, [row for row, created, _ in touched.values() if not created])
        bulk.insert_rows(s, _ALERTS, NEW_ALERT_COLUMNS, [a.values() for a in new_alerts])
        bulk.insert_rows(s, _FINDINGS, _FINDING_COLUMNS, finding_rows)
        events = append_events(
            s,
            [
                (
                    row,
                    alerts_pb2.ALERT_EVENT_KIND_CREATED
                    if created
                    else alerts_pb2.ALERT_EVENT_KIND_UPDATED,
                )
                for row, created, _ in touched.values()
            ],
            now,
            [caused_by.get(alert_id) for alert_id in touched] if caused_by else (),
        )
        for event, (alert_id, (row, created, old_grade)) in zip(
            events, touched.items(), strict=True
        ):
            if self._webhooks and (created or row.grade > old_grade):
                enqueue_webhook(s, event, row, now)
            (result.created if created else result.updated).append(alert_id)
        result.new_findings = len(finding_rows)
        return result

    @staticmethod
    def _update_alerts(s: Session, rows: Sequence[NewAlert]) -> None:
        """Write what ingest changed in existing alerts, each checked against its read version."""
        if not rows:
            return
        params = []
        for row in rows:
            params.append({f"b_{name}": getattr(row, name) for name in _INGEST_UPDATES})
            params[-1]["b_alert_id"] = row.alert_id
            params[-1]["b_old_version"] = row.version
            row.version += 1
            params[-1]["b_version"] = row.version
        done = s.execute(_UPDATE_ALERT, params).rowcount  # type: ignore[attr-defined]
        if done != len(rows):
            # Triage changed one of them since it was read: the whole batch is retried.
            raise StaleDataError(f"{len(rows) - done} of {len(rows)} alerts changed concurrently")

    def _new_alert(
        self, f: findings_pb2.Finding, key: str, event_time: datetime, now: datetime
    ) -> NewAlert:
        grade = max(f.grade, findings_pb2.GRADE_GENERAL)
        return NewAlert(
            alert_id=uuid.uuid4().hex,
            group_key=key,
            family=f.family,
            institution_id=f.institution_id,
            entity_kind=f.entity_kind,
            entity_id=f.entity_id,
            detector_id=grouping.detector_id(f),
            grade=grade,
            state=OPEN,
            summary=f.summary,
            assignee="",
            verdict=0,
            resolution_note="",
            finding_count=0,
            silenced=False,
            auto_resolved=False,
            first_seen=event_time,
            last_seen=event_time,
            ack_deadline=now + timedelta(seconds=self._config.deadline_s(grade)),
            escalation_level=0,
            created_time=now,
            updated_time=now,
        )

    def _absorb(
        self,
        row: AlertRow | NewAlert,
        f: findings_pb2.Finding,
        event_time: datetime,
        max_grade: dict[str, int],
        now: datetime,
    ) -> None:
        row.finding_count = (row.finding_count or 0) + 1
        if event_time >= row.last_seen:
            row.last_seen = event_time
            row.summary = f.summary or row.summary
        row.first_seen = min(row.first_seen, event_time)
        max_grade[row.alert_id] = max(max_grade[row.alert_id], f.grade)
        grade = max(
            row.grade,
            grouping.grown_grade(
                max_grade[row.alert_id], row.finding_count, self._config.growth_thresholds
            ),
        )
        if grade != row.grade:
            row.grade = grade
            if row.state == OPEN:
                # A worse alert is due sooner, never later than it already was.
                due = row.created_time + timedelta(seconds=self._config.deadline_s(grade))
                row.ack_deadline = min(row.ack_deadline or due, due)
        row.updated_time = now

    # --- reads ---------------------------------------------------------------------------

    def list_alerts(
        self, flt: AlertFilter, page_size: int, page_token: str, scope: Scope = ALL
    ) -> tuple[list[alerts_pb2.Alert], str]:
        if page_size > MAX_PAGE_SIZE:
            raise InvalidRequestError(f"page_size must be at most {MAX_PAGE_SIZE}, got {page_size}")
        size = page_size or DEFAULT_PAGE_SIZE
        conds: list[ColumnElement[bool]] = []
        if flt.family:
            conds.append(AlertRow.family == flt.family)
        if flt.min_grade:
            conds.append(AlertRow.grade >= flt.min_grade)
        if flt.institution_id:
            conds.append(AlertRow.institution_id == flt.institution_id)
        if flt.state:
            conds.append(AlertRow.state == flt.state)
        if flt.since is not None:
            conds.append(AlertRow.last_seen >= flt.since)
        if flt.until is not None:
            conds.append(AlertRow.first_seen < flt.until)
        if scope.institutions is not None:
            conds.append(AlertRow.institution_id.in_(sorted(scope.institutions)))
        if page_token:
            after_time, after_id = self._decode_token(page_token, flt)
            conds.append(
                or_(
                    AlertRow.created_time < after_time,
                    and_(AlertRow.created_time == after_time, AlertRow.alert_id < after_id),
                )
            )
        stmt = (
            select(AlertRow)
            .where(*conds)
            .order_by(AlertRow.created_time.desc(), AlertRow.alert_id.desc())
            .limit(size + 1)
        )
        with self._sessions() as s:
            rows = list(s.scalars(stmt))
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = self._encode_token(last.created_time, last.alert_id, flt)
        return [alert_to_proto(r) for r in rows], token

    @staticmethod
    def _encode_token(created: datetime, alert_id: str, flt: AlertFilter) -> str:
        raw = json.dumps({"t": created.isoformat(), "i": alert_id, "f": flt.fingerprint()})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode_token(token: str, flt: AlertFilter) -> tuple[datetime, str]:
        try:
            doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.encode()))
            when = datetime.fromisoformat(doc["t"])
            alert_id = str(doc["i"])
            fingerprint = doc["f"]
        except (ValueError, KeyError, TypeError):
            raise InvalidRequestError("page_token is not one this service issued") from None
        if fingerprint != flt.fingerprint():
            raise InvalidRequestError("page_token belongs to a query with other filters")
        return when, alert_id

    def get_alert(self, alert_id: str, scope: Scope = ALL) -> alerts_pb2.Alert:
        with self._sessions() as s:
            row = s.get(AlertRow, alert_id)
            if row is None or not scope.allows(row.institution_id):
                raise NotFoundError(f"alert {alert_id!r} not found")
            protos = s.scalars(
                select(FindingRow.proto)
                .where(FindingRow.alert_id == alert_id)
                .order_by(FindingRow.event_time, FindingRow.id)
            )
            found = [findings_pb2.Finding.FromString(p) for p in protos]
        return alert_to_proto(row, found)

    def audit_trail(self, alert_id: str, scope: Scope = ALL) -> list[audit.AuditEntry]:
        """The audit entries of one alert, oldest first; NotFound as in :meth:`get_alert`."""
        with self._sessions() as s:
            row = s.get(AlertRow, alert_id)
            if row is None or not scope.allows(row.institution_id):
                raise NotFoundError(f"alert {alert_id!r} not found")
            return audit.entries_for_alert(s, alert_id)

    def head_cursor(self) -> int:
        """Id of the newest event (0 when none): where a stream "from now" starts."""
        with self._sessions() as s:
            return int(s.scalar(select(func.max(AlertEventRow.id))) or 0)

    def events_after(
        self, cursor: int, limit: int = 500, scope: Scope = ALL
    ) -> tuple[list[tuple[int, int, bytes, str | None]], int]:
        """Events with id > cursor in order, as (id, kind, Alert bytes, traceparent or None),
        and the cursor reached.

        The cursor reached passes events out of scope too, so a scoped reader does not rescan.
        """
        with self._sessions() as s:
            rows = s.execute(
                select(
                    AlertEventRow.id,
                    AlertEventRow.kind,
                    AlertEventRow.institution_id,
                    AlertEventRow.snapshot,
                    AlertEventRow.traceparent,
                )
                .where(AlertEventRow.id > cursor)
                .order_by(AlertEventRow.id)
                .limit(limit)
            ).all()
        reached = rows[-1].id if rows else cursor
        events = [
            (r.id, r.kind, r.snapshot, r.traceparent)
            for r in rows
            if scope.allows(r.institution_id)
        ]
        return events, reached

    # --- human actions -------------------------------------------------------------------

    def acknowledge(
        self,
        alert_id: str,
        expected_version: int,
        *,
        actor: str,
        role: str,
        note: str = "",
        scope: Scope = ALL,
    ) -> alerts_pb2.Alert:
        _check_note(note)

        def change(row: AlertRow, s: Session, now: datetime) -> dict[str, Any]:
            if row.state != OPEN:
                raise InvalidTransitionError(
                    f"alert {alert_id} is {_state_name(row.state)}: "
                    "only an open alert can be acknowledged"
                )
            row.state = ACKNOWLEDGED
            return {"note": note, "from_version": row.version}

        return self._mutate(alert_id, expected_version, actor, role, "acknowledge", scope, change)

    def assign(
        self,
        alert_id: str,
        expected_version: int,
        *,
        actor: str,
        role: str,
        assignee: str,
        scope: Scope = ALL,
    ) -> alerts_pb2.Alert:
        if not assignee.strip():
            raise InvalidRequestError("assignee is required")
        if len(assignee) > 256:
            raise InvalidRequestError("assignee must be at most 256 characters")

        def change(row: AlertRow, s: Session, now: datetime) -> dict[str, Any]:
            if row.state == RESOLVED:
                raise InvalidTransitionError(f"alert {alert_id} is resolved: it cannot be assigned")
            previous = row.assignee
            row.assignee = assignee
            return {"assignee": assignee, "previous": previous, "from_version": row.version}

        return self._mutate(alert_id, expected_version, actor, role, "assign", scope, change)

    def resolve(
        self,
        alert_id: str,
        expected_version: int,
        *,
        actor: str,
        role: str,
        verdict: int,
        note: str = "",
        scope: Scope = ALL,
    ) -> alerts_pb2.Alert:
        _check_note(note)
        if verdict not in alerts_pb2.Verdict.values() or verdict == 0:
            raise InvalidRequestError("verdict is required (true positive, false positive, benign)")

        def change(row: AlertRow, s: Session, now: datetime) -> dict[str, Any]:
            if row.state == RESOLVED:
                raise InvalidTransitionError(f"alert {alert_id} is already resolved")
            row.state = RESOLVED
            row.verdict = verdict
            row.resolution_note = note
            row.resolved_time = now
            finding_ids = list(
                s.scalars(
                    select(FindingRow.finding_id)
                    .where(FindingRow.alert_id == alert_id)
                    .order_by(FindingRow.id)
                )
            )
            feedback = alerts_pb2.Feedback(
                alert_id=row.alert_id,
                verdict=verdict,  # type: ignore[arg-type]
                institution_id=row.institution_id,
                family=row.family,  # type: ignore[arg-type]
                entity_kind=row.entity_kind,
                entity_id=row.entity_id,
                detector_id=row.detector_id,
                finding_ids=finding_ids,
                actor=actor,
            )
            feedback.time.FromDatetime(now)
            # Through the outbox: the verdict reaches Kafka even if Kafka is down right now.
            s.add(
                OutboxRow(
                    kind=OUTBOX_FEEDBACK,
                    payload=feedback.SerializeToString(),
                    dedup_key=f"feedback:{alert_id}",
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                    created_time=now,
                )
            )
            verdict_name = alerts_pb2.Verdict.Name(verdict)
            return {"verdict": verdict_name, "note": note, "from_version": row.version}

        return self._mutate(
            alert_id,
            expected_version,
            actor,
            role,
            "resolve",
            scope,
            change,
            kind=alerts_pb2.ALERT_EVENT_KIND_RESOLVED,
        )

    def _mutate(
        self,
        alert_id: str,
        expected_version: int,
        actor: str,
        role: str,
        action: str,
        scope: Scope,
        change: Callable[[AlertRow, Session, datetime], dict[str, Any]],
        kind: int = alerts_pb2.ALERT_EVENT_KIND_UPDATED,
    ) -> alerts_pb2.Alert:
        attempts = 1 if expected_version else 3
        attempt = locks = 0
        while True:
            try:
                with self._sessions() as s, s.begin():
                    now = self._clock()
                    row = s.get(AlertRow, alert_id)
                    if row is None or not scope.allows(row.institution_id):
                        raise NotFoundError(f"alert {alert_id!r} not found")
                    if expected_version and row.version != expected_version:
                        raise VersionConflictError(
                            f"alert {alert_id} is at version {row.version}, "
                            f"not {expected_version}: reload it and retry"
                        )
                    details = change(row, s, now)
                    row.updated_time = now
                    s.flush()
                    event = append_event(s, row, kind, now)
                    audit.append(
                        s,
                        actor=actor,
                        role=role,
                        action=action,
                        alert_id=alert_id,
                        details=details,
                        ts=now,
                    )
                    if self._webhooks and kind == alerts_pb2.ALERT_EVENT_KIND_RESOLVED:
                        enqueue_webhook(s, event, row, now)
                    return alert_to_proto(row)
            except StaleDataError:
                # Someone else changed the alert between our read and our write.
                attempt += 1
                if attempt == attempts:
                    raise VersionConflictError(
                        f"alert {alert_id} was changed concurrently: reload it and retry"
                    ) from None
            except DBAPIError as exc:
                # A database busy past its timeout (SQLite's "database is locked") or a
                # PostgreSQL deadlock: nothing was written, so it is tried again, as an ingest
                # is. Seen in CI: an assignment racing two other writers and a polling reader
                # failed with "database is locked" (its cause not established: the busy
                # timeout is 10 s).
                locks += 1
                if isinstance(exc, IntegrityError) or not _retryable(exc) or locks >= _RETRIES:
                    raise
                log.info("%s retry %d after %s", action, locks, type(exc).__name__)
                time.sleep(0.01 * locks)

    # --- silences ------------------------------------------------------------------------

    def create_silence(
        self,
        matchers: Sequence[tuple[str, str]],
        ends_at: datetime,
        *,
        comment: str,
        actor: str,
        role: str,
    ) -> alerts_pb2.Silence:
        if not matchers:
            raise InvalidRequestError("a silence needs at least one matcher")
        for name, value in matchers:
            if name not in grouping.MATCHER_NAMES:
                known = ", ".join(sorted(grouping.MATCHER_NAMES))
                raise InvalidRequestError(f"unknown matcher {name!r} (one of {known})")
            if not value:
                raise InvalidRequestError(f"matcher {name!r} needs a value")
        _check_note(comment)
        with self._sessions() as s, s.begin():
            now = self._clock()
            if ends_at <= now:
                raise InvalidRequestError("ends_at must be in the future")
            row = SilenceRow(
                silence_id=uuid.uuid4().hex,
                matchers=[{"name": n, "value": v} for n, v in matchers],
                ends_at=ends_at,
                comment=comment,
                created_by=actor,
                created_time=now,
                expired=False,
            )
            s.add(row)
            s.flush()
            self._refresh_silenced(s, now)
            audit.append(
                s,
                actor=actor,
                role=role,
                action="create_silence",
                alert_id=None,
                details={
                    "silence_id": row.silence_id,
                    "matchers": row.matchers,
                    "ends_at": ends_at.isoformat(),
                    "comment": comment,
                },
                ts=now,
            )
            return _silence_to_proto(row)

    def expire_silence(
        self, silence_id: str, *, actor: str, role: str, scope: Scope = ALL
    ) -> alerts_pb2.Silence:
        with self._sessions() as s, s.begin():
            now = self._clock()
            row = s.get(SilenceRow, silence_id)
            if row is None:
                raise NotFoundError(f"silence {silence_id!r} not found")
            if not _silence_within(row, scope):
                # Lifting a silence would un-mute other jurisdictions' alerts (and webhooks).
                raise OutOfScopeError(
                    f"silence {silence_id} covers institutions outside your jurisdiction"
                )
            if row.expired:
                raise InvalidTransitionError(f"silence {silence_id} has already expired")
            row.expired = True
            s.flush()
            self._refresh_silenced(s, now)
            audit.append(
                s,
                actor=actor,
                role=role,
                action="expire_silence",
                alert_id=None,
                details={"silence_id": silence_id},
                ts=now,
            )
            return _silence_to_proto(row)

    def list_silences(
        self, include_expired: bool, page_size: int, scope: Scope = ALL
    ) -> list[alerts_pb2.Silence]:
        """Silences newest first, only those that can mute an alert within ``scope``."""
        if page_size > MAX_PAGE_SIZE:
            raise InvalidRequestError(f"page_size must be at most {MAX_PAGE_SIZE}, got {page_size}")
        size = page_size or DEFAULT_SILENCE_PAGE
        stmt = select(SilenceRow).order_by(
            SilenceRow.created_time.desc(), SilenceRow.silence_id.desc()
        )
        out: list[alerts_pb2.Silence] = []
        with self._sessions() as s:
            now = self._clock()
            if not include_expired:
                stmt = stmt.where(SilenceRow.expired.is_(False), SilenceRow.ends_at > now)
            # Scope is filtered in Python (matchers are JSON); the stream stops at ``size``.
            for row in s.scalars(stmt.execution_options(yield_per=200)):
                if not _silence_touches(row, scope):
                    continue
                sil = _silence_to_proto(row)
                # Ended but not yet swept by housekeeping: it mutes nothing any more.
                sil.expired = row.expired or row.ends_at <= now
                sil.caller_may_expire = not sil.expired and _silence_within(row, scope)
                out.append(sil)
                if len(out) == size:
                    break
        return out

    def _refresh_silenced(self, s: Session, now: datetime) -> None:
        """Bring ``silenced`` of every unresolved alert in line with the active silences."""
        silences = _active_silences(s, now)
        changed: list[AlertRow] = []
        for row in s.scalars(select(AlertRow).where(AlertRow.state != RESOLVED)):
            silenced = _is_silenced(row, silences)
            if silenced != row.silenced:
                row.silenced = silenced
                row.updated_time = now
                changed.append(row)
        s.flush()
        for row in changed:
            append_event(s, row, alerts_pb2.ALERT_EVENT_KIND_UPDATED, now)

    # --- housekeeping --------------------------------------------------------------------

    def auto_resolve(self) -> list[str]:
        """Resolve alerts quiet for the configured period; return their ids."""
        with self._sessions() as s, s.begin():
            now = self._clock()
            cutoff = now - timedelta(seconds=self._config.auto_resolve_s)
            rows = list(
                s.scalars(
                    select(AlertRow)
                    .where(
                        AlertRow.state != RESOLVED,
                        AlertRow.last_seen <= cutoff,
                        # A late or replayed alert lives the quiet period too, whatever its
                        # findings' event time.
                        AlertRow.created_time <= cutoff,
                    )
                    .order_by(AlertRow.alert_id)
                    .limit(500)
                )
            )
            for row in rows:
                row.state = RESOLVED
                row.auto_resolved = True
                row.resolved_time = now
                row.updated_time = now
            s.flush()
            for row in rows:
                append_event(s, row, alerts_pb2.ALERT_EVENT_KIND_RESOLVED, now)
                audit.append(
                    s,
                    actor="system",
                    role="system",
                    action="auto_resolve",
                    alert_id=row.alert_id,
                    details={"quiet_s": self._config.auto_resolve_s},
                    ts=now,
                )
            return [r.alert_id for r in rows]

    def expire_silences(self) -> int:
        """Mark silences past their end as expired and unsilence what they covered."""
        with self._sessions() as s, s.begin():
            now = self._clock()
            due = list(
                s.scalars(
                    select(SilenceRow).where(
                        SilenceRow.expired.is_(False), SilenceRow.ends_at <= now
                    )
                )
            )
            for row in due:
                row.expired = True
            if due:
                s.flush()
                self._refresh_silenced(s, now)
            return len(due)


def _silence_within(row: SilenceRow, scope: Scope) -> bool:
    """Whether every institution the silence can cover is in ``scope``.

    A silence without an institution_id matcher covers every institution.
    """
    if scope.institutions is None:
        return True
    named = [m["value"] for m in row.matchers if m["name"] == "institution_id"]
    return bool(named) and all(scope.allows(i) for i in named)


def _silence_touches(row: SilenceRow, scope: Scope) -> bool:
    """Whether the silence can mute an alert in ``scope``: one without an institution_id
    matcher mutes every institution's, so a scoped supervisor must see why hers are silenced."""
    named = [m["value"] for m in row.matchers if m["name"] == "institution_id"]
    return not named or any(scope.allows(i) for i in named)


def _silence_to_proto(row: SilenceRow) -> alerts_pb2.Silence:
    sil = alerts_pb2.Silence(
        silence_id=row.silence_id,
        matchers=[alerts_pb2.Matcher(name=m["name"], value=m["value"]) for m in row.matchers],
        comment=row.comment,
        created_by=row.created_by,
        expired=row.expired,
    )
    sil.ends_at.FromDatetime(row.ends_at)
    sil.created_time.FromDatetime(row.created_time)
    return sil


def _check_note(note: str) -> None:
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidRequestError(f"note is {len(note)} characters, at most {MAX_NOTE_CHARS}")


def _state_name(state: int) -> str:
    return alerts_pb2.AlertState.Name(state).removeprefix("ALERT_STATE_").lower()
