"""Escalation of unacknowledged alerts on a real database, driven by an injected clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from suptech.alerts import audit
from suptech.alerts.database import make_session_factory, open_database
from suptech.alerts.escalation import EscalationConfig, deadline_for, escalate_due
from suptech.alerts.models import OUTBOX_WEBHOOK, AlertEventRow, AlertRow, OutboxRow
from suptech.v1 import alerts_pb2, findings_pb2

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
OPEN = alerts_pb2.ALERT_STATE_OPEN
CRITICAL = findings_pb2.GRADE_CRITICAL
GENERAL = findings_pb2.GRADE_GENERAL


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng, _ = open_database(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def add_alert(
    sessions: sessionmaker[Session],
    alert_id: str,
    grade: int = CRITICAL,
    state: int = OPEN,
    silenced: bool = False,
) -> None:
    with sessions.begin() as s:
        s.add(
            AlertRow(
                alert_id=alert_id,
                group_key=f"bank-sz-01|1|system|{alert_id}|rule",
                family=1,
                institution_id="bank-sz-01",
                entity_kind="system",
                entity_id=alert_id,
                detector_id="rule.bulk_export",
                grade=grade,
                state=state,
                summary="bulk export",
                silenced=silenced,
                first_seen=T0,
                last_seen=T0,
                ack_deadline=deadline_for(grade, T0),
                escalation_level=0,
                created_time=T0,
                updated_time=T0,
            )
        )


def escalate(sessions: sessionmaker[Session], now: datetime, **cfg: int) -> list[str]:
    with sessions.begin() as s:
        return escalate_due(s, now, EscalationConfig(**cfg))  # type: ignore[arg-type]


def webhooks(sessions: sessionmaker[Session]) -> list[OutboxRow]:
    with sessions() as s:
        return list(s.scalars(select(OutboxRow).where(OutboxRow.kind == OUTBOX_WEBHOOK)))


def test_default_deadlines_by_grade() -> None:
    assert deadline_for(findings_pb2.GRADE_CRITICAL, T0) == T0 + HOUR
    assert deadline_for(findings_pb2.GRADE_MAJOR, T0) == T0 + 2 * HOUR
    assert deadline_for(findings_pb2.GRADE_SIGNIFICANT, T0) == T0 + 4 * HOUR
    assert deadline_for(findings_pb2.GRADE_GENERAL, T0) == T0 + 24 * HOUR
    custom = EscalationConfig(deadlines_s={CRITICAL: 600.0, GENERAL: 7200.0})
    assert deadline_for(CRITICAL, T0, custom) == T0 + timedelta(minutes=10)
    # A grade the config does not name gets the general deadline.
    assert deadline_for(findings_pb2.GRADE_MAJOR, T0, custom) == T0 + 2 * HOUR
    with pytest.raises(ValueError, match="positive"):
        EscalationConfig(deadlines_s={CRITICAL: 0.0})


def test_open_alert_escalates_once_per_missed_deadline(sessions: sessionmaker[Session]) -> None:
    add_alert(sessions, "a-crit")
    add_alert(sessions, "a-gen", grade=GENERAL)
    assert escalate(sessions, T0 + HOUR - timedelta(seconds=1)) == []
    assert escalate(sessions, T0 + HOUR) == ["a-crit"]
    # Same clock again, or a little later: the deadline has moved, nothing more to do.
    assert escalate(sessions, T0 + HOUR) == []
    assert escalate(sessions, T0 + 90 * timedelta(minutes=1)) == []
    with sessions() as s:
        row = s.get(AlertRow, "a-crit")
        assert row is not None
        assert (row.escalation_level, row.ack_deadline) == (1, T0 + 2 * HOUR)
        events = list(s.scalars(select(AlertEventRow).order_by(AlertEventRow.id)))
        assert [(e.alert_id, e.kind) for e in events] == [
            ("a-crit", alerts_pb2.ALERT_EVENT_KIND_ESCALATED)
        ]
        snapshot = alerts_pb2.Alert.FromString(events[0].snapshot)
        assert snapshot.escalation_level == 1
        assert audit.verify(s).checked == 1
    assert escalate(sessions, T0 + 2 * HOUR) == ["a-crit"]
    assert escalate(sessions, T0 + 24 * HOUR) == ["a-crit", "a-gen"]
    sent = webhooks(sessions)
    bodies = [json.loads(o.payload) for o in sent]
    assert [(b["alert"]["alertId"], b["event"]) for b in bodies] == [
        ("a-crit", "ALERT_EVENT_KIND_ESCALATED"),
        ("a-crit", "ALERT_EVENT_KIND_ESCALATED"),
        ("a-crit", "ALERT_EVENT_KIND_ESCALATED"),
        ("a-gen", "ALERT_EVENT_KIND_ESCALATED"),
    ]
    assert [b["alert"]["escalationLevel"] for b in bodies] == [1, 2, 3, 1]
    assert len({o.dedup_key for o in sent}) == 4


@pytest.mark.parametrize(
    "state", [alerts_pb2.ALERT_STATE_ACKNOWLEDGED, alerts_pb2.ALERT_STATE_RESOLVED]
)
def test_acknowledged_or_resolved_alert_never_escalates(
    sessions: sessionmaker[Session], state: int
) -> None:
    add_alert(sessions, "a1", state=state)
    assert escalate(sessions, T0 + 48 * HOUR) == []
    assert webhooks(sessions) == []


def test_silenced_alert_escalates_without_webhook(sessions: sessionmaker[Session]) -> None:
    add_alert(sessions, "quiet", silenced=True)
    assert escalate(sessions, T0 + HOUR) == ["quiet"]
    assert webhooks(sessions) == []


def test_escalation_stops_at_max_level(sessions: sessionmaker[Session]) -> None:
    add_alert(sessions, "a1")
    levels = [escalate(sessions, T0 + k * HOUR, max_level=2) for k in range(1, 5)]
    assert levels == [["a1"], ["a1"], [], []]


def test_concurrent_tickers_escalate_once(sessions: sessionmaker[Session]) -> None:
    for i in range(5):
        add_alert(sessions, f"a{i}")
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: escalate(sessions, T0 + HOUR), range(3)))
    assert sorted(a for r in results for a in r) == [f"a{i}" for i in range(5)]
    assert len(webhooks(sessions)) == 5


def test_naive_time_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s, pytest.raises(ValueError, match="naive"):
        escalate_due(s, datetime(2025, 3, 1, 10, 0))
