"""SDK -> real gateway (subprocess) -> real Kafka: delivery, crashes of each hop, pseudonyms."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from suptech.common.bundles import PAYLOAD_KINDS, decode_bundle, topic_spec_for
from suptech.common.topics import ensure_topics, topic_name
from suptech.sdk import AsyncTelemetryClient, TelemetryClient, pseudonymise
from suptech.v1 import telemetry_pb2

from tests.conftest import kafka_down, kafka_up

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
INSTITUTION = "BANK-E2E-1"
TOKEN = "tok-" + "e2e" * 8
KEY = b"institution-secret-pseudonym-key"
PY_ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'services'}:{REPO}"}


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_gateway(
    kafka: str,
    prefix: str,
    workdir: Path,
    port: int = 0,
    registry: dict[str, str] | None = None,
    **extra_env: str,
) -> Gateway:
    """The gateway as a process; ``registry`` adds entries to its tokens file."""
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: INSTITUTION, **(registry or {})}))
    log = workdir / f"gateway-{uuid.uuid4().hex[:6]}.log"
    env = dict(
        PY_ENV,
        GATEWAY_PORT=str(port),
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        GATEWAY_TOKENS_FILE=str(tokens),
        GATEWAY_PRODUCE_TIMEOUT_S="3",
        GATEWAY_GRACE_S="1",
        **extra_env,
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suptech.gateway"], env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"gateway listening on (\d+)", log.read_text(errors="replace"))
        if found:
            return Gateway(proc, int(found.group(1)), log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"gateway did not start:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@pytest.fixture
def gateway(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Gateway]:
    gw = start_gateway(kafka_bootstrap, topic_prefix, tmp_path)
    yield gw
    stop(gw.proc)


def read_kafka(
    bootstrap: str,
    prefix: str,
    until: Callable[[dict[str, list[telemetry_pb2.TelemetryEnvelope]]], bool],
) -> tuple[dict[str, list[telemetry_pb2.TelemetryEnvelope]], list[tuple[bytes, bytes]]]:
    """Every telemetry event under ``prefix`` by payload kind, and the raw (key, value) records,
    read from the beginning until ``until`` holds or nothing new arrives for a while."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic_name(topic_spec_for(kind), prefix), p)
            for kind in PAYLOAD_KINDS
            for p in range(topic_spec_for(kind).partitions)
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        events: dict[str, list[telemetry_pb2.TelemetryEnvelope]] = {k: [] for k in PAYLOAD_KINDS}
        raw: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not until(events):
            for tp, records in consumer.poll(timeout_ms=500).items():
                kind = next(k for k in PAYLOAD_KINDS if tp.topic.endswith(topic_spec_for(k).name))
                for rec in records:
                    raw.append((rec.key, rec.value))
                    events[kind].extend(decode_bundle(rec.value).events)
        return events, raw
    finally:
        consumer.close()


def ids_of(events: dict[str, list[telemetry_pb2.TelemetryEnvelope]]) -> set[str]:
    return {e.event_id for evs in events.values() for e in evs}


def has_all(
    expected: set[str],
) -> Callable[[dict[str, list[telemetry_pb2.TelemetryEnvelope]]], bool]:
    return lambda events: expected <= ids_of(events)


def client_for(target: str, spool: Path, **kwargs: object) -> TelemetryClient:
    opts: dict[str, object] = dict(
        token=TOKEN, batch_size=50, linger_s=0.02, retry_base_s=0.05, retry_max_s=0.5
    )
    opts.update(kwargs)
    return TelemetryClient(target, INSTITUTION, spool_dir=spool, pseudonym_key=KEY, **opts)  # type: ignore[arg-type]


def test_round_trip_delivers_exactly_what_was_sent_and_never_the_raw_actor_id(
    gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    raw_actor = "zhang.san.13800138000"
    raw_dest = "partner-bank-acct-6222020000000000"
    t0 = time.time()
    expected: dict[str, dict[str, telemetry_pb2.TelemetryEnvelope]] = {k: {} for k in PAYLOAD_KINDS}

    def remember(kind: str, eid: str, payload: object) -> None:
        env = telemetry_pb2.TelemetryEnvelope(event_id=eid, institution_id=INSTITUTION)
        getattr(env, kind).CopyFrom(payload)
        expected[kind][eid] = env

    with client_for(gateway.target, tmp_path / "spool") as client:
        for i in range(120):
            eid = client.data_access(
                system_id="core-banking",
                actor_id=raw_actor,
                actor_role="employee",
                channel="console",
                operation="export",
                records=1000 + i,
                fields={"c2": 3},
                bytes_out=4096 * i,
                destination_kind="cross_border",
                destination_id=raw_dest,
                destination_country="SG",
                event_time=t0,
            )
            remember(
                "data_access",
                eid,
                telemetry_pb2.DataAccessEvent(
                    system_id="core-banking",
                    actor_pseudonym=pseudonymise(KEY, raw_actor),
                    actor_role=telemetry_pb2.ACTOR_ROLE_EMPLOYEE,
                    channel=telemetry_pb2.CHANNEL_CONSOLE,
                    operation=telemetry_pb2.OPERATION_EXPORT,
                    records=1000 + i,
                    fields=telemetry_pb2.FieldsByClass(c2=3),
                    bytes_out=4096 * i,
                    destination_kind=telemetry_pb2.DESTINATION_KIND_CROSS_BORDER,
                    destination_pseudonym=pseudonymise(KEY, raw_dest),
                    destination_country="SG",
                ),
            )
        posture = telemetry_pb2.ITPostureReport(
            system_id="core-banking",
            tier=telemetry_pb2.SYSTEM_TIER_CORE,
            availability=0.9995,
            components=[
                telemetry_pb2.Component(
                    layer=telemetry_pb2.LAYER_DATABASE,
                    vendor="OceanBase",
                    product="OceanBase",
                    independently_controllable=True,
                )
            ],
            interval_seconds=300,
        )
        remember("it_posture", client.send(posture, event_time=t0), posture)
        sandbox = telemetry_pb2.SandboxMetricsReport(
            test_id="SZ-2025-001", app_id="app-1", active_users=10, transaction_count=5
        )
        for _ in range(3):
            remember("sandbox", client.send(sandbox, event_time=t0), sandbox)
        hb = client.heartbeat("app-1", interval_seconds=30, event_time=t0)
        remember(
            "heartbeat",
            hb,
            telemetry_pb2.Heartbeat(source_id="app-1", interval_seconds=30, sdk_version="0.1.0"),
        )
        # One the gateway must refuse: a data-access event without its system.
        bad = client.send(
            telemetry_pb2.DataAccessEvent(
                channel=telemetry_pb2.CHANNEL_API,
                operation=telemetry_pb2.OPERATION_READ,
                destination_kind=telemetry_pb2.DESTINATION_KIND_INTERNAL,
            )
        )
        assert client.flush(timeout=30)
        stats = client.stats()

    good_ids = {eid for by_id in expected.values() for eid in by_id}
    assert stats.acknowledged == len(good_ids) == 125
    assert stats.rejected == {"REJECT_REASON_MISSING_FIELD": 1}
    assert stats.spooled == 0
    assert [r.event_id for r in client.rejections] == [bad]
    logged = [
        json.loads(x)
        for x in (tmp_path / "spool" / "rejections.jsonl").read_text().split("\n")
        if x
    ]
    assert [(r["event_id"], r["reason"]) for r in logged] == [(bad, "REJECT_REASON_MISSING_FIELD")]

    events, raw = read_kafka(kafka_bootstrap, topic_prefix, has_all(good_ids))
    for kind in PAYLOAD_KINDS:
        got = {e.event_id: e for e in events[kind]}
        assert set(got) == set(expected[kind]), kind
        for eid, env in got.items():
            want = expected[kind][eid]
            assert env.institution_id == INSTITUTION
            assert getattr(env, kind) == getattr(want, kind)
            assert abs(env.event_time.ToNanoseconds() - int(t0 * 1e9)) < 1000
    assert bad not in ids_of(events)
    assert all(key == INSTITUTION.encode() for key, _ in raw)
    for _, value in raw:
        assert raw_actor.encode() not in value and raw_dest.encode() not in value
    assert list((tmp_path / "spool").glob("seg-*")) == []


def test_an_oversized_event_is_refused_alone_and_the_rest_delivered(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # The issue's case: one event too large for Kafka (an unknown field, padded) among 100
    # others used to be answered UNAVAILABLE and resent forever, holding back the rest.
    gw = start_gateway(kafka_bootstrap, topic_prefix, tmp_path, GATEWAY_MAX_EVENT_BYTES="65536")
    raw_id = "li.si.13900139000"
    hb = telemetry_pb2.Heartbeat(source_id="app-1", interval_seconds=60).SerializeToString()
    try:
        with client_for(gw.target, tmp_path / "spool", max_event_bytes=2 * 1024 * 1024) as client:
            sent = [client.heartbeat(f"hb-{i}") for i in range(50)]
            big = client.send_encoded("heartbeat", hb + field(99, os.urandom(1100 * 1024)))
            # An unknown field carrying a raw identifier: dropped, never written.
            sent.append(client.send_encoded("heartbeat", hb + field(98, raw_id.encode())))
            sent += [client.heartbeat(f"hb-{i}") for i in range(50, 99)]
            assert client.flush(timeout=30), client.stats()
            stats = client.stats()
            rejections = list(client.rejections)
    finally:
        stop(gw.proc)
    assert stats.acknowledged == 100 and stats.rejected == {"REJECT_REASON_TOO_LARGE": 1}
    assert stats.errors == {}
    assert [(r.event_id, r.reason) for r in rejections] == [(big, "REJECT_REASON_TOO_LARGE")]
    events, raw = read_kafka(kafka_bootstrap, topic_prefix, has_all(set(sent)))
    assert sorted(e.event_id for e in events["heartbeat"]) == sorted(sent)
    assert all(raw_id.encode() not in value for _, value in raw)


def field(number: int, data: bytes) -> bytes:
    """One length-delimited protobuf field, serialised."""
    from suptech.sdk.wire import encode_varint

    return encode_varint(number << 3 | 2) + encode_varint(len(data)) + data


def test_wrong_token_halts_and_keeps_the_spool_for_a_fixed_client(
    gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    client = client_for(gateway.target, spool, token="tok-not-a-valid-token-at-all")
    eid = client.heartbeat()
    assert not client.flush(timeout=20)
    stats = client.stats()
    assert stats.halted and stats.last_error and stats.last_error.startswith("UNAUTHENTICATED")
    assert stats.spooled == 1
    client.close(timeout=0)

    with client_for(gateway.target, spool) as fixed:
        assert fixed.stats().recovered == 1
        assert fixed.flush(timeout=20)
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all({eid}))
    assert [e.event_id for e in events["heartbeat"]] == [eid]


def test_cli_sends_a_file_skips_malformed_lines_and_fails_on_them(
    gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        json.dumps({"eventId": f"cli-{i:06d}", "eventTime": now, "heartbeat": {"sourceId": "x"}})
        for i in range(30)
    ]
    lines.insert(7, '{"heartbeat": ')
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "suptech.sdk.cli",
            "send",
            str(path),
            "--target",
            gateway.target,
            "--institution",
            INSTITUTION,
            "--token-file",
            str(token_file),
            "--timeout",
            "30",
        ],
        env=PY_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert f"{path}:8: skipped" in out.stderr
    assert "malformed 1 sent 30" in out.stdout and "acknowledged 30 rejected 0" in out.stdout
    want = {f"cli-{i:06d}" for i in range(30)}
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all(want))
    assert {e.event_id for e in events["heartbeat"]} == want


def _send_in_background(
    client: TelemetryClient, n: int, prefix: str
) -> tuple[threading.Thread, list[str]]:
    sent: list[str] = []

    def run() -> None:
        for i in range(n):
            sent.append(client.heartbeat(f"{prefix}-{i}"))
            if i % 50 == 0:
                time.sleep(0.01)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, sent


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_gateway_killed_mid_stream_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    gw = start_gateway(kafka_bootstrap, topic_prefix, tmp_path)
    client = client_for(gw.target, tmp_path / "spool")
    try:
        thread, sent = _send_in_background(client, 3000, "gwkill")
        _wait_for(lambda: client.stats().acknowledged >= 300, "first acks")
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(10)
        time.sleep(0.3)
        gw = start_gateway(kafka_bootstrap, topic_prefix, tmp_path, port=gw.port)
        thread.join()
        assert client.flush(timeout=60), client.stats()
        stats = client.stats()
    finally:
        client.close(timeout=0)
        stop(gw.proc)
    assert stats.retries >= 1 and stats.acknowledged == 3000 and stats.rejected == {}
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all(set(sent)))
    got = [e.event_id for e in events["heartbeat"]]
    assert set(got) == set(sent)  # duplicates, if any, carry an id that was sent


def test_sdk_process_killed_then_a_new_client_on_its_spool_delivers_the_rest(
    gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    script = f"""
import sys
from suptech.sdk import TelemetryClient
from suptech.v1 import telemetry_pb2
c = TelemetryClient({gateway.target!r}, {INSTITUTION!r}, token={TOKEN!r}, spool_dir={str(spool)!r},
                    pseudonym_key=b"k", batch_size=100, linger_s=0.05, max_in_flight=1)
for i in range(1_000_000):
    c.send(telemetry_pb2.Heartbeat(source_id="crash"), event_id=f"crash-{{i:08d}}")
    if i % 500 == 499:
        print(i, flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=PY_ENV, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    last = -1
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= 4999:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert last >= 4999
    with client_for(gateway.target, spool) as client:
        recovered = client.stats().recovered
        assert client.flush(timeout=60)
    assert recovered > 0  # the killed process had not been acknowledged for everything
    want = {f"crash-{i:08d}" for i in range(last + 1)}
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all(want))
    got = {e.event_id for e in events["heartbeat"]}
    assert want <= got
    assert all(re.fullmatch(r"crash-\d{8}", e) for e in got)


# Slow: the private broker starts twice (a JVM cold start, 10-40 s on a loaded 2-core machine).
@pytest.mark.slow
def test_broker_stopped_and_restarted_mid_stream_loses_nothing(
    private_kafka: Callable[[int], str], tmp_path: Path
) -> None:
    port = 19192
    bootstrap = private_kafka(port)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(bootstrap, prefix)
    gw = start_gateway(bootstrap, prefix, tmp_path)
    client = client_for(gw.target, tmp_path / "spool")
    try:
        thread, sent = _send_in_background(client, 1000, "brk")
        _wait_for(lambda: client.stats().acknowledged >= 200, "first acks")
        kafka_down(port)
        thread.join()
        errors_before = sum(client.stats().errors.values())
        # Half the events are sent once the broker is surely gone (the first half may all have
        # been acknowledged while it shut down): the gateway answers UNAVAILABLE for them.
        sent += [client.heartbeat(f"brk-down-{i}") for i in range(1000)]
        _wait_for(lambda: sum(client.stats().errors.values()) > errors_before, "an error")
        assert client.stats().spooled > 0
        kafka_up(port)
        assert client.flush(timeout=90), client.stats()
        stats = client.stats()
    finally:
        client.close(timeout=0)
        stop(gw.proc)
    assert "UNAVAILABLE" in stats.errors and stats.acknowledged == 2000
    events, _ = read_kafka(bootstrap, prefix, has_all(set(sent)))
    assert {e.event_id for e in events["heartbeat"]} == set(sent)


def test_rate_limited_client_waits_as_told_and_delivers_everything(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    gw = start_gateway(
        kafka_bootstrap,
        topic_prefix,
        tmp_path,
        GATEWAY_RATE_LIMIT_EPS="400",
        GATEWAY_RATE_LIMIT_BURST="100",
        GATEWAY_MAX_BATCH_EVENTS="100",
    )
    try:
        with client_for(gw.target, tmp_path / "spool") as client:
            sent = [client.heartbeat(f"rl-{i}") for i in range(600)]
            assert client.flush(timeout=60), client.stats()
            stats = client.stats()
    finally:
        stop(gw.proc)
    assert stats.errors.get("RESOURCE_EXHAUSTED", 0) >= 1
    assert stats.acknowledged == 600 and stats.rejected == {}
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all(set(sent)))
    assert {e.event_id for e in events["heartbeat"]} == set(sent)


async def test_async_client_delivers(
    gateway: Gateway, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with AsyncTelemetryClient(
        gateway.target, INSTITUTION, token=TOKEN, spool_dir=tmp_path / "s", pseudonym_key=KEY
    ) as client:
        eid = client.sandbox_metrics(test_id="SZ-1", app_id="app-9", complaints=3)
        assert await client.flush(timeout=20)
        assert client.stats().acknowledged == 1
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all({eid}))
    assert [(e.event_id, e.sandbox.complaints) for e in events["sandbox"]] == [(eid, 3)]


def _tls_material(workdir: Path) -> dict[str, bytes]:
    """A CA, a gateway certificate for 127.0.0.1 and a client certificate naming INSTITUTION."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(
        cn: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, **ext: object
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer_name, issuer_key = issuer or (name, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if "san" in ext:
            builder = builder.add_extension(ext["san"], critical=False)  # type: ignore[arg-type]
        return builder.sign(issuer_key, hashes.SHA256()), key

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca, ca_key = issue("sdk test CA", None)
    server, server_key = issue(
        "gateway",
        (ca.subject, ca_key),
        san=x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
    )
    client, client_key = issue(INSTITUTION, (ca.subject, ca_key))
    out = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "server": server.public_bytes(serialization.Encoding.PEM),
        "server_key": pem_key(server_key),
        "client": client.public_bytes(serialization.Encoding.PEM),
        "client_key": pem_key(client_key),
    }
    for name, data in out.items():
        (workdir / f"{name}.pem").write_bytes(data)
    return out


def test_mutual_tls_client_certificate_authenticates_the_institution(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    pki = _tls_material(tmp_path)
    gw = start_gateway(
        kafka_bootstrap,
        topic_prefix,
        tmp_path,
        # A certificate is an institution only when registered (issue 8 item 7).
        registry={f"cert:{INSTITUTION}": INSTITUTION},
        GATEWAY_TLS_CERT=str(tmp_path / "server.pem"),
        GATEWAY_TLS_KEY=str(tmp_path / "server_key.pem"),
        GATEWAY_TLS_CLIENT_CA=str(tmp_path / "ca.pem"),
        # Any free port: the default 50052 may be another gateway's on a shared machine.
        GATEWAY_HEALTH_PORT="0",
    )
    try:
        # Without a client certificate the handshake is refused: nothing is acknowledged.
        no_cert = client_for(gw.target, tmp_path / "s1", token=None, root_certificates=pki["ca"])
        no_cert.heartbeat()
        assert not no_cert.flush(timeout=2)
        assert no_cert.stats().acknowledged == 0 and no_cert.stats().spooled == 1
        no_cert.close(timeout=0)
        with client_for(
            gw.target,
            tmp_path / "s2",
            token=None,
            root_certificates=pki["ca"],
            client_certificate=pki["client"],
            client_key=pki["client_key"],
        ) as client:
            eid = client.heartbeat()
            assert client.flush(timeout=20), client.stats()
    finally:
        stop(gw.proc)
    events, _ = read_kafka(kafka_bootstrap, topic_prefix, has_all({eid}))
    assert [(e.event_id, e.institution_id) for e in events["heartbeat"]] == [(eid, INSTITUTION)]
