"""Authentication, the permission matrix and jurisdictions, through real gRPC calls.

The service is the real one (``build_alert_service``: SQLite, the shared Kafka broker, the gRPC
server with :class:`AuthInterceptor`); mutual TLS runs the same servicer on a TLS port.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pki import issue_cert as _cert
from pki import pem as _pem
from sqlalchemy import select
from suptech.alerts import audit
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.authz import AuthInterceptor, TokenStore
from suptech.alerts.config import AlertsConfig
from suptech.alerts.database import open_database
from suptech.alerts.models import AlertRow, AuditLogRow
from suptech.alerts.service import AlertServicer
from suptech.alerts.store import AlertStore, append_event
from suptech.common.grpc_server import GrpcServer, ServerTLS
from suptech.common.topics import delete_topics_with_prefix
from suptech.v1 import alerts_pb2, alerts_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
ROLES = ["viewer", "analyst", "supervisor", "admin", "institution"]
TOKENS: dict[str, dict[str, Any]] = {
    **{f"tok-16chars-{r}": {"name": f"{r}-1", "role": r, "jurisdictions": ["*"]} for r in ROLES},
    "tok-16chars-partner": {
        "name": "partner-hk",
        "role": "analyst",
        "jurisdictions": ["bank-sz-01"],
    },
    "tok-16chars-partner-sup": {
        "name": "partner-sup",
        "role": "supervisor",
        "jurisdictions": ["bank-sz-01"],
    },
    "tok-16chars-gateway": {"name": "bank-sz-01", "institution_id": "bank-sz-01"},
    "cert:console.regulator": {"name": "console", "role": "supervisor", "jurisdictions": ["*"]},
}
READ = {
    "ListAlerts",
    "GetAlert",
    "StreamAlerts",
    "ListAuditEntries",
    "ListSilences",
    "ListSandboxTests",
}
ALLOWED = {
    "viewer": READ,
    "analyst": READ | {"Acknowledge", "Assign"},
    "supervisor": READ | {"Acknowledge", "Assign", "Resolve", "CreateSilence", "ExpireSilence"},
    "admin": READ | {"Acknowledge", "Assign", "Resolve", "CreateSilence", "ExpireSilence"},
    "institution": set(),
}
# Requests that pass validation of nothing in particular: once authorized, they fail (or not)
# for reasons of their own, never with an authentication status.
CALLS: dict[str, Any] = {
    "ListAlerts": alerts_pb2.ListAlertsRequest(),
    "GetAlert": alerts_pb2.GetAlertRequest(alert_id="missing"),
    "StreamAlerts": alerts_pb2.StreamAlertsRequest(cursor="0"),
    "ListAuditEntries": alerts_pb2.ListAuditEntriesRequest(alert_id="missing"),
    "ListSilences": alerts_pb2.ListSilencesRequest(),
    "ListSandboxTests": alerts_pb2.ListSandboxTestsRequest(),
    "Acknowledge": alerts_pb2.AcknowledgeRequest(alert_id="missing"),
    "Assign": alerts_pb2.AssignRequest(alert_id="missing", assignee="x"),
    "Resolve": alerts_pb2.ResolveRequest(alert_id="missing", verdict=1),
    "CreateSilence": alerts_pb2.CreateSilenceRequest(),
    "ExpireSilence": alerts_pb2.ExpireSilenceRequest(silence_id="missing"),
}
AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def seed(app: AlertApp) -> None:
    assert app.sessions is not None
    with app.sessions.begin() as s:
        for inst in ("bank-sz-01", "bank-sz-02"):
            row = AlertRow(
                alert_id=f"a-{inst}",
                group_key=f"{inst}|1|system|core|rule",
                family=1,
                institution_id=inst,
                entity_kind="system",
                entity_id="core",
                detector_id="rule.bulk_export",
                grade=3,
                state=alerts_pb2.ALERT_STATE_OPEN,
                summary="bulk export",
                first_seen=T0,
                last_seen=T0,
                ack_deadline=T0 + dt.timedelta(hours=2),
                escalation_level=0,
                created_time=T0,
                updated_time=T0,
            )
            s.add(row)
            s.flush()
            append_event(s, row, alerts_pb2.ALERT_EVENT_KIND_CREATED, T0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AlertApp]:
    d = tmp_path_factory.mktemp("alerts-authz")
    (d / "tokens.json").write_text(json.dumps(TOKENS))
    config = AlertsConfig(
        host="127.0.0.1",
        port=0,
        db_url=f"sqlite:///{d / 'alerts.db'}",
        kafka_addr=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        tokens_file=str(d / "tokens.json"),
    )
    app = build_alert_service(config)
    await app.start()
    seed(app)
    yield app
    await app.stop()
    delete_topics_with_prefix(kafka_bootstrap, config.topic_prefix)


async def call(port: int, method: str, token: str | None, request: Any = None) -> Any:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        rpc = getattr(stub, method)
        req = CALLS[method] if request is None else request
        if method == "StreamAlerts":
            stream = rpc(req, metadata=metadata, timeout=20)
            first = await stream.read()
            stream.cancel()
            return first
        return await rpc(req, metadata=metadata, timeout=20)


async def status_of(port: int, method: str, token: str | None) -> grpc.StatusCode:
    try:
        await call(port, method, token)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("role", ROLES)
async def test_permission_matrix_over_grpc(service: AlertApp, role: str) -> None:
    codes = {m: await status_of(service.port, m, f"tok-16chars-{role}") for m in CALLS}
    allowed = {m for m, c in codes.items() if c not in AUTH_CODES}
    assert allowed == ALLOWED[role], codes
    denied = {c for m, c in codes.items() if m not in ALLOWED[role]}
    assert denied <= {grpc.StatusCode.PERMISSION_DENIED}
    if "ListAlerts" in allowed:
        assert codes["ListAlerts"] == codes["StreamAlerts"] == grpc.StatusCode.OK


@pytest.mark.parametrize("token", [None, "tok-16chars-wrong", "tok-16chars-gateway"])
async def test_unknown_or_institution_credentials_get_nothing(
    service: AlertApp, token: str | None
) -> None:
    expected = (
        grpc.StatusCode.PERMISSION_DENIED
        if token == "tok-16chars-gateway"
        else grpc.StatusCode.UNAUTHENTICATED
    )
    for method in ("ListAlerts", "StreamAlerts", "Acknowledge"):
        assert await status_of(service.port, method, token) == expected


async def test_health_needs_no_credentials(service: AlertApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_partner_regulator_sees_only_shared_institutions(service: AlertApp) -> None:
    listed = await call(service.port, "ListAlerts", "tok-16chars-partner")
    assert [a.institution_id for a in listed.alerts] == ["bank-sz-01"]
    everyone = await call(service.port, "ListAlerts", "tok-16chars-viewer")
    assert sorted(a.institution_id for a in everyone.alerts) == ["bank-sz-01", "bank-sz-02"]
    first = await call(service.port, "StreamAlerts", "tok-16chars-partner")
    assert first.alert.institution_id == "bank-sz-01"
    for method, request in [
        ("GetAlert", alerts_pb2.GetAlertRequest(alert_id="a-bank-sz-02")),
        ("Acknowledge", alerts_pb2.AcknowledgeRequest(alert_id="a-bank-sz-02")),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(service.port, method, "tok-16chars-partner", request)
        # Not even the existence of another jurisdiction's alert is revealed.
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_actions_are_audited_under_the_callers_identity(service: AlertApp) -> None:
    reply = await call(
        service.port,
        "Acknowledge",
        "tok-16chars-partner",
        alerts_pb2.AcknowledgeRequest(alert_id="a-bank-sz-01", note="looking"),
    )
    assert reply.alert.state == alerts_pb2.ALERT_STATE_ACKNOWLEDGED
    assert service.sessions is not None
    with service.sessions() as s:
        entries = list(s.scalars(select(AuditLogRow).where(AuditLogRow.alert_id == "a-bank-sz-01")))
        assert [(e.actor, e.role, e.action) for e in entries] == [
            ("partner-hk", "analyst", "acknowledge")
        ]
        assert audit.verify(s).ok


async def test_partner_cannot_expire_a_silence_outside_its_jurisdiction(service: AlertApp) -> None:
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    async def create(token: str, matchers: dict[str, str]) -> str:
        request = alerts_pb2.CreateSilenceRequest(
            matchers=[alerts_pb2.Matcher(name=k, value=v) for k, v in matchers.items()],
            comment="maintenance",
        )
        request.ends_at.FromDatetime(ends)
        reply = await call(service.port, "CreateSilence", token, request)
        return str(reply.silence.silence_id)

    def expire(silence_id: str) -> alerts_pb2.ExpireSilenceRequest:
        return alerts_pb2.ExpireSilenceRequest(silence_id=silence_id)

    others = await create("tok-16chars-admin", {"institution_id": "bank-sz-02"})
    everyone = await create("tok-16chars-admin", {"family": "FAMILY_DATA_LEAKAGE"})
    own = await create("tok-16chars-partner-sup", {"institution_id": "bank-sz-01"})
    for silence_id in (others, everyone):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(service.port, "ExpireSilence", "tok-16chars-partner-sup", expire(silence_id))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "outside your jurisdiction" in (err.value.details() or "")
    reply = await call(service.port, "ExpireSilence", "tok-16chars-partner-sup", expire(own))
    assert reply.silence.expired
    # The refused ones are still in force: the admin can expire them (once).
    for silence_id in (others, everyone):
        reply = await call(service.port, "ExpireSilence", "tok-16chars-admin", expire(silence_id))
        assert reply.silence.expired
    assert service.sessions is not None
    with service.sessions() as s:
        refused = [
            e
            for e in s.scalars(select(AuditLogRow).where(AuditLogRow.action == "expire_silence"))
            if e.actor == "partner-sup"
        ]
        assert [e.details["silence_id"] for e in refused] == [own]


async def test_an_alerts_audit_trail_is_read_under_getalerts_rules(service: AlertApp) -> None:
    assign = alerts_pb2.AssignRequest(alert_id="a-bank-sz-02", assignee="zhao.lei")
    await call(service.port, "Assign", "tok-16chars-admin", assign)
    trail = alerts_pb2.ListAuditEntriesRequest(alert_id="a-bank-sz-02")
    got = await call(service.port, "ListAuditEntries", "tok-16chars-viewer", trail)
    mine = [e for e in got.entries if e.action == "assign"]
    assert [(e.actor, e.role) for e in mine] == [("admin-1", "admin")]
    assert mine[0].details["assignee"] == "zhao.lei" and len(mine[0].hash) == 64
    assert mine[0].time.ToDatetime(tzinfo=dt.UTC) > T0 - dt.timedelta(minutes=1)
    # Another jurisdiction's alert does not exist for the partner; an institution gets nothing.
    for token, code in (
        ("tok-16chars-partner", grpc.StatusCode.NOT_FOUND),
        ("tok-16chars-gateway", grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(service.port, "ListAuditEntries", token, trail)
        assert err.value.code() == code


async def test_silences_are_listed_within_the_callers_jurisdiction(service: AlertApp) -> None:
    tag = uuid.uuid4().hex[:8]
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    made: dict[str, str] = {}
    for name, inst in (
        ("own", "bank-sz-01"),
        ("mine", "bank-sz-01"),
        ("other", "bank-sz-02"),
        ("all", ""),
    ):
        request = alerts_pb2.CreateSilenceRequest(
            matchers=[alerts_pb2.Matcher(name="entity_id", value=f"{name}-{tag}")]
            + ([alerts_pb2.Matcher(name="institution_id", value=inst)] if inst else []),
            comment=f"{name} {tag}",
        )
        request.ends_at.FromDatetime(ends)
        reply = await call(service.port, "CreateSilence", "tok-16chars-admin", request)
        made[name] = reply.silence.silence_id
    expire = alerts_pb2.ExpireSilenceRequest(silence_id=made["own"])
    await call(service.port, "ExpireSilence", "tok-16chars-admin", expire)

    async def listed(token: str, include_expired: bool) -> dict[str, alerts_pb2.Silence]:
        request = alerts_pb2.ListSilencesRequest(include_expired=include_expired)
        reply = await call(service.port, "ListSilences", token, request)
        return {s.silence_id: s for s in reply.silences if s.comment.endswith(tag)}

    everything = await listed("tok-16chars-viewer", True)
    assert set(everything) == set(made.values())
    assert everything[made["own"]].expired and everything[made["own"]].created_by == "admin-1"
    assert not any(s.caller_may_expire for s in everything.values())  # a viewer may not
    active = await listed("tok-16chars-admin", False)
    assert set(active) == {made["mine"], made["other"], made["all"]}
    assert all(s.caller_may_expire for s in active.values())
    # The partner sees its institution's and the global one (it mutes her alerts too), never
    # bank-sz-02's; she may expire only those within her jurisdiction that are still active.
    partner = await listed("tok-16chars-partner-sup", True)
    assert set(partner) == {made["own"], made["mine"], made["all"]}
    assert {i for i, s in partner.items() if s.caller_may_expire} == {made["mine"]}


# ---- mutual TLS ---------------------------------------------------------------------------------


class RequireClientCert(ServerTLS):
    # The shared ServerTLS never asks for a client certificate (gRPC Python can only ask by
    # requiring one), so mutual TLS needs require_client_auth=True.
    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.client_ca_pem,
            require_client_auth=True,
        )


@pytest_asyncio.fixture(loop_scope="module")
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, dict[str, bytes]]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("suptech test CA", ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _cert(
        "alerts",
        server_key,
        (ca.subject, ca_key),
        x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ),
    )
    pem: dict[str, bytes] = {"ca": _pem(ca)}
    for cn in ("console.regulator", "stranger"):
        key = ec.generate_private_key(ec.SECP256R1())
        pem[cn] = _pem(_cert(cn, key, (ca.subject, ca_key)))
        pem[f"{cn}.key"] = _pem(key)
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'alerts.db'}")
    servicer = AlertServicer(AlertStore(sessions, AlertsConfig()))
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        registrations=[lambda s: alerts_pb2_grpc.add_AlertServiceServicer_to_server(servicer, s)],
        service_names=["suptech.v1.AlertService"],
        tls=RequireClientCert(_pem(server_cert), _pem(server_key), pem["ca"]),
        interceptors=[AuthInterceptor(TokenStore.from_json(json.dumps(TOKENS)))],
    )
    await server.start()
    yield server.port, pem
    await server.stop(0)
    engine.dispose()


@pytest.mark.parametrize(
    ("cn", "expected"),
    [
        ("console.regulator", grpc.StatusCode.OK),
        # Signed by the CA, so the handshake succeeds, but not registered in the tokens file.
        ("stranger", grpc.StatusCode.UNAUTHENTICATED),
        # No certificate: the handshake itself is refused.
        (None, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_client_certificate_identifies_the_caller(
    tls_server: tuple[int, dict[str, bytes]], cn: str | None, expected: grpc.StatusCode
) -> None:
    port, pem = tls_server
    creds = grpc.ssl_channel_credentials(
        root_certificates=pem["ca"],
        private_key=pem[f"{cn}.key"] if cn else None,
        certificate_chain=pem[cn] if cn else None,
    )
    async with grpc.aio.secure_channel(f"localhost:{port}", creds) as channel:
        stub = alerts_pb2_grpc.AlertServiceStub(channel)
        try:
            # Supervisor via its certificate: may create a silence (refused here as invalid).
            await stub.ListAlerts(alerts_pb2.ListAlertsRequest(), timeout=20)
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
    assert code == expected
