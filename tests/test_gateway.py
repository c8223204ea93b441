"""The ingest gateway for real: a grpc.aio server in-process, the shared Kafka broker behind it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, TopicPartition
from pki import issue_cert as _cert
from pki import new_key as _key
from pki import pem as _pem
from suptech.common.bundles import decode_bundle, topic_spec_for
from suptech.common.config import ConfigError
from suptech.common.topics import ensure_topics, topic_name
from suptech.gateway.config import GatewayConfig, load_config
from suptech.gateway.server import SERVICE_NAME, build_gateway
from suptech.v1 import ingest_pb2, ingest_pb2_grpc, telemetry_pb2

from tests.conftest import kafka_down
from tests.test_gateway_validation import valid_event

pytestmark = pytest.mark.integration

R = ingest_pb2.RejectReason
TOKEN_A = "token-bank-a-" + "a" * 30
TOKEN_B = "token-bank-b-" + "b" * 30
KINDS = ("data_access", "it_posture", "sandbox", "heartbeat")


def now_event(kind: str, n: int, institution: str = "bank-a") -> telemetry_pb2.TelemetryEnvelope:
    ev = valid_event(kind, n, institution=institution, event_time=time.time())
    ev.event_id = f"{uuid.uuid4().hex}-{n}"
    return ev


def base_config(kafka: str, prefix: str, **overrides: Any) -> GatewayConfig:
    config = GatewayConfig(
        host="127.0.0.1",
        port=0,
        kafka_addr=kafka,
        topic_prefix=prefix,
        tokens={TOKEN_A: "bank-a", TOKEN_B: "bank-b"},
        produce_timeout_s=5.0,
        grace_s=2.0,
    )
    return replace(config, **overrides)


class Running:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    async def __aenter__(self) -> int:
        self.server, self.cleanup = build_gateway(self.config)
        await self.server.start()
        return self.server.port

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(1.0)
        await self.cleanup()


@pytest.fixture
async def gateway(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[int]:
    async with Running(base_config(kafka_bootstrap, topic_prefix)) as port:
        yield port


def batch(events: Sequence[telemetry_pb2.TelemetryEnvelope], batch_id: str = "b-1") -> Any:
    return ingest_pb2.TelemetryBatch(batch_id=batch_id, events=events)


def _stream_blocking(
    target: str, batches: Sequence[Any], token: str | None, creds: grpc.ChannelCredentials | None
) -> list[Any]:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    channel = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        try:
            return list(stub.StreamTelemetry(iter(batches), metadata=metadata, timeout=30))
        except grpc.RpcError as err:
            raise grpc.aio.AioRpcError(
                err.code(),
                grpc.aio.Metadata(*(err.initial_metadata() or ())),
                grpc.aio.Metadata(*(err.trailing_metadata() or ())),
                err.details(),
                err.debug_error_string(),
            ) from None


async def stream(
    target: str,
    batches: Sequence[Any],
    token: str | None = TOKEN_A,
    creds: grpc.ChannelCredentials | None = None,
) -> list[Any]:
    """Send ``batches`` on one stream; return the acks (raises grpc.aio.AioRpcError).

    The blocking client, as the SDK's: grpc.aio's reports INTERNAL instead of the server's status
    when a write is in flight as the server ends the call, which a refusal before the first read
    makes likely (grpc/grpc#36066: an expired token once came back INTERNAL here)."""
    return await asyncio.to_thread(_stream_blocking, target, batches, token, creds)


async def send(port: int, batches: Sequence[Any], token: str | None = TOKEN_A) -> list[Any]:
    return await stream(f"127.0.0.1:{port}", batches, token)


def read_topics(kafka: str, prefix: str, expected_events: int) -> dict[str, list[Any]]:
    """Every record on the telemetry topics of ``prefix``: topic -> [(key, bundle)]."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None)
    try:
        parts = []
        for kind in KINDS:
            name = topic_name(topic_spec_for(kind), prefix)
            parts += [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        found: dict[str, list[Any]] = {}
        seen = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    bundle = decode_bundle(r.value)
                    found.setdefault(tp.topic, []).append((r.key, bundle))
                    seen += len(bundle.events)
            if seen >= expected_events:
                # One more poll: anything beyond what was expected is a defect to report.
                for tp, records in consumer.poll(timeout_ms=500).items():
                    found[tp.topic] += [(r.key, decode_bundle(r.value)) for r in records]
                break
        return found
    finally:
        consumer.close()


async def test_mixed_batch_acks_invalid_events_and_writes_exactly_the_valid_ones(
    gateway: int, kafka_bootstrap: str, topic_prefix: str
) -> None:
    valid = [now_event(kind, i) for i, kind in enumerate(KINDS)]
    valid.append(now_event("data_access", 7))
    foreign = now_event("data_access", 8, institution="bank-b")
    raw_actor = now_event("data_access", 9)
    raw_actor.data_access.actor_pseudonym = "zhang.san@example.com"
    future = now_event("heartbeat", 10)
    future.event_time.seconds += 3600
    duplicate = telemetry_pb2.TelemetryEnvelope()
    duplicate.CopyFrom(valid[0])
    no_payload = now_event("heartbeat", 11)
    no_payload.ClearField("heartbeat")
    events = [*valid[:2], foreign, raw_actor, *valid[2:], future, duplicate, no_payload]

    acks = await send(gateway, [batch(events, "mixed-1")])

    assert len(acks) == 1
    ack = acks[0]
    assert (ack.batch_id, ack.accepted) == ("mixed-1", len(valid))
    assert [(r.index, r.event_id, R.Name(r.reason)) for r in ack.rejections] == [
        (2, foreign.event_id, "REJECT_REASON_INSTITUTION_MISMATCH"),
        (3, raw_actor.event_id, "REJECT_REASON_INVALID_FORMAT"),
        (7, future.event_id, "REJECT_REASON_TIMESTAMP_SKEW"),
        (8, duplicate.event_id, "REJECT_REASON_DUPLICATE_IN_BATCH"),
        (9, no_payload.event_id, "REJECT_REASON_NO_PAYLOAD"),
    ]
    assert "actor_pseudonym" in ack.rejections[1].detail

    found = read_topics(kafka_bootstrap, topic_prefix, len(valid))
    expected: dict[str, list[bytes]] = {}
    for ev in valid:
        kind = ev.WhichOneof("payload")
        expected.setdefault(topic_name(topic_spec_for(kind), topic_prefix), []).append(
            ev.SerializeToString()
        )
    got = {
        topic: [ev.SerializeToString() for _, bundle in records for ev in bundle.events]
        for topic, records in found.items()
    }
    assert got == expected
    for records in found.values():
        assert len(records) == 1  # one record per batch and topic
        key, bundle = records[0]
        assert (key, bundle.institution_id, bundle.batch_id) == (b"bank-a", "bank-a", "mixed-1")


async def test_acks_follow_batches_on_one_stream(gateway: int) -> None:
    batches = [batch([now_event("heartbeat", i)], f"seq-{i}") for i in range(3)]
    acks = await send(gateway, batches)
    assert [(a.batch_id, a.accepted, len(a.rejections)) for a in acks] == [
        ("seq-0", 1, 0),
        ("seq-1", 1, 0),
        ("seq-2", 1, 0),
    ]


@pytest.mark.parametrize(
    "token", [None, "wrong-token-" + "x" * 30, TOKEN_A[:-1]], ids=["none", "wrong", "prefix"]
)
async def test_unauthenticated_caller_is_refused(gateway: int, token: str | None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(gateway, [batch([now_event("heartbeat", 0)])], token=token)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_non_bearer_scheme_is_refused(gateway: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.StreamTelemetry(
            iter([batch([now_event("heartbeat", 0)])]),
            metadata=(("authorization", f"Basic {TOKEN_A}"),),
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [a async for a in call]
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_token_decides_the_institution(gateway: int) -> None:
    # bank-b's token with bank-a's events: every event refused as another institution's.
    acks = await send(gateway, [batch([now_event("heartbeat", 0)])], token=TOKEN_B)
    assert acks[0].accepted == 0
    assert R.Name(acks[0].rejections[0].reason) == "REJECT_REASON_INSTITUTION_MISMATCH"


@pytest.mark.parametrize("batch_id", ["", "b" * 129])
async def test_bad_batch_id_is_invalid_argument(gateway: int, batch_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(gateway, [batch([now_event("heartbeat", 0)], batch_id)])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch_id" in (err.value.details() or "")


async def test_too_many_events_is_invalid_argument(kafka_bootstrap: str, topic_prefix: str) -> None:
    config = base_config(kafka_bootstrap, topic_prefix, max_batch_events=5, rate_limit_burst=10.0)
    async with Running(config) as port:
        ok = await send(port, [batch([now_event("heartbeat", i) for i in range(5)])])
        assert ok[0].accepted == 5
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send(port, [batch([now_event("heartbeat", i) for i in range(6)])])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_message_over_8_mib_is_resource_exhausted(gateway: int) -> None:
    ev = now_event("heartbeat", 0)
    ev.heartbeat.sdk_version = "x" * (9 * 1024 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(gateway, [batch([ev])])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rate_limit_is_resource_exhausted_with_retry_after(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    config = base_config(
        kafka_bootstrap,
        topic_prefix,
        rate_limit_eps=1.0,
        rate_limit_burst=10.0,
        max_batch_events=10,
    )
    async with Running(config) as port:
        first = await send(port, [batch([now_event("heartbeat", i) for i in range(10)])])
        assert first[0].accepted == 10
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send(port, [batch([now_event("heartbeat", i) for i in range(10)])])
        # Another institution has its own bucket.
        other = await send(port, [batch([now_event("heartbeat", 0, "bank-b")])], token=TOKEN_B)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = dict(err.value.trailing_metadata() or ()).get("retry-after-ms")
    assert retry is not None and int(retry) > 0
    assert other[0].accepted == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_kafka_unreachable_is_unavailable_and_no_ack(topic_prefix: str) -> None:
    config = base_config(f"127.0.0.1:{closed_port()}", topic_prefix, produce_timeout_s=2.0)
    async with Running(config) as port:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            # The client deadline is far above the produce timeout: a hang shows up as
            # DEADLINE_EXCEEDED, not as the UNAVAILABLE the client can act on.
            call = stub.StreamTelemetry(
                iter([batch([now_event("data_access", 0)])]),
                metadata=(("authorization", f"Bearer {TOKEN_A}"),),
                timeout=30,
            )
            acks = []
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for ack in call:
                    acks.append(ack)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Kafka" in (err.value.details() or "")
    assert acks == []


async def test_health_reports_serving(gateway: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


# ---- mutual TLS ---------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    return make_pki(tmp_path)


def make_pki(tmp_path: Path) -> dict[str, Any]:
    """A CA, a server certificate for localhost/127.0.0.1 (files in ``tmp_path``), a client
    certificate of bank-c and one of a supervisor, signed by the same CA."""
    ca_key = _key()
    ca = _cert("suptech test CA", ca_key, None, ca=True)
    server_key = _key()
    server = _cert(
        "gateway",
        server_key,
        (ca.subject, ca_key),
        san=x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ),
    )
    client_key = _key()
    client = _cert("bank-c", client_key, (ca.subject, ca_key))
    supervisor_key = _key()
    supervisor = _cert("supervisor-1", supervisor_key, (ca.subject, ca_key))
    files = {"ca": _pem(ca), "server": _pem(server), "server_key": _pem(server_key)}
    for name, data in files.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    return {
        "dir": tmp_path,
        "ca": files["ca"],
        "client": _pem(client),
        "client_key": _pem(client_key),
        "supervisor": _pem(supervisor),
        "supervisor_key": _pem(supervisor_key),
    }


def mtls_config(kafka: str, prefix: str, pki: dict[str, Any], **tokens: str) -> GatewayConfig:
    d = pki["dir"]
    return base_config(
        kafka,
        prefix,
        tokens=tokens,
        tls_cert=str(d / "server.pem"),
        tls_key=str(d / "server_key.pem"),
        tls_client_ca=str(d / "ca.pem"),
    )


def client_credentials(pki: dict[str, Any], who: str = "client") -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki["ca"], private_key=pki[f"{who}_key"], certificate_chain=pki[who]
    )


async def test_mtls_identity_comes_from_the_client_certificate(
    kafka_bootstrap: str, topic_prefix: str, pki: dict[str, Any]
) -> None:
    # bank-c is registered by its certificate alone: no token in the registry.
    config = mtls_config(kafka_bootstrap, topic_prefix, pki, **{"cert:bank-c": "bank-c"})
    async with Running(config) as port:
        target = f"localhost:{port}"
        events = [now_event("heartbeat", 0, "bank-c"), now_event("heartbeat", 1, "bank-a")]
        acks = await stream(target, [batch(events)], None, client_credentials(pki))
        # Without a client certificate the handshake itself is refused.
        no_cert = grpc.ssl_channel_credentials(root_certificates=pki["ca"])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream(target, [batch([now_event("heartbeat", 2, "bank-c")])], None, no_cert)
    assert acks[0].accepted == 1
    assert [(r.index, R.Name(r.reason)) for r in acks[0].rejections] == [
        (1, "REJECT_REASON_INSTITUTION_MISMATCH")
    ]
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_of_the_ca_that_is_no_institution_is_permission_denied(
    kafka_bootstrap: str, topic_prefix: str, pki: dict[str, Any]
) -> None:
    """Issue 8 item 7: a supervisor's certificate, from the CA that signs the institutions',
    wrote telemetry as institution "supervisor-1". Now only registered identities are
    institutions; the supervisor is told PERMISSION_DENIED, with or without a valid token."""
    config = mtls_config(kafka_bootstrap, topic_prefix, pki, **{"cert:bank-c": "bank-c"})
    config = replace(config, tokens={**config.tokens, TOKEN_A: "bank-a"})
    refused = []
    async with Running(config) as port:
        target = f"localhost:{port}"
        supervisor = client_credentials(pki, "supervisor")
        for token in (None, TOKEN_A):
            events = [now_event("heartbeat", 0, "supervisor-1"), now_event("heartbeat", 1)]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stream(target, [batch(events)], token, supervisor)
            refused.append((err.value.code(), err.value.details()))
        # Afterwards, a registered institution's event: Kafka holds it and nothing before it.
        events = [now_event("heartbeat", 2, "bank-c")]
        acks = await stream(target, [batch(events)], None, client_credentials(pki))
    assert refused == 2 * [
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "client certificate 'supervisor-1' is not a registered institution",
        )
    ]
    assert acks[0].accepted == 1
    written = read_topics(kafka_bootstrap, topic_prefix, expected_events=1)
    assert [
        (bundle.institution_id, ev.institution_id)
        for records in written.values()
        for _, bundle in records
        for ev in bundle.events
    ] == [("bank-c", "bank-c")]


# ---- the registry of institutions, re-read while the gateway runs ------------------------------


def rewrite(path: Path, content: str) -> None:
    # As editors and Kubernetes Secret updates do: a new file renamed over the old one.
    tmp = path.with_suffix(".new")
    tmp.write_text(content)
    tmp.replace(path)


async def outcome(port: int, token: str, institution: str) -> tuple[Any, str]:
    """One batch on a new stream: (status code, details); OK when it was acknowledged."""
    try:
        acks = await send(port, [batch([now_event("heartbeat", 0, institution)])], token=token)
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
    assert acks[0].accepted == 1, acks
    return grpc.StatusCode.OK, ""


async def until(port: int, token: str, institution: str, want: Any) -> tuple[Any, str]:
    """Poll until a new stream of ``token`` gets ``want``; fail after a generous deadline."""
    deadline = time.monotonic() + 30
    while (got := await outcome(port, token, institution))[0] != want:
        assert time.monotonic() < deadline, f"{institution}: still {got}"
        await asyncio.sleep(0.1)
    return got


@pytest.fixture
async def reloading(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[int, Path]]:
    registry = tmp_path / "tokens.json"
    registry.write_text(json.dumps({TOKEN_A: "bank-a", TOKEN_B: "bank-b"}))
    config = load_config(
        {
            "GATEWAY_TOKENS_FILE": str(registry),
            "GATEWAY_TOKENS_RELOAD_S": "0.2",
            "GATEWAY_PORT": "0",
            "KAFKA_ADDR": kafka_bootstrap,
            "SUPTECH_TOPIC_PREFIX": topic_prefix,
            "GATEWAY_GRACE_S": "1",
        }
    )
    async with Running(config) as port:
        yield port, registry


async def test_a_token_removed_from_the_file_is_refused_without_a_restart(
    reloading: tuple[int, Path],
) -> None:
    """Issue 8 item 6: revoking a token needed a restart. Now new streams and the batches of an
    open one are refused once the file no longer has it; other institutions carry on."""
    port, registry = reloading
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        open_stream = stub.StreamTelemetry(metadata=(("authorization", f"Bearer {TOKEN_B}"),))
        await open_stream.write(batch([now_event("heartbeat", 0, "bank-b")], "before"))
        assert (await open_stream.read()).accepted == 1

        rewrite(registry, json.dumps({TOKEN_A: "bank-a"}))
        code, details = await until(port, TOKEN_B, "bank-b", grpc.StatusCode.UNAUTHENTICATED)
        assert details == "unknown token"
        # The stream opened before the revocation: its next batch is refused and ends it.
        await open_stream.write(batch([now_event("heartbeat", 1, "bank-b")], "after"))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await open_stream.read()
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await outcome(port, TOKEN_A, "bank-a") == (grpc.StatusCode.OK, "")


async def test_expired_tokens_are_refused_saying_so(reloading: tuple[int, Path]) -> None:
    port, registry = reloading
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    expired, valid = "expired-token-" + "e" * 30, "valid-token-" + "v" * 30
    rewrite(
        registry,
        json.dumps(
            {
                TOKEN_A: "bank-a",
                expired: {"institution": "bank-e", "expires": past},
                valid: {"institution": "bank-v", "expires": future},
            }
        ),
    )
    await until(port, valid, "bank-v", grpc.StatusCode.OK)
    code, details = await outcome(port, expired, "bank-e")
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith("token expired at ")


async def test_a_malformed_rewrite_keeps_the_last_good_registry(
    reloading: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in the file must not lock every institution out, nor let anyone new in."""
    port, registry = reloading
    newcomer = "newcomer-token-" + "n" * 30
    caplog.set_level(logging.ERROR, logger="suptech.common.credentials")
    rewrite(registry, json.dumps({TOKEN_A: "bank-a", newcomer: "bank-n", "short": "bank-s"})[:-1])
    deadline = time.monotonic() + 30
    # The file is looked at on the calls that need it: keep calling until it was.
    while "rejected, the previous contents stay in force" not in caplog.text:
        assert time.monotonic() < deadline, "the malformed file was never looked at"
        assert await outcome(port, TOKEN_A, "bank-a") == (grpc.StatusCode.OK, "")
        await asyncio.sleep(0.1)
    assert "not JSON" in caplog.text
    for token, institution in ((TOKEN_A, "bank-a"), (TOKEN_B, "bank-b")):
        assert await outcome(port, token, institution) == (grpc.StatusCode.OK, "")
    assert (await outcome(port, newcomer, "bank-n"))[0] == grpc.StatusCode.UNAUTHENTICATED
    # Fixed: the new file takes over.
    rewrite(registry, json.dumps({newcomer: "bank-n"}))
    await until(port, newcomer, "bank-n", grpc.StatusCode.OK)
    assert (await outcome(port, TOKEN_A, "bank-a"))[0] == grpc.StatusCode.UNAUTHENTICATED


# ---- configuration -------------------------------------------------------------------------------


def test_config_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN_A: "bank-a"}))
    good = {"GATEWAY_TOKENS_FILE": str(tokens)}
    assert load_config(good).tokens == {TOKEN_A: "bank-a"}
    assert load_config(good).port == 50051
    # The port the Helm chart's probes use when TLS is on (components.gateway.healthPort).
    assert load_config(good).health_port == 50052
    assert load_config(good).max_event_bytes == 256 * 1024
    bad_cases = {
        "GATEWAY_PORT": {**good, "GATEWAY_PORT": "fifty"},
        "GATEWAY_TOKENS_FILE": {"GATEWAY_TOKENS_FILE": str(tmp_path / "missing.json")},
        "GATEWAY_TLS_CLIENT_CA": {},  # nothing to authenticate with
        "GATEWAY_RATE_LIMIT_BURST": {**good, "GATEWAY_RATE_LIMIT_EPS": "100"},
        "GATEWAY_HEALTH_PORT": {**good, "GATEWAY_HEALTH_PORT": "70000"},
        # Above the ceiling, a lone event might not fit a Kafka record.
        "GATEWAY_MAX_EVENT_BYTES": {**good, "GATEWAY_MAX_EVENT_BYTES": str(600 * 1024)},
        "GATEWAY_TOKENS_RELOAD_S": {**good, "GATEWAY_TOKENS_RELOAD_S": "0"},
    }
    for variable, env in bad_cases.items():
        with pytest.raises(ConfigError, match=variable):
            load_config(env)
    (tmp_path / "short.json").write_text(json.dumps({"short": "bank-a"}))
    with pytest.raises(ConfigError, match="GATEWAY_TOKENS_FILE"):
        load_config({"GATEWAY_TOKENS_FILE": str(tmp_path / "short.json")})


# ---- the entry point ---------------------------------------------------------------------------


async def test_entry_point_serves_then_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN_A: "bank-a"}))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(["services", "."]),
        GATEWAY_PORT="0",
        GATEWAY_TOKENS_FILE=str(tokens),
        KAFKA_ADDR=kafka_bootstrap,
        SUPTECH_TOPIC_PREFIX=topic_prefix,
        GATEWAY_GRACE_S="3",
    )
    repo = Path(__file__).resolve().parents[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "suptech.gateway",
        cwd=repo,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "gateway exited before listening"
            match = re.search(r"gateway listening on (\d+)", line)
            port = int(match.group(1)) if match else None
        acks = await send(port, [batch([now_event("sandbox", 0)], "entry-1")])
        assert (acks[0].batch_id, acks[0].accepted) == ("entry-1", 1)
        proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        assert await proc.wait() == 0
        assert "gateway stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_entry_point_config_error_names_the_variable(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(["services", "."]),
        GATEWAY_TOKENS_FILE=str(tmp_path / "nope.json"),
    )
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "suptech.gateway"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "GATEWAY_TOKENS_FILE" in result.stderr


# ---- Kafka going away and coming back ----------------------------------------------------------


def free_port_pair() -> int:
    """A port whose successor is free too (the broker's controller listens on port + 1)."""
    for _ in range(50):
        port = closed_port()
        if port < 65000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


async def wait_health(port: int, want: int, bound_s: float = 60.0) -> bool:
    """Poll the gateway's health until it is ``want``; whether it got there within the bound."""
    deadline = time.monotonic() + bound_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            if reply.status == want:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_gateway_recovers_after_broker_restart(private_kafka: Any) -> None:
    port = free_port_pair()
    bootstrap = await asyncio.to_thread(private_kafka, port)
    config = base_config(bootstrap, "", produce_timeout_s=3.0)
    async with Running(config) as gw:
        # Creates the topics, as the entry point does at start.
        await asyncio.to_thread(ensure_topics, bootstrap, "")
        first = await send(gw, [batch([now_event("heartbeat", 0)], "before")])
        assert first[0].accepted == 1
        await asyncio.to_thread(kafka_down, port)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send(gw, [batch([now_event("heartbeat", 1)], "during")])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # Down for longer than the produce timeout: the pod leaves the Service's endpoints.
        assert await wait_health(gw, health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.to_thread(private_kafka, port)
        assert await wait_health(gw, health_pb2.HealthCheckResponse.SERVING)
        # The same gateway, without a restart, writes again once the broker is back.
        after = None
        for _ in range(10):
            try:
                after = await send(gw, [batch([now_event("heartbeat", 2)], "after")])
                break
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert after is not None and after[0].accepted == 1
    found = await asyncio.to_thread(read_topics, bootstrap, "", 2)
    batches = [b.batch_id for records in found.values() for _, b in records]
    assert sorted(batches) == ["after", "before"]


async def test_whole_batch_error_ends_stream_after_acking_earlier_batches(gateway: int) -> None:
    batches = [batch([now_event("heartbeat", i)], f"ok-{i}") for i in range(3)]
    batches.append(batch([now_event("heartbeat", 9)], ""))
    acks: list[Any] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        call = stub.StreamTelemetry(
            iter(batches), metadata=(("authorization", f"Bearer {TOKEN_A}"),), timeout=30
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for ack in call:
                acks.append(ack)
    assert [a.batch_id for a in acks] == ["ok-0", "ok-1", "ok-2"]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_all_valid_single_kind_batch_is_written_as_received(
    gateway: int, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # The record is then built from the received bytes (suptech.gateway.forward).
    events = [now_event("data_access", i) for i in range(50)]
    acks = await send(gateway, [batch(events, "whole-1")])
    assert (acks[0].accepted, list(acks[0].rejections)) == (50, [])
    found = read_topics(kafka_bootstrap, topic_prefix, len(events))
    topic = topic_name(topic_spec_for("data_access"), topic_prefix)
    assert list(found) == [topic]
    ((key, bundle),) = found[topic]
    assert (key, bundle.institution_id, bundle.batch_id) == (b"bank-a", "bank-a", "whole-1")
    assert bundle.received_time.seconds > 0
    assert list(bundle.events) == events
