"""The alert service fails closed: no credentials, no service; revoked tokens stop working.

The real service (``python -m suptech.alerts`` or ``build_alert_service``) on the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import AlertsConfig, load_config
from suptech.common.config import ConfigError
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
ADMIN = "failclosed-admin-token-0001"
ENTRY = {"name": "chief", "role": "admin", "jurisdictions": ["*"]}


def run_service(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suptech.alerts"],
        env=dict(os.environ, PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}", **env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_no_tokens_file_refuses_to_start_and_names_the_variable() -> None:
    env = {k: "" for k in ("ALERTS_TOKENS_FILE", "ALERTS_INSECURE_DEV")}
    result = run_service(env)
    assert result.returncode == 2
    assert "ALERTS_TOKENS_FILE is required" in result.stderr
    assert "ALERTS_INSECURE_DEV" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_short_token_refuses_to_start(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tok-admin": ENTRY}))
    # Refused while reading configuration, before Kafka or the database are touched.
    result = run_service({"ALERTS_TOKENS_FILE": str(tokens), "KAFKA_ADDR": "127.0.0.1:9"})
    assert result.returncode == 2
    assert "token is 9 characters, at least 16" in result.stderr
    assert "tok-admin" not in result.stderr


def test_configuration_fails_closed() -> None:
    with pytest.raises(ConfigError, match="ALERTS_TOKENS_FILE is required"):
        load_config({})
    with pytest.raises(ConfigError, match="loopback only"):
        load_config({"ALERTS_INSECURE_DEV": "true", "ALERTS_HOST": "0.0.0.0"})
    dev = load_config({"ALERTS_INSECURE_DEV": "true"})
    assert dev.bind_host() == "127.0.0.1"
    assert load_config({"ALERTS_TOKENS_FILE": "/etc/t.json"}).bind_host() == "0.0.0.0"


async def test_a_programmatic_config_without_tokens_is_refused_too() -> None:
    app = build_alert_service(AlertsConfig(port=0, kafka_addr="127.0.0.1:9"))
    with pytest.raises(ConfigError, match="ALERTS_TOKENS_FILE"):
        await app.start()


def _outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if addr.startswith("127.") else addr


@pytest.mark.integration
async def test_insecure_development_binds_loopback_only(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    app = build_alert_service(
        AlertsConfig(
            port=0,
            db_url=f"sqlite:///{tmp_path / 'a.db'}",
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"dev-{uuid.uuid4().hex[:8]}",
            insecure_dev=True,
            tick_s=3600,
        )
    )
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        outside = _outside_address()
        if outside is not None:
            with pytest.raises(OSError), socket.create_connection((outside, app.port), 2):
                pass
    finally:
        await app.stop()


@pytest.fixture
async def revocable(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[AlertApp, Path]]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({ADMIN: ENTRY}))
    app = build_alert_service(
        AlertsConfig(
            port=0,
            host="127.0.0.1",
            db_url=f"sqlite:///{tmp_path / 'a.db'}",
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"revoke-{uuid.uuid4().hex[:8]}",
            tokens_file=str(tokens),
            tokens_reload_s=0.2,
            stream_poll_s=0.2,
            tick_s=3600,
        )
    )
    await app.start()
    yield app, tokens
    await app.stop()


def _rewrite(path: Path, doc: dict[str, object]) -> None:
    # As editors and Kubernetes Secret updates do: a new file renamed over the old one.
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


@pytest.mark.integration
async def test_revoked_and_expired_tokens_stop_working_without_a_restart(
    revocable: tuple[AlertApp, Path],
) -> None:
    app, tokens = revocable
    temp = "temporary-analyst-token-01"
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)

        async def code(token: str) -> grpc.StatusCode:
            try:
                await stub.ListAlerts(
                    alerts_pb2.ListAlertsRequest(),
                    metadata=[("authorization", f"Bearer {token}")],
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        async def until(token: str, want: grpc.StatusCode, within_s: float) -> None:
            deadline = asyncio.get_running_loop().time() + within_s
            while (got := await code(token)) != want:
                assert asyncio.get_running_loop().time() < deadline, f"{token}: still {got}"
                await asyncio.sleep(0.1)

        assert await code(temp) == grpc.StatusCode.UNAUTHENTICATED
        _rewrite(tokens, {ADMIN: ENTRY, temp: {**ENTRY, "name": "temp", "expires": soon}})
        await until(temp, grpc.StatusCode.OK, 5)

        # An open stream of the admin token, then the admin token is revoked in the file.
        stream = stub.StreamAlerts(
            alerts_pb2.StreamAlertsRequest(cursor="0"),
            metadata=[("authorization", f"Bearer {ADMIN}")],
            timeout=30,
        )
        await asyncio.sleep(0.5)
        _rewrite(tokens, {temp: {**ENTRY, "name": "temp", "expires": soon}})
        await until(ADMIN, grpc.StatusCode.UNAUTHENTICATED, 5)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in stream:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "stream closed" in (ended.value.details() or "")

        # The temporary token expires by itself: no edit, no restart.
        await until(temp, grpc.StatusCode.UNAUTHENTICATED, 6)
