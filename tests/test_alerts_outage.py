"""The alert consumer through a database outage: retried, never skipped, never dead-lettered.

A PostgreSQL server of the test's own (scripts/postgres.sh on a free port and its own data
directory, never the shared test server) is stopped while findings arrive and started again; the
real Kafka broker and the real alert service (consumer thread, gRPC port) run throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import AlertsConfig
from suptech.alerts.consumer import is_database_fault
from suptech.alerts.database import make_engine
from suptech.alerts.models import FindingRow
from suptech.common.topics import DEAD_LETTER, FINDINGS, topic_name
from suptech.v1 import findings_pb2

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
POSTGRES_SH = REPO / "scripts" / "postgres.sh"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = "outage-test-admin-token-0001"


@dataclass
class OwnPostgres:
    """A PostgreSQL server only this test uses, so stopping it disturbs nobody else."""

    port: int
    data: str

    def _run(self, verb: str) -> str:
        env = dict(os.environ, PG_PORT=str(self.port), PG_DATA=self.data)
        out = subprocess.run(
            [str(POSTGRES_SH), verb], env=env, check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    def start(self) -> str:
        return self._run("up")

    def stop(self) -> None:
        self._run("down")

    def wipe(self) -> None:
        self._run("wipe")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_postgres() -> Iterator[tuple[OwnPostgres, str]]:
    pg = OwnPostgres(_free_port(), f"/tmp/suptech-pg-outage-{uuid.uuid4().hex[:8]}")
    url = pg.start()
    try:
        yield pg, url
    finally:
        pg.wipe()


def finding(n: int, entity: str = "actor-1") -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"outage-{entity}-{n}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id="bank-a",
        entity_kind="actor",
        entity_id=entity,
        rule_id="bulk_export",
        score=0.97,
        threshold=0.9,
        grade=findings_pb2.GRADE_GENERAL,
        summary=f"bulk export #{n}",
    )
    f.event_time.FromDatetime(T0 + timedelta(minutes=n))
    return f


def produce(bootstrap: str, prefix: str, findings: list[findings_pb2.Finding]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for f in findings:
        producer.send(
            topic_name(FINDINGS, prefix), key=f.entity_id.encode(), value=f.SerializeToString()
        )
    producer.flush()
    producer.close()


def dead_letters(bootstrap: str, prefix: str, wait_s: float) -> list[bytes]:
    """Every record on the dead-letter topic, reading for ``wait_s`` seconds."""
    dlq = KafkaConsumer(
        topic_name(DEAD_LETTER, prefix),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(wait_s * 1000),
    )
    try:
        return [rec.value for rec in dlq]
    finally:
        dlq.close()


def stored_findings(app: AlertApp) -> int:
    assert app.sessions is not None
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(FindingRow)) or 0)


async def wait_stored(app: AlertApp, want: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    have = 0
    while time.monotonic() < deadline:
        have = await asyncio.to_thread(stored_findings, app)
        if have >= want:
            return have
        await asyncio.sleep(0.2)
    raise AssertionError(f"{have} of {want} findings stored after {timeout_s}s")


def make_app(kafka_bootstrap: str, topic_prefix: str, db_url: str, tmp_path: Path) -> AlertApp:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps({TOKEN: {"name": "chief", "role": "admin", "jurisdictions": ["*"]}})
    )
    return build_alert_service(
        AlertsConfig(
            port=0,
            host="127.0.0.1",
            db_url=db_url,
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"outage-{uuid.uuid4().hex[:8]}",
            tokens_file=str(tokens),
            tick_s=3600,
        )
    )


async def test_findings_arriving_while_postgres_is_down_are_stored_when_it_is_back(
    kafka_bootstrap: str,
    topic_prefix: str,
    own_postgres: tuple[OwnPostgres, str],
    tmp_path: Path,
) -> None:
    pg, url = own_postgres
    app = make_app(kafka_bootstrap, topic_prefix, url, tmp_path)
    await app.start()
    try:
        produce(kafka_bootstrap, topic_prefix, [finding(n) for n in range(2)])
        await wait_stored(app, 2, 30)

        await asyncio.to_thread(pg.stop)
        produce(
            kafka_bootstrap,
            topic_prefix,
            [finding(n, entity=f"actor-{n % 3}") for n in range(2, 10)],
        )
        # The consumer polls these, fails to store them and must neither dead-letter them nor
        # commit past them.
        during = await asyncio.to_thread(dead_letters, kafka_bootstrap, topic_prefix, 6.0)
        assert during == []
        assert app.consumer is not None
        assert app.consumer.stats.db_retries >= 1, "the outage was never met: test is vacuous"

        await asyncio.to_thread(pg.start)
        assert await wait_stored(app, 10, 60) == 10
        assert await asyncio.to_thread(dead_letters, kafka_bootstrap, topic_prefix, 2.0) == []
        assert app.consumer.stats.dead_lettered == 0
    finally:
        await app.stop()


async def test_a_finding_the_database_refuses_is_dead_lettered_alone(
    kafka_bootstrap: str, topic_prefix: str, postgres_url: str, tmp_path: Path
) -> None:
    # PostgreSQL text cannot hold NUL: this finding fails every time on a healthy database.
    poison = finding(1, entity="actor-\x00-nul")
    batch = [finding(0), poison, finding(2), finding(3, entity="actor-2")]
    app = make_app(kafka_bootstrap, topic_prefix, postgres_url, tmp_path)
    await app.start()
    try:
        produce(kafka_bootstrap, topic_prefix, batch)
        await wait_stored(app, 3, 30)
        dead = await asyncio.to_thread(dead_letters, kafka_bootstrap, topic_prefix, 3.0)
        assert dead == [poison.SerializeToString()]
        assert await asyncio.to_thread(stored_findings, app) == 3
        assert app.consumer is not None and app.consumer.consumer_alive
    finally:
        await app.stop()


def test_unreachable_databases_are_faults_of_the_database(tmp_path: Path) -> None:
    """Real drivers' errors: what is classed as the database's fault is retried, never skipped."""
    sqlite = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'alerts.db'}")
    postgres = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/x")
    for engine in (sqlite, postgres):
        with pytest.raises(OperationalError) as info, engine.connect():
            pass
        assert is_database_fault(info.value)
        engine.dispose()
    assert not is_database_fault(ValueError("Timestamp is not valid"))
