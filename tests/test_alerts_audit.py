"""The audit log's hash chain on a real database: appends verify, any tampering is named."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from suptech.alerts import audit
from suptech.alerts.database import make_session_factory, open_database

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
