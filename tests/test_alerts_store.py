"""The alert store on both databases it supports (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from suptech.alerts import bulk
from suptech.alerts.config import AlertsConfig
from suptech.alerts.database import open_database
from suptech.alerts.models import (
    OUTBOX_FEEDBACK,
    OUTBOX_WEBHOOK,
    AlertEventRow,
    AlertRow,
    FindingRow,
    OutboxRow,
)
from suptech.alerts.store import (
    AlertFilter,
    AlertStore,
    InvalidRequestError,
    InvalidTransitionError,
    NewAlert,
    NotFoundError,
    Scope,
    VersionConflictError,
    alert_to_proto,
)
from suptech.v1 import alerts_pb2, findings_pb2

T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def finding(
    n: int, *, entity: str = "a1", minutes: float = 0, grade: int = 1, institution: str = "bank-1"
) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"{institution}-{entity}-{n}",
        family=findings_pb2.FAMILY_SANDBOX,
        institution_id=institution,
        entity_kind="app",
        entity_id=entity,
        rule_id="user_cap",
        grade=grade,
        summary=f"over cap #{n}",  # type: ignore[arg-type]
    )
    f.event_time.FromDatetime(T0 + timedelta(minutes=minutes))
    return f


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[AlertStore]:
    engine, sessions = open_database(db_url)
    open_database(db_url)  # migrating twice is a no-op
    yield AlertStore(
        sessions,
        AlertsConfig(
            group_window_s=3600, auto_resolve_s=7200, webhook_urls=("http://h",), webhook_secret="s"
        ),
        clock=clock,
    )
    engine.dispose()


def test_ingest_groups_within_window_and_is_idempotent(store: AlertStore) -> None:
    first = store.ingest([finding(1), finding(2, minutes=30), finding(3, minutes=200)])
    assert first.new_findings == 3 and len(first.created) == 2  # 200 min is past the 1 h window
    again = store.ingest([finding(1), finding(2, minutes=30), finding(3, minutes=200)])
    assert again.new_findings == 0 and again.duplicates == 3 and not again.created
    alerts, _ = store.list_alerts(AlertFilter(), 50, "")
    assert sorted(a.finding_count for a in alerts) == [1, 2]
    two = next(a for a in alerts if a.finding_count == 2)
    assert two.first_seen.ToDatetime(tzinfo=UTC) == T0
    assert two.last_seen.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=30)


def test_a_condition_clear_joins_its_alert_and_never_opens_one(store: AlertStore) -> None:
    (aid,) = store.ingest([finding(1)]).created
    clear = finding(2, minutes=20)
    clear.phase = findings_pb2.PHASE_CLEAR
    result = store.ingest([clear])
    assert result.new_findings == 1 and not result.created and result.unmatched_clears == 0
    assert store.get_alert(aid).finding_count == 1  # the clear is evidence, not a repeat
    late = finding(3, minutes=600)
    late.phase = findings_pb2.PHASE_CLEAR
    orphan = store.ingest([late])
    assert orphan.unmatched_clears == 1 and not orphan.created and orphan.new_findings == 0
    alerts, _ = store.list_alerts(AlertFilter(), 50, "")
    assert [a.alert_id for a in alerts] == [aid]


def test_resolved_alert_is_not_reopened_by_new_findings(store: AlertStore) -> None:
    (aid,) = store.ingest([finding(1)]).created
    store.resolve(aid, 0, actor="s", role="supervisor", verdict=alerts_pb2.VERDICT_BENIGN)
    result = store.ingest([finding(2, minutes=5)])
    assert len(result.created) == 1 and result.created[0] != aid
    assert store.get_alert(aid).finding_count == 1


def test_version_conflicts_and_transitions(store: AlertStore) -> None:
    (aid,) = store.ingest([finding(1)]).created
    a = store.get_alert(aid)
    acked = store.acknowledge(aid, a.version, actor="li", role="analyst", note="looking")
    assert acked.version == a.version + 1 and acked.state == alerts_pb2.ALERT_STATE_ACKNOWLEDGED
    with pytest.raises(VersionConflictError):
        store.assign(aid, a.version, actor="li", role="analyst", assignee="zhang")
    with pytest.raises(InvalidTransitionError):
        store.acknowledge(aid, 0, actor="li", role="analyst")
    with pytest.raises(InvalidRequestError):
        store.resolve(aid, 0, actor="li", role="analyst", verdict=0)
    with pytest.raises(InvalidRequestError):
        store.acknowledge(aid, 0, actor="li", role="analyst", note="x" * 4001)
    with pytest.raises(NotFoundError):
        store.get_alert(aid, Scope(frozenset({"bank-2"})))
    store.resolve(
        aid, 0, actor="wang", role="supervisor", verdict=alerts_pb2.VERDICT_FALSE_POSITIVE
    )
    with pytest.raises(InvalidTransitionError):
        store.assign(aid, 0, actor="li", role="analyst", assignee="zhang")
    with store._sessions() as s:  # the verdict waits in the outbox, exactly once
        rows = list(s.scalars(select(OutboxRow).where(OutboxRow.kind == OUTBOX_FEEDBACK)))
        assert len(rows) == 1
        fb = alerts_pb2.Feedback.FromString(rows[0].payload)
        assert fb.verdict == alerts_pb2.VERDICT_FALSE_POSITIVE and list(fb.finding_ids) == [
            "bank-1-a1-1"
        ]
        hooks = list(s.scalars(select(OutboxRow).where(OutboxRow.kind == OUTBOX_WEBHOOK)))
        assert len(hooks) == 2  # created, resolved


def test_concurrent_acknowledgements_exactly_one_wins(store: AlertStore) -> None:
    (aid,) = store.ingest([finding(1)]).created
    version = store.get_alert(aid).version
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def ack(i: int) -> None:
        start.wait()
        try:
            store.acknowledge(aid, version, actor=f"c{i}", role="analyst")
            outcomes.append("ok")
        except VersionConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=ack, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]


def test_a_concurrent_reader_never_misses_an_event(store: AlertStore) -> None:
    """Writers race while a reader follows the log by cursor: it must end with every event."""
    done = threading.Event()
    seen: list[int] = []

    def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            events, cursor = store.events_after(cursor, 100)
            seen.extend(e[0] for e in events)
            if finished and not events:
                return

    reader = threading.Thread(target=follow)
    reader.start()

    def write(w: int) -> None:
        for n in range(15):
            (aid,) = store.ingest([finding(n, entity=f"w{w}-{n}")]).created
            store.assign(aid, 0, actor="x", role="analyst", assignee=f"u{n}")

    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    everything, _ = store.events_after(0, 10_000)
    assert seen == [e[0] for e in everything] and len(seen) == 90


def test_racing_ingests_of_the_same_findings_store_each_finding_once(
    db_url: str, clock: Clock
) -> None:
    """Two replicas handed the same batch (a rebalance): one stores it, the other retries and
    finds it stored, with no error and no second alert."""
    stores = []
    engines = []
    for _ in range(2):
        engine, sessions = open_database(db_url)
        engines.append(engine)
        stores.append(AlertStore(sessions, AlertsConfig(group_window_s=3600), clock=clock))
    batch = [finding(n, entity=f"race-{n}") for n in range(40)]
    start = threading.Barrier(2)
    results = []

    def ingest(store: AlertStore) -> None:
        start.wait()
        results.append(store.ingest(batch))

    threads = [threading.Thread(target=ingest, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.new_findings for r in results) == [0, 40]
    assert sorted(r.duplicates for r in results) == [0, 40]
    events, _ = stores[0].events_after(0, 1000)
    assert len(events) == 40 == len({e[0] for e in events})
    with stores[0]._sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlertRow)) == 40
        assert s.scalar(select(func.count()).select_from(FindingRow)) == 40
    for engine in engines:
        engine.dispose()


def test_bulk_insert_reports_a_duplicate_key_as_integrity_error(store: AlertStore) -> None:
    """The consumer splits a batch on any SQLAlchemy error: COPY must not leak driver errors."""
    (alert_id,) = store.ingest([finding(1)]).created
    findings = FindingRow.__table__
    assert isinstance(findings, Table)
    row = ("bank-1-a1-1", alert_id, 1, T0, T0, b"")
    with store._sessions() as s, pytest.raises(IntegrityError):
        bulk.insert_rows(
            s,
            findings,
            ("finding_id", "alert_id", "grade", "event_time", "received_time", "proto"),
            [row],
        )
    assert store.get_alert(alert_id).finding_count == 1


def test_event_ids_follow_the_order_of_appends(store: AlertStore) -> None:
    """Cursor order is change order: the last change to an alert has its highest event id."""
    created = store.ingest([finding(n, entity=f"o{n}") for n in range(30)]).created
    store.ingest([finding(100 + n, entity=f"o{n}", minutes=1) for n in range(30)])
    events, _ = store.events_after(0, 1000)
    ids = [e[0] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 60
    kinds = [e[1] for e in events]
    assert (
        kinds
        == [alerts_pb2.ALERT_EVENT_KIND_CREATED] * 30 + [alerts_pb2.ALERT_EVENT_KIND_UPDATED] * 30
    )
    counts = [alerts_pb2.Alert.FromString(e[2]).finding_count for e in events]
    assert counts == [1] * 30 + [2] * 30
    assert {alerts_pb2.Alert.FromString(e[2]).alert_id for e in events} == set(created)
    with store._sessions() as s:
        assert s.scalar(select(func.max(AlertEventRow.id))) == ids[-1]


def test_pages_cover_every_alert_once(store: AlertStore, clock: Clock) -> None:
    for i in range(7):
        clock.now = T0 + timedelta(seconds=i // 2)  # ties in created_time on purpose
        store.ingest([finding(1, entity=f"e{i}")])
    ids: list[str] = []
    token = ""
    while True:
        page, token = store.list_alerts(AlertFilter(), 3, token)
        ids.extend(a.alert_id for a in page)
        if not token:
            break
    assert len(ids) == 7 == len(set(ids))
    _, token = store.list_alerts(AlertFilter(), 3, "")
    with pytest.raises(InvalidRequestError):
        store.list_alerts(AlertFilter(min_grade=2), 3, token)


def test_growth_raises_grade_and_advances_deadline(store: AlertStore) -> None:
    (aid,) = store.ingest([finding(n, minutes=n) for n in range(9)]).created
    before = store.get_alert(aid)
    assert before.grade == findings_pb2.GRADE_GENERAL
    store.ingest([finding(9, minutes=9)])
    after = store.get_alert(aid)
    assert after.grade == findings_pb2.GRADE_SIGNIFICANT and after.finding_count == 10
    assert after.ack_deadline.ToDatetime() < before.ack_deadline.ToDatetime()
    store.ingest([finding(10, minutes=10, grade=findings_pb2.GRADE_CRITICAL)])
    assert store.get_alert(aid).grade == findings_pb2.GRADE_CRITICAL


def test_auto_resolve_after_quiet_period(store: AlertStore, clock: Clock) -> None:
    (aid,) = store.ingest([finding(1)]).created
    clock.now = T0 + timedelta(hours=1)
    assert store.auto_resolve() == []
    clock.now = T0 + timedelta(hours=2)
    assert store.auto_resolve() == [aid]
    a = store.get_alert(aid)
    assert a.state == alerts_pb2.ALERT_STATE_RESOLVED and a.auto_resolved
    assert store.auto_resolve() == []


def test_silence_marks_matching_alerts_until_it_ends(store: AlertStore, clock: Clock) -> None:
    sil = store.create_silence(
        [("institution_id", "bank-2")],
        T0 + timedelta(hours=1),
        comment="",
        actor="a",
        role="admin",
    )
    store.ingest([finding(1, institution="bank-2"), finding(1, institution="bank-1")])
    alerts, _ = store.list_alerts(AlertFilter(), 50, "")
    assert {a.institution_id: a.silenced for a in alerts} == {"bank-2": True, "bank-1": False}
    with store._sessions() as s:  # a silenced alert sends no webhook
        hooks = list(s.scalars(select(OutboxRow).where(OutboxRow.kind == OUTBOX_WEBHOOK)))
        assert len(hooks) == 1
    clock.now = T0 + timedelta(hours=2)
    assert store.expire_silences() == 1
    alerts, _ = store.list_alerts(AlertFilter(), 50, "")
    assert not any(a.silenced for a in alerts)
    with pytest.raises(InvalidTransitionError):
        store.expire_silence(sil.silence_id, actor="a", role="admin")


def test_alert_times_reach_the_proto_exactly() -> None:
    """Deadlines and spans shown to supervisors keep their microseconds, before 1970 too."""
    odd = datetime(1969, 12, 31, 23, 59, 58, 999_999, tzinfo=UTC)
    row = NewAlert(
        alert_id="a",
        group_key="k",
        family=1,
        institution_id="bank-1",
        entity_kind="app",
        entity_id="e",
        detector_id="d",
        grade=1,
        state=alerts_pb2.ALERT_STATE_OPEN,
        summary="s",
        first_seen=odd,
        last_seen=T0 + timedelta(microseconds=123_457),
        ack_deadline=None,
        created_time=T0,
        updated_time=T0,
    )
    alert = alert_to_proto(row)
    assert alert.first_seen.ToDatetime(tzinfo=UTC) == odd
    assert alert.last_seen.ToDatetime(tzinfo=UTC) == row.last_seen
    assert alert.created_time.ToDatetime(tzinfo=UTC) == T0
    assert not alert.HasField("ack_deadline")


def test_ingest_update_of_an_alert_changed_since_read_is_refused(store: AlertStore) -> None:
    """Ingest's bulk UPDATE checks the version it read: a triage change in between wins and the
    ingest batch is retried (StaleDataError), never silently overwriting the acknowledgement."""
    (alert_id,) = store.ingest([finding(1)]).created
    with store._sessions() as s:
        values = s.execute(
            select(*[AlertRow.__table__.c[n] for n in NewAlert.__slots__]).where(
                AlertRow.alert_id == alert_id
            )
        ).one()
    stale = NewAlert(*values)
    store.acknowledge(alert_id, 0, actor="ana", role="analyst")
    stale.finding_count += 1
    with store._sessions() as s, s.begin(), pytest.raises(StaleDataError):
        AlertStore._update_alerts(s, [stale])
    alert = store.get_alert(alert_id)
    assert alert.state == alerts_pb2.ALERT_STATE_ACKNOWLEDGED and alert.finding_count == 1
    # A later finding for the same group still lands on the acknowledged alert.
    assert store.ingest([finding(2, minutes=1)]).updated == [alert_id]
    assert store.get_alert(alert_id).finding_count == 2
