"""The audit chain on a real database: appends verify, any tampering is named.

Tampering with the audit log itself, with the alert change log, and with the alerts (a verdict
changed, an alert deleted or inserted directly in the database) each fails verification.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from suptech.alerts import audit
from suptech.alerts.config import AlertsConfig
from suptech.alerts.database import MIGRATIONS, make_engine, make_session_factory, open_database
from suptech.alerts.models import AlertEventRow, AlertRow
from suptech.alerts.store import AlertFilter, AlertStore
from suptech.v1 import alerts_pb2, findings_pb2

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng, _ = open_database(db_url)
    yield eng
    eng.dispose()


def drop_guards(engine: Engine) -> None:
    """What a database owner bent on rewriting history would do first."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def write_chain(sessions: sessionmaker[Session], n: int) -> list[audit.AuditEntry]:
    entries = []
    for i in range(n):
        with sessions.begin() as s:
            entries.append(
                audit.append(
                    s,
                    actor=f"user{i % 3}",
                    role="analyst",
                    action="acknowledge" if i % 2 else "assign",
                    alert_id=f"a{i}" if i % 4 else None,
                    details={"note": f"n{i}", "版本": i, "nested": {"b": [1, 2.5], "a": None}},
                    ts=T0 + timedelta(seconds=i, microseconds=i),
                )
            )
    return entries


def test_chain_of_entries_verifies(sessions: sessionmaker[Session]) -> None:
    entries = write_chain(sessions, 25)
    assert [e.id for e in entries] == list(range(1, 26))
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    with sessions() as s:
        result = audit.verify(s)
    assert result == audit.VerifyResult(True, 25, None, "", entries[-1].hash)


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log WHERE id = 2"],
)
def test_database_refuses_update_and_delete(
    engine: Engine, sessions: sessionmaker[Session], statement: str
) -> None:
    write_chain(sessions, 3)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with sessions() as s:
        assert audit.verify(s).checked == 3


def test_concurrent_appenders_keep_one_chain(sessions: sessionmaker[Session]) -> None:
    def worker(k: int) -> None:
        for i in range(10):
            with sessions.begin() as s:
                audit.append(s, actor=f"w{k}", role="analyst", action=f"a{i}", alert_id=None)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    with sessions() as s:
        assert audit.verify(s) == audit.VerifyResult(True, 40, head_hash=audit.verify(s).head_hash)


def test_empty_log_verifies(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        assert audit.verify(s) == audit.VerifyResult(True, 0)


def test_rolled_back_action_leaves_no_entry(sessions: sessionmaker[Session]) -> None:
    write_chain(sessions, 2)
    with sessions() as s, s.begin():
        audit.append(s, actor="eve", role="admin", action="resolve", alert_id="x", details={})
        s.rollback()
    write_chain(sessions, 1)
    with sessions() as s:
        assert audit.verify(s).ok and audit.verify(s).checked == 3


@pytest.mark.parametrize(
    "column_sql",
    [
        'details = \'{"note": "forged"}\'',
        "actor = 'mallory'",
        "alert_id = 'a-other'",
        "ts = '2024-01-01 00:00:00.000000'",
    ],
)
def test_tampered_row_is_named(
    engine: Engine, sessions: sessionmaker[Session], column_sql: str
) -> None:
    write_chain(sessions, 10)
    drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE audit_log SET {column_sql} WHERE id = 6"))
    with sessions() as s:
        result = audit.verify(s)
    assert not result.ok
    assert result.first_broken_id == 6
    assert result.checked == 5
    assert "does not match its hash" in result.reason


def test_rehashed_forgery_is_caught_at_the_next_link(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    entries = write_chain(sessions, 5)
    victim = entries[2]
    drop_guards(engine)
    forged = audit.entry_hash(
        victim.prev_hash,
        id=victim.id,
        ts=victim.ts,
        actor=victim.actor,
        role="admin",
        action=victim.action,
        alert_id=victim.alert_id,
        details=victim.details,
        events_head=(victim.events_head_id, victim.events_head_hash),
    )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET role = 'admin', hash = :h WHERE id = :i"),
            {"h": forged, "i": victim.id},
        )
    with sessions() as s:
        result = audit.verify(s)
    assert (result.ok, result.first_broken_id) == (False, victim.id + 1)
    assert f"entry {victim.id}" in result.reason


@pytest.mark.parametrize("deleted", [1, 4, 7])
def test_deleted_row_is_detected(
    engine: Engine, sessions: sessionmaker[Session], deleted: int
) -> None:
    write_chain(sessions, 8)
    drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": deleted})
    with sessions() as s:
        result = audit.verify(s)
    assert not result.ok
    assert result.first_broken_id == deleted + 1
    assert f"entry {deleted} is missing" in result.reason


def test_truncation_detected_against_noted_head(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    entries = write_chain(sessions, 6)
    drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 6"))
    with sessions() as s:
        assert audit.verify(s).ok  # the remaining chain is intact on its own...
        result = audit.verify(s, expect_head=entries[-1].hash)
    assert not result.ok and "removed" in result.reason  # ...but not the head noted before


def test_bad_details_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s, pytest.raises(ValueError, match="plain JSON"):
        audit.append(s, actor="a", role="viewer", action="x", alert_id=None, details={"t": T0})
    with sessions.begin() as s, pytest.raises(ValueError, match="actor"):
        audit.append(s, actor="", role="viewer", action="x", alert_id=None)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suptech.alerts.audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reports_ok_then_broken_link(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    entries = write_chain(sessions, 4)
    drop_guards(engine)
    ok = run_cli("verify", "--db", db_url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: 4 entries, head {entries[-1].hash}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET action = 'delete' WHERE id = 3"))
    broken = run_cli("verify", "--db", db_url)
    assert broken.returncode == 1
    assert "BROKEN: entry 3" in broken.stderr


def test_cli_unreadable_database_is_an_error(tmp_path: Path) -> None:
    result = run_cli("verify", "--db", f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    assert result.returncode == 2 and "cannot read the audit log" in result.stderr


# --- the chain covers alert state: tampering with the alerts themselves is caught -------------


def _finding(n: int, entity: str) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"state-{entity}-{n}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id="bank-1",
        entity_kind="actor",
        entity_id=entity,
        rule_id="bulk_export",
        grade=findings_pb2.GRADE_MAJOR,
        summary=f"bulk export #{n}",
    )
    f.event_time.FromDatetime(T0 + timedelta(minutes=n))
    return f


@pytest.fixture
def triaged(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Three alerts through the real store: one resolved, one acknowledged, one untouched."""
    store = AlertStore(sessions, AlertsConfig(group_window_s=3600), clock=lambda: T0)
    store.ingest([_finding(n, e) for n in range(3) for e in ("a1", "a2", "a3")])
    ids = {a.entity_id: a.alert_id for a in store.list_alerts(AlertFilter(), 10, "")[0]}
    store.resolve(
        ids["a1"], 0, actor="li.wei", role="supervisor", verdict=alerts_pb2.VERDICT_TRUE_POSITIVE
    )
    store.acknowledge(ids["a2"], 0, actor="li.wei", role="analyst")
    store.ingest([_finding(9, "a2")])  # a machine change after the last human one
    return ids


def _verify(sessions: sessionmaker[Session]) -> audit.VerifyResult:
    with sessions() as s:
        return audit.verify(s)


def test_untampered_alerts_verify(sessions: sessionmaker[Session], triaged: dict[str, str]) -> None:
    result = _verify(sessions)
    assert result.ok, result.reason
    assert (result.checked, result.alerts_checked) == (2, 3)
    assert result.events_checked == 6  # 3 created, resolved, acknowledged, grown


@pytest.mark.parametrize(
    ("entity", "column_sql"),
    [
        ("a1", "verdict = 2"),  # true positive -> false positive
        ("a1", "resolution_note = 'nothing to see'"),
        ("a1", "resolved_time = NULL"),
        ("a2", "state = 1"),  # acknowledged -> open
        ("a2", "assignee = 'mallory'"),
        ("a3", "grade = 1"),  # never touched by a human: the change log still holds it
        ("a3", "finding_count = 0"),
    ],
)
def test_alert_changed_in_the_database_fails_verification(
    engine: Engine,
    sessions: sessionmaker[Session],
    triaged: dict[str, str],
    entity: str,
    column_sql: str,
) -> None:
    alert_id = triaged[entity]
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE alerts SET {column_sql} WHERE alert_id = :a"), {"a": alert_id})
    result = _verify(sessions)
    assert not result.ok
    assert f"alert {alert_id} is not in the state" in result.reason
    assert "changed outside the service" in result.reason


@pytest.mark.parametrize("entity", ["a1", "a3"])
def test_alert_deleted_in_the_database_fails_verification(
    engine: Engine, sessions: sessionmaker[Session], triaged: dict[str, str], entity: str
) -> None:
    alert_id = triaged[entity]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM findings WHERE alert_id = :a"), {"a": alert_id})
        conn.execute(text("DELETE FROM alerts WHERE alert_id = :a"), {"a": alert_id})
    result = _verify(sessions)
    assert not result.ok
    assert f"alert {alert_id}" in result.reason and "deleted outside the service" in result.reason


def test_alert_inserted_in_the_database_fails_verification(
    engine: Engine, sessions: sessionmaker[Session], triaged: dict[str, str]
) -> None:
    columns = ", ".join(audit.ALERT_STATE_COLUMNS)
    copied = ", ".join("'forged'" if c == "alert_id" else c for c in audit.ALERT_STATE_COLUMNS)
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO alerts ({columns}) SELECT {copied} FROM alerts WHERE alert_id = :a"),
            {"a": triaged["a1"]},
        )
    result = _verify(sessions)
    assert not result.ok and "alert forged has no change-log entry" in result.reason


def test_change_log_is_append_only_in_the_database(
    engine: Engine, sessions: sessionmaker[Session], triaged: dict[str, str]
) -> None:
    for statement in ("UPDATE alert_events SET kind = 1", "DELETE FROM alert_events"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert _verify(sessions).ok


def _drop_event_guards(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE alert_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER alert_events_no_update"))
            conn.execute(text("DROP TRIGGER alert_events_no_delete"))


def _forge_verdict(engine: Engine, alert_id: str, verdict: int) -> None:
    """The alert row and its newest change-log entry rewritten consistently, and the change log
    re-hashed from there to its end: what an insider who read audit.py would do."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE alerts SET verdict = :v WHERE alert_id = :a"),
            {"v": verdict, "a": alert_id},
        )
        row = conn.execute(select(*AlertRow.__table__.columns).where(AlertRow.alert_id == alert_id))
        digest = audit.alert_state_digest(row.one())
        newest = conn.execute(
            text("SELECT max(id) FROM alert_events WHERE alert_id = :a"), {"a": alert_id}
        ).scalar_one()
        events = conn.execute(
            select(AlertEventRow.__table__).order_by(AlertEventRow.id)  # type: ignore[arg-type]
        ).all()
        prev = audit.GENESIS_HASH
        for ev in events:
            state = digest if ev.id == newest else ev.state_digest
            snapshot = ev.snapshot
            if ev.id == newest:
                alert = alerts_pb2.Alert.FromString(snapshot)
                alert.verdict = verdict  # type: ignore[assignment]
                snapshot = alert.SerializeToString()
            h = audit.event_hash(
                prev,
                id=ev.id,
                ts=ev.ts,
                kind=ev.kind,
                alert_id=ev.alert_id,
                institution_id=ev.institution_id,
                snapshot=snapshot,
                state_digest=state,
            )
            conn.execute(
                text(
                    "UPDATE alert_events SET snapshot = :s, state_digest = :d, prev_hash = :p, "
                    "hash = :h WHERE id = :i"
                ),
                {"s": snapshot, "d": state, "p": prev, "h": h, "i": ev.id},
            )
            prev = h


def test_rewritten_change_log_is_caught_by_the_audit_entry_that_anchored_it(
    engine: Engine, sessions: sessionmaker[Session], triaged: dict[str, str]
) -> None:
    _drop_event_guards(engine)
    _forge_verdict(engine, triaged["a1"], alerts_pb2.VERDICT_FALSE_POSITIVE)
    result = _verify(sessions)
    assert not result.ok
    # The resolve's audit entry recorded the change-log head its verdict produced.
    assert result.first_broken_id == 1
    assert "audit entry 1 recorded" in result.reason and "rewritten" in result.reason


def test_change_log_tampering_is_named(
    engine: Engine, sessions: sessionmaker[Session], triaged: dict[str, str]
) -> None:
    _drop_event_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alert_events SET kind = 4 WHERE id = 2"))
    result = _verify(sessions)
    assert not result.ok and result.reason.startswith("change-log entry 2 ")
    assert "does not match its hash" in result.reason
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alert_events WHERE id = 2"))
    result = _verify(sessions)
    assert not result.ok and result.reason.startswith("change-log entry 3: prev_hash")


def test_verification_while_the_store_writes_sees_no_false_alarm(
    sessions: sessionmaker[Session],
) -> None:
    store = AlertStore(sessions, AlertsConfig(group_window_s=3600), clock=lambda: T0)
    stop = threading.Event()

    def write() -> int:
        n = 0
        while not stop.is_set():
            store.ingest([_finding(n, f"w{n % 7}")])
            n += 1
        return n

    with ThreadPoolExecutor(1) as pool:
        writer = pool.submit(write)
        try:
            results = [_verify(sessions) for _ in range(5)]
        finally:
            stop.set()
        assert writer.result() > 0
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert _verify(sessions).ok


def test_a_database_from_before_the_state_chain_is_chained_by_the_migration(db_url: str) -> None:
    """Data written by the previous schema (no chain on alert_events) verifies after upgrade,
    and tampering with it after the upgrade is caught."""
    old = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with old.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "audit_append_only")
    then = datetime(2025, 1, 1, tzinfo=UTC)
    with old.begin() as conn:
        conn.execute(
            insert(AlertRow.__table__).values(  # type: ignore[arg-type]
                alert_id="old-1",
                group_key="k",
                family=1,
                institution_id="bank-1",
                entity_kind="actor",
                entity_id="a",
                detector_id="r",
                grade=2,
                state=alerts_pb2.ALERT_STATE_RESOLVED,
                summary="s",
                assignee="",
                verdict=alerts_pb2.VERDICT_TRUE_POSITIVE,
                resolution_note="",
                finding_count=1,
                silenced=False,
                auto_resolved=False,
                version=2,
                first_seen=then,
                last_seen=then,
                escalation_level=0,
                created_time=then,
                updated_time=then,
            )
        )
        for kind in (alerts_pb2.ALERT_EVENT_KIND_CREATED, alerts_pb2.ALERT_EVENT_KIND_RESOLVED):
            conn.execute(
                insert(AlertEventRow.__table__).values(  # type: ignore[arg-type]
                    ts=then, kind=kind, alert_id="old-1", institution_id="bank-1", snapshot=b"\0"
                )
            )
    old.dispose()
    engine, upgraded = open_database(db_url)  # upgrade head: the state_chain migration
    try:
        with upgraded() as s:
            result = audit.verify(s)
        assert result.ok, result.reason
        assert (result.events_checked, result.alerts_checked) == (2, 1)
        with upgraded.begin() as s:
            s.execute(text("UPDATE alerts SET verdict = 2 WHERE alert_id = 'old-1'"))
        with upgraded() as s:
            assert "alert old-1 is not in the state" in audit.verify(s).reason
    finally:
        engine.dispose()
