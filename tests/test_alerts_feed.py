"""``python -m suptech.alerts.feed --until-idle S`` exits on its own and ends with a summary table.

The real service (SQLite, the shared Kafka broker); findings go in through the store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from suptech.alerts import feed
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import AlertsConfig
from suptech.v1 import findings_pb2


def finding(family: int, grade: int, entity: str) -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=uuid.uuid4().hex,
        family=family,  # type: ignore[arg-type]
        institution_id="bank-a",
        entity_kind="actor",
        entity_id=entity,
        rule_id="r1",
        score=0.9,
        threshold=0.5,
        grade=grade,  # type: ignore[arg-type]
        summary="s",
    )
    f.event_time.FromDatetime(datetime.now(UTC))
    return f


@pytest.fixture
async def app(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> AsyncIterator[AlertApp]:
    service = build_alert_service(
        AlertsConfig(
            host="127.0.0.1",
            port=0,
            db_url=f"sqlite:///{tmp_path / 'a.db'}",
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"feed-{uuid.uuid4().hex[:8]}",
            insecure_dev=True,
        )
    )
    await service.start()
    yield service
    await service.stop()


def test_summary_counts_alerts_by_family_and_grade() -> None:
    leak, fraud = findings_pb2.FAMILY_DATA_LEAKAGE, findings_pb2.FAMILY_SANDBOX
    table = feed.format_summary(
        {
            "a": (leak, findings_pb2.GRADE_MAJOR),
            "b": (leak, findings_pb2.GRADE_MAJOR),
            "c": (fraud, findings_pb2.GRADE_CRITICAL),
        }
    )
    lines = table.splitlines()
    assert lines[0] == "# 3 alerts"
    assert lines[1].split() == ["family", "general", "significant", "major", "critical", "total"]
    assert lines[2].split() == ["data_leakage", "0", "0", "2", "0", "2"]
    assert lines[3].split() == ["sandbox", "0", "0", "0", "1", "1"]
    assert lines[4].split() == ["total", "0", "0", "2", "1", "3"]


async def test_until_idle_exits_with_the_summary(
    app: AlertApp, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.store is not None
    leak, fraud = findings_pb2.FAMILY_DATA_LEAKAGE, findings_pb2.FAMILY_SANDBOX
    app.store.ingest(
        [
            finding(leak, findings_pb2.GRADE_MAJOR, "x"),
            finding(leak, findings_pb2.GRADE_MAJOR, "y"),
            finding(fraud, findings_pb2.GRADE_GENERAL, "z"),
        ]
    )
    # A second finding of "x" updates its alert: still one alert, counted once.
    app.store.ingest([finding(leak, findings_pb2.GRADE_MAJOR, "x")])
    argv = ["--target", f"127.0.0.1:{app.port}", "--cursor", "0", "--until-idle", "1"]
    assert await asyncio.wait_for(asyncio.to_thread(feed.main, argv), 60) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(" created " in line for line in out) == 3
    assert sum(" updated " in line for line in out) == 1
    summary = out[out.index("# 3 alerts") :]
    assert summary[2].split() == ["data_leakage", "0", "0", "2", "0", "2"]
    assert summary[3].split() == ["sandbox", "1", "0", "0", "0", "1"]
    assert summary[4].split() == ["total", "1", "0", "2", "0", "3"]


async def test_tls_and_a_token_file_reach_an_authenticating_service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ipaddress
    import json

    from cryptography import x509
    from pki import issue_cert, new_key, pem

    ca_key, key = new_key(), new_key()
    ca = issue_cert("feed test CA", ca_key)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    leaf = issue_cert("alerts", key, (ca.subject, ca_key), san)
    for name, obj in (("ca.pem", ca), ("alerts.pem", leaf), ("alerts.key", key)):
        (tmp_path / name).write_bytes(pem(obj))
    (tmp_path / "tokens.json").write_text(
        json.dumps(
            {"tok-16chars-nightshift": {"name": "n", "role": "viewer", "jurisdictions": ["*"]}}
        )
    )
    (tmp_path / "token").write_text("tok-16chars-nightshift\n")
    service = build_alert_service(
        AlertsConfig(
            host="127.0.0.1",
            port=0,
            health_port=0,
            tls_cert=str(tmp_path / "alerts.pem"),
            tls_key=str(tmp_path / "alerts.key"),
            db_url=f"sqlite:///{tmp_path / 'a.db'}",
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"feed-{uuid.uuid4().hex[:8]}",
            tokens_file=str(tmp_path / "tokens.json"),
        )
    )
    await service.start()
    try:
        assert service.store is not None
        service.store.ingest([finding(findings_pb2.FAMILY_DATA_LEAKAGE, 3, "tls-actor")])
        target = ["--target", f"127.0.0.1:{service.port}", "--cursor", "0", "--until-idle", "1"]
        tls = ["--tls-ca", str(tmp_path / "ca.pem"), "--token-file", str(tmp_path / "token")]
        assert await asyncio.wait_for(asyncio.to_thread(feed.main, target + tls), 60) == 0
        assert "actor:tls-actor created" in capsys.readouterr().out
        # The same service in plain text, or without the token: refused, with a reason.
        no_token = target + ["--tls-ca", str(tmp_path / "ca.pem")]
        assert await asyncio.wait_for(asyncio.to_thread(feed.main, no_token), 60) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
    finally:
        await service.stop()


def test_an_unreachable_service_ends_the_feed_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["--target", f"127.0.0.1:{port}", "--until-idle", "1", "--connect-timeout", "1"]
    assert feed.main(argv) == 2
    assert f"cannot reach the alert service at 127.0.0.1:{port}" in capsys.readouterr().err
