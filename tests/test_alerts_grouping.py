"""Grouping rules as plain functions: which findings share an alert, grades, silences, quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from suptech.alerts import grouping
from suptech.v1 import findings_pb2

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
H = timedelta(hours=1)


def make(**kw: object) -> findings_pb2.Finding:
    base: dict[str, object] = dict(
        finding_id="f1",
        family=findings_pb2.FAMILY_IT_AUTONOMY,
        institution_id="bank-1",
        entity_kind="system",
        entity_id="core-1",
        rule_id="uncontrollable_component",
        grade=findings_pb2.GRADE_MAJOR,
    )
    base.update(kw)
    f = findings_pb2.Finding(**base)  # type: ignore[arg-type]
    f.event_time.FromDatetime(T0)
    return f


def test_group_key_separates_institution_entity_and_detector() -> None:
    a = make()
    assert grouping.group_key(a) == grouping.group_key(make(finding_id="f2", score=3.0))
    for other in (
        make(institution_id="bank-2"),
        make(entity_id="core-2"),
        make(entity_kind="vendor"),
        make(family=findings_pb2.FAMILY_SANDBOX),
        make(rule_id="", model_id="hst-v1"),
    ):
        assert grouping.group_key(other) != grouping.group_key(a)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"finding_id": ""}, "finding_id is empty"),
        ({"family": 0}, "family 0 is not a known family"),
        ({"institution_id": ""}, "institution_id is empty"),
        ({"rule_id": ""}, "exactly one of rule_id and model_id must be set"),
        ({"model_id": "m"}, "exactly one of rule_id and model_id must be set"),
        ({"entity_id": "x" * 300}, "entity_id is longer than 256 characters"),
    ],
)
def test_invalid_findings_say_why(change: dict[str, object], reason: str) -> None:
    assert grouping.invalid_reason(make(**change)) == reason
    assert grouping.invalid_reason(make()) is None


def test_missing_event_time_is_invalid() -> None:
    f = make()
    f.ClearField("event_time")
    assert grouping.invalid_reason(f) == "event_time is missing"


def test_window_accepts_late_and_new_findings_within_it() -> None:
    assert grouping.joins_group(T0, T0 + H, T0 + 7 * H, window_s=6 * 3600)
    assert grouping.joins_group(T0, T0 + H, T0 - 6 * H, window_s=6 * 3600)
    assert not grouping.joins_group(T0, T0 + H, T0 + 7 * H + timedelta(seconds=1), 6 * 3600)
    assert not grouping.joins_group(T0, T0 + H, T0 - 7 * H, window_s=6 * 3600)


def test_grade_rises_with_growth_and_caps_at_critical() -> None:
    thresholds = (10, 50, 200)
    assert grouping.grown_grade(1, 1, thresholds) == 1
    assert grouping.grown_grade(1, 10, thresholds) == 2
    assert grouping.grown_grade(1, 50, thresholds) == 3
    assert grouping.grown_grade(3, 200, thresholds) == 4
    assert grouping.grown_grade(0, 1, thresholds) == 1  # unspecified counts as general


def test_silence_matchers_all_must_match_and_accept_enum_names() -> None:
    attrs = grouping.alert_attributes(
        institution_id="bank-1",
        family=2,
        entity_kind="system",
        entity_id="core-1",
        detector_id="r",
        grade=3,
    )
    assert grouping.silence_matches([{"name": "institution_id", "value": "bank-1"}], attrs)
    assert grouping.silence_matches(
        [{"name": "family", "value": "FAMILY_IT_AUTONOMY"}, {"name": "grade", "value": "3"}], attrs
    )
    assert not grouping.silence_matches(
        [{"name": "institution_id", "value": "bank-1"}, {"name": "entity_id", "value": "x"}], attrs
    )
    assert not grouping.silence_matches([], attrs)


def test_quiet_period() -> None:
    assert grouping.is_quiet(T0, T0 + 24 * H, 24 * 3600)
    assert not grouping.is_quiet(T0, T0 + 23 * H, 24 * 3600)
