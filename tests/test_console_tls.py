"""The console over mutual TLS to the real alert service (SQLite, the shared Kafka broker), with
certificates from a CA made here: it signs supervisors in and lists their alerts through the
TLS channel; without its client certificate it says so on the sign-in page and in one log line.
Plain HTTP to the console (aiohttp's client): the browser adds nothing to what is checked here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from kafka import KafkaProducer
from pki import issue_cert, new_key, pem
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import load_config as alerts_config
from suptech.common.topics import FINDINGS, topic_name
from suptech.console.app import Console
from suptech.console.config import ConsoleConfig, load_config
from suptech.v1 import findings_pb2

pytestmark = pytest.mark.integration

LOOPBACK = x509.SubjectAlternativeName(
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
)
SUP = "tok-16chars-supervisor"
TOKENS = {
    SUP: {"name": "wang.fang", "role": "supervisor", "jurisdictions": ["bank-a"]},
    # The console's own certificate is registered with a wide scope: the test shows that the
    # supervisor's token, not the console's certificate, decides what she sees.
    "cert:console.regulator": {"name": "console", "role": "admin", "jurisdictions": ["*"]},
}


def make_pki(d: Path) -> dict[str, str]:
    ca_key = new_key()
    ca = issue_cert("suptech test CA", ca_key)
    paths = {"ca": d / "ca.pem"}
    paths["ca"].write_bytes(pem(ca))
    for cn in ("alerts", "console.regulator"):
        key = new_key()
        (d / f"{cn}.pem").write_bytes(pem(issue_cert(cn, key, (ca.subject, ca_key), LOOPBACK)))
        (d / f"{cn}.key").write_bytes(pem(key))
        paths[cn], paths[f"{cn}.key"] = d / f"{cn}.pem", d / f"{cn}.key"
    return {k: str(v) for k, v in paths.items()}


def produce(bootstrap: str, prefix: str, institutions: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for inst in institutions:
        f = findings_pb2.Finding(
            finding_id=f"tls-{inst}-{uuid.uuid4().hex[:6]}",
            family=findings_pb2.FAMILY_DATA_LEAKAGE,
            institution_id=inst,
            entity_kind="actor",
            entity_id=f"actor-{inst}",
            rule_id="bulk_export",
            score=0.97,
            threshold=0.9,
            grade=findings_pb2.GRADE_MAJOR,
            summary=f"bulk export at {inst}",
        )
        f.event_time.GetCurrentTime()
        producer.send(topic_name(FINDINGS, prefix), key=b"k", value=f.SerializeToString())
    producer.flush()
    producer.close()


@pytest.fixture
async def service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[AlertApp, dict[str, str]]]:
    files = make_pki(tmp_path)
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    env = {
        "ALERTS_HOST": "127.0.0.1",
        "ALERTS_PORT": "0",
        "ALERTS_HEALTH_PORT": "0",
        "ALERTS_TLS_CERT": files["alerts"],
        "ALERTS_TLS_KEY": files["alerts.key"],
        # Client certificates required: a handshake without one is refused.
        "ALERTS_TLS_CLIENT_CA": files["ca"],
        "ALERTS_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "ALERTS_DB_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
        "ALERTS_CONSUMER_GROUP": f"console-tls-{uuid.uuid4().hex[:8]}",
        "KAFKA_ADDR": kafka_bootstrap,
        "SUPTECH_TOPIC_PREFIX": topic_prefix,
    }
    app = build_alert_service(alerts_config(env))
    await app.start()
    yield app, files
    await app.stop()


async def console(app: AlertApp, files: dict[str, str], *, client_cert: bool) -> Console:
    env = {"CONSOLE_PORT": "0", "ALERTS_ADDR": f"localhost:{app.port}"}
    env["CONSOLE_ALERTS_CA"] = files["ca"]
    if client_cert:
        env["CONSOLE_ALERTS_CLIENT_CERT"] = files["console.regulator"]
        env["CONSOLE_ALERTS_CLIENT_KEY"] = files["console.regulator.key"]
    c = Console(load_config(env))
    await c.start()
    return c


async def sign_in(http: aiohttp.ClientSession, base: str, token: str) -> tuple[int, str]:
    # The console answers a good sign-in with a redirect to the list, which is followed.
    async with http.post(f"{base}/login", data={"token": token, "lang": "en"}) as resp:
        return resp.status, await resp.text()


async def test_console_over_mutual_tls_lists_the_supervisors_alerts(
    service: tuple[AlertApp, dict[str, str]], kafka_bootstrap: str, topic_prefix: str
) -> None:
    app, files = service
    produce(kafka_bootstrap, topic_prefix, ["bank-b", "bank-a"])
    c = await console(app, files, client_cert=True)
    base = f"http://127.0.0.1:{c.port}"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            # No token: refused, never signed in as the console's own certificate.
            status, _ = await sign_in(http, base, "")
            assert status == 401
            status, page = await sign_in(http, base, SUP)
            assert status == 200, page
            for _ in range(100):  # bank-a's went in after bank-b's, on one partition
                async with http.get(f"{base}/") as resp:
                    page = await resp.text()
                if "actor:actor-bank-a" in page:
                    break
                await asyncio.sleep(0.1)
            assert "actor:actor-bank-a" in page
            # Her token's jurisdiction, not the console certificate's "*".
            assert "bank-b" not in page
    finally:
        await c.stop()


async def test_console_without_its_client_certificate_says_so_clearly(
    service: tuple[AlertApp, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    app, files = service
    c = await console(app, files, client_cert=False)
    base = f"http://127.0.0.1:{c.port}"
    caplog.set_level(logging.WARNING)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            status, page = await sign_in(http, base, SUP)
    finally:
        await c.stop()
    assert status == 503
    assert "TLS handshake with the alert service failed" in page
    assert "sends no client certificate (CONSOLE_ALERTS_CLIENT_CERT)" in page
    assert 'id="token"' in page  # the sign-in form again, not a stack trace
    said = [r for r in caplog.records if r.name == "suptech.console.app"]
    assert len(said) == 1 and "TLS, no client certificate" in said[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cases = {
        "CONSOLE_ALERTS_CA": {"CONSOLE_ALERTS_CA": str(tmp_path / "missing.pem")},
        "go together": {"CONSOLE_ALERTS_CA": str(ca), "CONSOLE_ALERTS_CLIENT_CERT": str(ca)},
        "needs CONSOLE_ALERTS_CA": {
            "CONSOLE_ALERTS_CLIENT_CERT": str(ca),
            "CONSOLE_ALERTS_CLIENT_KEY": str(ca),
        },
    }
    for said, env in cases.items():
        with pytest.raises(ValueError, match=said):
            load_config(env)
    assert load_config({"CONSOLE_ALERTS_CA": str(ca)}) == ConsoleConfig(alerts_ca=str(ca))
