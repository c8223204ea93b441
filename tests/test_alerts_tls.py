"""TLS on the alert service: mutual TLS identifies supervisors by certificate, probes stay plain.

The real service (``build_alert_service``: SQLite, the shared Kafka broker) with certificates from
a CA generated here.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pki import issue_cert
from pki import pem as pem_bytes
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import AlertsConfig, load_config
from suptech.common.config import ConfigError
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

TOKENS = {
    "cert:console.regulator": {"name": "console", "role": "supervisor", "jurisdictions": ["*"]},
    "tok-16chars-viewer": {"name": "viewer-1", "role": "viewer", "jurisdictions": ["*"]},
}


LOOPBACK = x509.SubjectAlternativeName(
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
)


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    # Leaf certificates also name loopback, so the server's is valid for 127.0.0.1.
    return issue_cert(cn, key, issuer, LOOPBACK if issuer is not None else None)


def _write(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    data = pem_bytes(obj)
    path.write_bytes(data)
    return data


@pytest_asyncio.fixture
async def tls_app(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[AlertApp, dict[str, bytes]]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("suptech test CA", ca_key)
    pem = {"ca": _write(tmp_path / "ca.pem", ca)}
    for cn in ("alerts", "console.regulator", "stranger"):
        key = ec.generate_private_key(ec.SECP256R1())
        pem[cn] = _write(tmp_path / f"{cn}.pem", _cert(cn, key, (ca.subject, ca_key)))
        pem[f"{cn}.key"] = _write(tmp_path / f"{cn}.key", key)
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    env = {
        "ALERTS_HOST": "127.0.0.1",
        "ALERTS_PORT": "0",
        "ALERTS_HEALTH_PORT": "0",
        "ALERTS_TLS_CERT": str(tmp_path / "alerts.pem"),
        "ALERTS_TLS_KEY": str(tmp_path / "alerts.key"),
        "ALERTS_TLS_CLIENT_CA": str(tmp_path / "ca.pem"),
        "ALERTS_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "ALERTS_DB_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
        "ALERTS_CONSUMER_GROUP": f"tls-{uuid.uuid4().hex[:8]}",
        "KAFKA_ADDR": kafka_bootstrap,
        "SUPTECH_TOPIC_PREFIX": topic_prefix,
    }
    app = build_alert_service(load_config(env))
    await app.start()
    yield app, pem
    await app.stop()


async def _list(port: int, pem: dict[str, bytes], cn: str | None, token: str = "") -> str:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pem["ca"],
        private_key=pem[f"{cn}.key"] if cn else None,
        certificate_chain=pem[cn] if cn else None,
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    async with grpc.aio.secure_channel(f"localhost:{port}", creds) as channel:
        try:
            await alerts_pb2_grpc.AlertServiceStub(channel).ListAlerts(
                alerts_pb2.ListAlertsRequest(), metadata=metadata, timeout=20
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return "OK"


async def test_mutual_tls_identifies_by_certificate(
    tls_app: tuple[AlertApp, dict[str, bytes]],
) -> None:
    app, pem = tls_app
    assert await _list(app.port, pem, "console.regulator") == "OK"
    # Signed by the CA but not registered: authenticated handshake, unknown identity.
    assert await _list(app.port, pem, "stranger") == "UNAUTHENTICATED"
    # A token still works, over a certificate-authenticated channel.
    assert await _list(app.port, pem, "stranger", token="tok-16chars-viewer") == "OK"
    # No client certificate: the handshake itself is refused.
    assert await _list(app.port, pem, None) == "UNAVAILABLE"


async def test_probes_get_plain_text_health_and_nothing_else(
    tls_app: tuple[AlertApp, dict[str, bytes]],
) -> None:
    app, _ = tls_app
    assert app.health_port is not None and app.health_port != app.port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.health_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="suptech.v1.AlertService"), timeout=20
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await alerts_pb2_grpc.AlertServiceStub(channel).ListAlerts(
                alerts_pb2.ListAlertsRequest(), timeout=20
            )
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The API port speaks TLS only.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=20
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERTS_TLS_CERT": "c.pem"}, "ALERTS_TLS_CERT and ALERTS_TLS_KEY"),
        ({"ALERTS_TLS_CLIENT_CA": "ca.pem"}, "needs ALERTS_TLS_CERT"),
        (
            {"ALERTS_TLS_CERT": "c", "ALERTS_TLS_KEY": "k", "ALERTS_TLS_CLIENT_CA": "ca"},
            "needs ALERTS_TOKENS_FILE",
        ),
        (
            {"ALERTS_TLS_CERT": "c", "ALERTS_TLS_KEY": "k", "ALERTS_HEALTH_PORT": "50053"},
            "ALERTS_HEALTH_PORT must differ",
        ),
    ],
)
def test_tls_misconfiguration_is_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_without_tls_there_is_no_health_port() -> None:
    cfg = load_config({"ALERTS_INSECURE_DEV": "true"})
    assert (cfg.tls_cert, cfg.tls_client_ca, cfg.health_port) == ("", "", 50054)
    assert AlertApp(AlertsConfig()).health_port is None
