"""Time to acknowledge per grade: one set of defaults (issue 4), read by the store and escalation.

Unit tests of plain functions plus the real store on SQLite: the deadline a new alert gets is
the one escalation enforces, with and without environment overrides.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from suptech.alerts.config import AlertsConfig, load_config
from suptech.alerts.database import open_database
from suptech.alerts.escalation import DEFAULT_DEADLINES_S, EscalationConfig, deadline_for
from suptech.alerts.store import AlertStore
from suptech.common.config import ConfigError
from suptech.v1 import findings_pb2

HOUR = 3600.0
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ISSUE = {
    findings_pb2.GRADE_CRITICAL: 1 * HOUR,
    findings_pb2.GRADE_MAJOR: 2 * HOUR,
    findings_pb2.GRADE_SIGNIFICANT: 4 * HOUR,
    findings_pb2.GRADE_GENERAL: 24 * HOUR,
}


# Configuration loads only with credentials or with insecure development declared.
DEV = {"ALERTS_INSECURE_DEV": "true"}


def test_defaults_are_the_issues_everywhere() -> None:
    assert AlertsConfig().deadlines_by_grade() == ISSUE
    assert load_config(DEV).deadlines_by_grade() == ISSUE
    assert dict(DEFAULT_DEADLINES_S) == ISSUE
    assert dict(EscalationConfig().deadlines_s) == ISSUE
    assert dict(EscalationConfig.from_alerts_config(AlertsConfig()).deadlines_s) == ISSUE
    for grade, seconds in ISSUE.items():
        assert deadline_for(grade, T0) == T0 + timedelta(seconds=seconds)


def test_environment_overrides_reach_escalation() -> None:
    cfg = load_config(
        {**DEV, "ALERTS_DEADLINE_CRITICAL_S": "600", "ALERTS_DEADLINE_GENERAL_S": "7200"}
    )
    esc = EscalationConfig.from_alerts_config(cfg)
    assert esc.seconds(findings_pb2.GRADE_CRITICAL) == 600
    assert esc.seconds(findings_pb2.GRADE_MAJOR) == 2 * HOUR
    assert esc.seconds(findings_pb2.GRADE_GENERAL) == 7200


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_bad_deadline_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="ALERTS_DEADLINE_MAJOR_S"):
        load_config({**DEV, "ALERTS_DEADLINE_MAJOR_S": value})


@pytest.mark.parametrize("grade", sorted(ISSUE))
def test_new_alert_is_due_when_escalation_expects(tmp_path: Path, grade: int) -> None:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        store = AlertStore(sessions, AlertsConfig(growth_thresholds=()), clock=lambda: T0)
        f = findings_pb2.Finding(
            finding_id=uuid.uuid4().hex,
            family=findings_pb2.FAMILY_DATA_LEAKAGE,
            institution_id="bank-a",
            entity_kind="actor",
            entity_id="a1",
            rule_id="bulk_export",
            score=0.9,
            threshold=0.5,
            grade=grade,  # type: ignore[arg-type]
            summary="export",
        )
        f.event_time.FromDatetime(T0)
        (alert_id,) = store.ingest([f]).created
        alert = store.get_alert(alert_id)
        due = alert.ack_deadline.ToDatetime(tzinfo=UTC)
        assert due == T0 + timedelta(seconds=ISSUE[grade]) == deadline_for(grade, T0)
    finally:
        engine.dispose()
