"""After a crash alerts flow again within seconds; a dead consumer is reported, not hidden.

The alert service runs as it does in production (``python -m suptech.alerts`` in its own process)
against the real broker and a SQLite file; it is killed with SIGKILL (no LeaveGroup, no final
commit) and started again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaProducer
from sqlalchemy import create_engine, text
from suptech.alerts.app import build_alert_service
from suptech.alerts.config import AlertsConfig
from suptech.common.grpc_server import LIVENESS_SERVICE
from suptech.common.topics import FINDINGS, topic_name
from suptech.v1 import findings_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = "recovery-test-admin-token-01"


def finding(n: int) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"recovery-{n}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id="bank-a",
        entity_kind="actor",
        entity_id=f"actor-{n}",
        rule_id="bulk_export",
        score=0.97,
        threshold=0.9,
        grade=findings_pb2.GRADE_GENERAL,
        summary=f"bulk export #{n}",
    )
    f.event_time.FromDatetime(T0 + timedelta(minutes=n))
    return f


class AlertsProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "suptech.alerts"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def wait_listening(self, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(r"alerts listening on (\d+)", self.log_path.read_text())
            if found and self.proc.poll() is None:
                return int(found.group(1))
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            time.sleep(0.1)
        raise TimeoutError(self.log_path.read_text()[-3000:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.wait()

    def wait(self) -> None:
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def service_env(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps({TOKEN: {"name": "chief", "role": "admin", "jurisdictions": ["*"]}})
    )
    yield dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        KAFKA_ADDR=kafka_bootstrap,
        SUPTECH_TOPIC_PREFIX=topic_prefix,
        ALERTS_PORT="0",
        ALERTS_HOST="127.0.0.1",
        ALERTS_DB_URL=f"sqlite:///{tmp_path / 'alerts.db'}",
        ALERTS_TOKENS_FILE=str(tokens),
        ALERTS_CONSUMER_GROUP=f"recovery-{uuid.uuid4().hex[:8]}",
        ALERTS_TICK_S="3600",
    )


def stored(db: Path, finding_id: str) -> bool:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            q = text("SELECT count(*) FROM findings WHERE finding_id = :f")
            return bool(conn.execute(q, {"f": finding_id}).scalar())
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return False
    finally:
        engine.dispose()


def wait_stored(db: Path, finding_id: str, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if stored(db, finding_id):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{finding_id} not stored within {timeout_s}s")


def produce(bootstrap: str, prefix: str, f: findings_pb2.Finding) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic_name(FINDINGS, prefix), key=b"k", value=f.SerializeToString())
    producer.flush()
    producer.close()


@pytest.mark.parametrize("instance_id", ["", "alerts-0"], ids=["dynamic", "static"])
def test_alerts_flow_again_within_seconds_of_a_sigkill(
    service_env: dict[str, str],
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    instance_id: str,
) -> None:
    env = dict(service_env, ALERTS_CONSUMER_INSTANCE_ID=instance_id)
    db = tmp_path / "alerts.db"
    first = AlertsProcess(env, tmp_path / "alerts-1.log")
    first.wait_listening()
    produce(kafka_bootstrap, topic_prefix, finding(1))
    wait_stored(db, "recovery-1", 60)

    first.kill()
    killed = time.monotonic()
    second = AlertsProcess(env, tmp_path / "alerts-2.log")
    try:
        produce(kafka_bootstrap, topic_prefix, finding(2))
        second.wait_listening()
        started = time.monotonic() - killed
        wait_stored(db, "recovery-2", 60)
        total = time.monotonic() - killed
        print(
            f"\n[{instance_id or 'dynamic'}] restart to listening {started:.1f}s, "
            f"kill to alert stored {total:.1f}s"
        )
        # kafka-python's default 45 s session timeout kept the killed member's partitions that
        # long; with 6 s (or the same static id) it is the restart itself that takes the time.
        assert total < (started + 9 if not instance_id else started + 4)
    finally:
        second.stop()


async def test_health_turns_not_serving_when_the_consumer_dies(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps({TOKEN: {"name": "chief", "role": "admin", "jurisdictions": ["*"]}})
    )
    app = build_alert_service(
        AlertsConfig(
            port=0,
            host="127.0.0.1",
            db_url=f"sqlite:///{tmp_path / 'a.db'}",
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"death-{uuid.uuid4().hex[:8]}",
            tokens_file=str(tokens),
            tick_s=3600,
        )
    )
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str) -> int:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                return int(reply.status)

            serving = health_pb2.HealthCheckResponse.SERVING
            assert await status("") == serving and await status(LIVENESS_SERVICE) == serving
            assert app.consumer is not None and app.failed is not None
            # What a fatal Kafka client failure does to the consumer thread: its next poll raises.
            app.consumer._consumer.close()
            await asyncio.wait_for(app.failed.wait(), 10)
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status("") == not_serving
            assert await status("suptech.v1.AlertService") == not_serving
            # Liveness too: only a restart brings the consumer back.
            assert await status(LIVENESS_SERVICE) == not_serving
            assert "findings consumer died" in app.failure
    finally:
        await app.stop()
