"""Kafka over TLS and SASL/SCRAM: the config helper's rules, and every kind of client against a
real secure broker started by ``scripts/kafka.sh up-secure``."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from pki import issue_cert, new_key, pem
from suptech.alerts.sandbox_register import SandboxRegister
from suptech.alerts.scores import EntityKey, ScoreHistory, ScoresFollower
from suptech.alerts.store import ALL
from suptech.common.access import acl_bindings, apply_access, parse_grants
from suptech.common.bundles import decode_bundle, topic_spec_for
from suptech.common.config import ConfigError
from suptech.common.kafka import (
    KafkaAuthError,
    faust_credentials,
    kafka_python_settings,
    load_kafka_security,
    load_replication,
    open_client,
)
from suptech.common.topics import (
    DATA_ACCESS,
    DEAD_LETTER,
    DETECTOR_CHECKPOINTS,
    FEEDBACK,
    FINDINGS,
    REGISTRY_SANDBOX,
    SCORES,
    TOPICS,
    ensure_topics,
    topic_name,
)
from suptech.gateway.server import build_gateway
from suptech.ops.kafka_clients import open_admin, open_producer, open_reader
from suptech.ops.topics import inspect_topics
from suptech.v1 import findings_pb2, sandbox_pb2

from perf.kafka_security import free_pair, script
from tests.test_gateway import Running, base_config, batch, now_event, send

# --- the config helper (no broker) ----------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for mounted CA, certificate, key and password files (contents unused here)."""
    out = {}
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
        out[name] = str(tmp_path / name)
    (tmp_path / "password").write_text("s3cret-pass\n")
    out["password"] = str(tmp_path / "password")
    return out


def test_default_is_plaintext_with_nothing_else() -> None:
    assert kafka_python_settings({}) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials({}) is None


def test_sasl_ssl_gives_every_kafka_python_keyword(files: dict[str, str]) -> None:
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "SUPTECH_KAFKA_SSL_CAFILE": files["ca.pem"],
        "SUPTECH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "SUPTECH_KAFKA_SASL_USERNAME": "gateway",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    assert kafka_python_settings(env) == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": files["ca.pem"],
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "gateway",
        # the file's trailing newline is not part of the password
        "sasl_plain_password": "s3cret-pass",
    }


def test_sasl_mechanism_defaults_to_scram_sha_512(files: dict[str, str]) -> None:
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SUPTECH_KAFKA_SASL_USERNAME": "ops",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    assert load_kafka_security(env).sasl_mechanism == "SCRAM-SHA-512"


def test_password_file_is_read_again_for_each_client(files: dict[str, str]) -> None:
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SUPTECH_KAFKA_SASL_USERNAME": "ops",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    security = load_kafka_security(env)
    Path(files["password"]).write_text("rotated-pass\n")
    assert security.kafka_python()["sasl_plain_password"] == "rotated-pass"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SUPTECH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SUPTECH_KAFKA_SECURITY_PROTOCOL"),
        # TLS files given but the protocol would send in clear: refused, not ignored.
        ({"SUPTECH_KAFKA_SSL_CAFILE": "ca.pem"}, "SUPTECH_KAFKA_SSL_CAFILE"),
        ({"SUPTECH_KAFKA_SASL_USERNAME": "u"}, "SUPTECH_KAFKA_SASL_USERNAME"),
        (
            {"SUPTECH_KAFKA_SECURITY_PROTOCOL": "SSL", "SUPTECH_KAFKA_SSL_CERTFILE": "cert.pem"},
            "SUPTECH_KAFKA_SSL_KEYFILE",
        ),
        (
            {"SUPTECH_KAFKA_SECURITY_PROTOCOL": "SSL", "SUPTECH_KAFKA_SSL_CAFILE": "/nonexistent"},
            "SUPTECH_KAFKA_SSL_CAFILE",
        ),
        (
            {"SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SUPTECH_KAFKA_SASL_USERNAME": "u"},
            "SUPTECH_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "password",
            },
            "SUPTECH_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SUPTECH_KAFKA_SASL_MECHANISM": "GSSAPI",
                "SUPTECH_KAFKA_SASL_USERNAME": "u",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "password",
            },
            "SUPTECH_KAFKA_SASL_MECHANISM",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SUPTECH_KAFKA_SASL_MECHANISM": "PLAIN",
                "SUPTECH_KAFKA_SASL_USERNAME": "u",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "password",
            },
            "PLAIN",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SUPTECH_KAFKA_SASL_USERNAME": "u",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password",
            },
            "SUPTECH_KAFKA_SASL_PASSWORD_FILE",
        ),
    ],
)
def test_invalid_combinations_fail_naming_the_variable(
    env: dict[str, str], names: str, files: dict[str, str]
) -> None:
    resolved = {
        k: files.get(v, v) if k.endswith(("FILE", "_CAFILE")) else v for k, v in env.items()
    }
    with pytest.raises(ConfigError, match=names):
        load_kafka_security(resolved)


def test_empty_password_file_is_refused(files: dict[str, str]) -> None:
    Path(files["password"]).write_text("\n")
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SUPTECH_KAFKA_SASL_USERNAME": "u",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    with pytest.raises(ConfigError, match="empty"):
        load_kafka_security(env)


@pytest.mark.parametrize(
    ("factor", "isr", "ok"),
    [("1", "1", True), ("3", "2", True), ("3", "4", False), ("0", "1", False)],
)
def test_replication_settings(factor: str, isr: str, ok: bool) -> None:
    env = {
        "SUPTECH_KAFKA_REPLICATION_FACTOR": factor,
        "SUPTECH_KAFKA_MIN_INSYNC_REPLICAS": isr,
    }
    if ok:
        r = load_replication(env)
        assert (r.factor, r.min_insync) == (int(factor), int(isr))
    else:
        with pytest.raises(ConfigError, match="SUPTECH_KAFKA_"):
            load_replication(env)


def test_replication_defaults_suit_one_broker() -> None:
    r = load_replication({})
    assert (r.factor, r.min_insync) == (1, 1)


@pytest.mark.parametrize(
    ("grants", "why"),
    [
        ('[{"user": "detector", "topics": ["CHECKPOINTS"], "operations": ["Write"]}]', "unknown"),
        ('[{"user": "admin", "topics": ["FINDINGS"], "operations": ["Write"]}]', "super user"),
        ('[{"user": "alerts", "topics": ["FINDINGS"], "operations": ["Delete"]}]', "operations"),
        ('[{"user": "alerts", "operations": ["Read"]}]', "names no topics"),
        ('{"user": "alerts"}', "list"),
    ],
)
def test_access_grants_are_checked_before_anything_connects(grants: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_grants(grants)


def test_access_grants_name_topics_by_their_declaration_with_the_prefix() -> None:
    (grant,) = parse_grants(
        '[{"user": "detector", "topics": ["DETECTOR_CHECKPOINTS"], "operations": ["Write"]}]'
    )
    (acl,) = acl_bindings([grant], "staging.")
    assert (acl.principal, acl.resource_pattern.resource_name, acl.operation.name) == (
        "User:detector",
        "staging.detector.checkpoints.v1",
        "WRITE",
    )


def test_gateway_refuses_to_start_with_incomplete_kafka_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fail fast at start, naming the variable, rather than run on and fail every batch."""
    monkeypatch.setenv("SUPTECH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("SUPTECH_KAFKA_SASL_USERNAME", raising=False)
    with pytest.raises(ConfigError, match="SUPTECH_KAFKA_SASL_USERNAME"):
        build_gateway(base_config("127.0.0.1:1", "never."))


# --- against a real TLS + SASL/SCRAM broker (scripts/kafka.sh up-secure) -------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[dict[str, str]]:
    """A broker of this module's own whose only client listener is SASL_SSL (wiped after):
    the SUPTECH_KAFKA_* settings it prints, plus KAFKA_ADDR."""
    port = free_pair()
    env = {
        "KAFKA_SECURE_PORT": str(port),
        "KAFKA_SECURE_CONTROLLER_PORT": str(port + 1),
        "KAFKA_SECURE_HEAP": "-Xmx384m -Xms128m",
    }
    try:
        out = script("up-secure", env=env)
        settings = dict(
            line.split("=", 1) for line in out.splitlines() if "=" in line and line[0] != "#"
        )
        yield settings
    finally:
        script("wipe-secure", env=env)


@pytest.fixture
def secure_env(secure_kafka: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """This process configured for the secure broker as a deployment would be; its address."""
    for key, value in secure_kafka.items():
        if key.startswith("SUPTECH_KAFKA_"):
            monkeypatch.setenv(key, value)
    return secure_kafka["KAFKA_ADDR"]


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    reader = open_reader(bootstrap, timeout_s=10)
    try:
        parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        reader.assign(parts)
        reader.seek_to_beginning()
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < expected and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=200).values():
                values += [r.value for r in records]
        return values
    finally:
        reader.close()


@pytest.mark.integration
def test_clients_produce_and_consume_over_sasl_ssl(secure_env: str) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    ensure_topics(secure_env, prefix, (FINDINGS,), timeout_s=20)
    topic = topic_name(FINDINGS, prefix)
    producer = open_producer(secure_env, timeout_s=10)
    try:
        sent = [f"finding-{i}".encode() for i in range(5)]
        for value in sent:
            producer.send(topic, value).get(timeout=10)
    finally:
        producer.close()
    assert sorted(_read_all(secure_env, topic, len(sent))) == sorted(sent)


@pytest.mark.integration
def test_a_plaintext_client_gets_nothing_from_the_secure_broker(
    secure_kafka: dict[str, str],
) -> None:
    """The secure listener is the only way in: the default (PLAINTEXT) settings do not connect."""
    with pytest.raises(KafkaError):
        KafkaAdminClient(
            bootstrap_servers=secure_kafka["KAFKA_ADDR"],
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
        )


@pytest.mark.integration
def test_wrong_password_is_refused_with_a_clear_error(
    secure_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    monkeypatch.setenv("SUPTECH_KAFKA_SASL_PASSWORD_FILE", str(wrong))
    # Bounded: the client gives up after its bootstrap timeout, it does not hang or retry forever.
    with pytest.raises(
        KafkaAuthError, match=r"as suptech \(SCRAM-SHA-512\).*(credentials|password)"
    ):
        open_client(
            KafkaAdminClient,
            bootstrap_servers=secure_env,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )


@pytest.mark.integration
def test_untrusted_broker_certificate_is_refused_with_a_clear_error(
    secure_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pem(issue_cert("another CA", new_key())))
    monkeypatch.setenv("SUPTECH_KAFKA_SSL_CAFILE", str(other_ca))
    with pytest.raises(KafkaAuthError, match="CERTIFICATE_VERIFY_FAILED"):
        open_client(
            KafkaAdminClient,
            bootstrap_servers=secure_env,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )


@pytest.mark.integration
async def test_gateway_over_sasl_ssl_acknowledges_a_batch_that_is_in_kafka(
    secure_env: str,
) -> None:
    prefix = f"g{uuid.uuid4().hex[:8]}."
    ensure_topics(secure_env, prefix, timeout_s=20)
    events = [now_event("data_access", i) for i in range(3)]
    async with Running(base_config(secure_env, prefix)) as port:
        acks = await send(port, [batch(events, "secure-1")])
    assert [(a.batch_id, a.accepted, len(a.rejections)) for a in acks] == [("secure-1", 3, 0)]
    topic = topic_name(topic_spec_for("data_access"), prefix)
    stored = [
        ev.SerializeToString()
        for value in _read_all(secure_env, topic, 1)
        for ev in decode_bundle(value).events
    ]
    assert sorted(stored) == sorted(ev.SerializeToString() for ev in events)


@pytest.mark.integration
def test_topics_are_created_with_the_configured_min_insync_replicas(
    secure_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPTECH_KAFKA_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("SUPTECH_KAFKA_MIN_INSYNC_REPLICAS", "1")
    prefix = f"m{uuid.uuid4().hex[:8]}."
    created = ensure_topics(secure_env, prefix, timeout_s=20)
    assert len(created) == len(TOPICS)
    admin = open_admin(secure_env, timeout_s=10)
    try:
        configs = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, configs=["min.insync.replicas"])
                for name in created
            ],
            config_filter="all",
        )["topic"]
    finally:
        admin.close()
    # Set on each topic, not inherited from whatever the broker's default happens to be.
    assert {
        name: (c["min.insync.replicas"]["value"], c["min.insync.replicas"]["config_source"])
        for name, c in configs.items()
    } == {name: ("1", "DYNAMIC_TOPIC_CONFIG") for name in created}


@pytest.mark.integration
def test_ops_reports_topics_below_the_declared_durability(
    secure_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic made before the move to three brokers keeps one replica (ensure_topics never
    alters an existing topic): ``suptech-ops topics`` must say so."""
    prefix = f"d{uuid.uuid4().hex[:8]}."
    ensure_topics(secure_env, prefix, (FINDINGS,), timeout_s=20)
    monkeypatch.setenv("SUPTECH_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("SUPTECH_KAFKA_MIN_INSYNC_REPLICAS", "2")
    admin = open_admin(secure_env, timeout_s=10)
    try:
        (report,) = inspect_topics(admin, prefix, (FINDINGS,))
    finally:
        admin.close()
    assert not report.ok
    assert report.drift == {"min.insync.replicas": ("2", "1"), "replication.factor": ("3", "1")}


@pytest.mark.integration
async def test_faust_credentials_carry_aiokafka_over_sasl_ssl(secure_env: str) -> None:
    """What the detector's faust App takes (``broker_credentials=faust_credentials()``), turned
    into aiokafka settings by faust's own driver, writes and reads on the secure broker."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as AioPartition
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    credentials = faust_credentials()
    assert (credentials.protocol.value, credentials.mechanism.value) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    auth = credentials_to_aiokafka_auth(credentials)
    prefix = f"f{uuid.uuid4().hex[:8]}."
    ensure_topics(secure_env, prefix, (FINDINGS,), timeout_s=20)
    topic = topic_name(FINDINGS, prefix)
    producer = AIOKafkaProducer(bootstrap_servers=secure_env, acks="all", **auth)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"from aiokafka", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=secure_env, enable_auto_commit=False, **auth)
    await consumer.start()
    try:
        tp = AioPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    assert record.value == b"from aiokafka"


@pytest.mark.integration
def test_the_charts_acls_let_only_the_detector_write_its_checkpoints(
    secure_env: str, secure_kafka: dict[str, str], tmp_path: Path
) -> None:
    """The grants of helm/suptech/values.yaml applied by the chart's kafka-access code on a broker
    running StandardAuthorizer: the detector writes its checkpoints, the gateway and the alert
    service are refused (and the gateway still writes telemetry)."""
    values = yaml.safe_load((REPO / "helm" / "suptech" / "values.yaml").read_text())
    grants = parse_grants(json.dumps(values["kafka"]["acls"]))
    prefix = f"a{uuid.uuid4().hex[:8]}."
    ensure_topics(secure_env, prefix, (DETECTOR_CHECKPOINTS, DATA_ACCESS), timeout_s=20)
    users = tmp_path / "users"
    users.mkdir()
    for user in {g.user for g in grants}:
        (users / f"{user}.password").write_text(secrets.token_hex(16) + "\n")
    done = apply_access(secure_env, grants, prefix, users)
    assert done["users"] == 3

    def producer_as(user: str) -> Any:
        env = {
            **{k: v for k, v in secure_kafka.items() if k.startswith("SUPTECH_KAFKA_")},
            "SUPTECH_KAFKA_SASL_USERNAME": user,
            "SUPTECH_KAFKA_SASL_PASSWORD_FILE": str(users / f"{user}.password"),
        }
        return open_client(
            KafkaProducer,
            security=load_kafka_security(env),
            bootstrap_servers=secure_env,
            acks="all",
            max_block_ms=5000,
            request_timeout_ms=5000,
            delivery_timeout_ms=10_000,
            bootstrap_timeout_ms=10_000,
        )

    checkpoints = topic_name(DETECTOR_CHECKPOINTS, prefix)
    detector = producer_as("detector")
    try:
        detector.send(checkpoints, key=b"suptech-detector/manifest", value=b"v").get(timeout=10)
    finally:
        detector.close()
    for user in ("gateway", "alerts"):
        producer = producer_as(user)
        try:
            with pytest.raises(KafkaError, match="TopicAuthorizationFailed"):
                producer.send(checkpoints, key=b"forged/manifest", value=b"x").get(timeout=10)
            if user == "gateway":
                producer.send(topic_name(DATA_ACCESS, prefix), key=b"k", value=b"v").get(10)
        finally:
            producer.close(timeout=5)


@pytest.mark.integration
def test_the_charts_acls_let_the_alert_service_read_the_sandbox_register(
    secure_env: str, secure_kafka: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the chart's 'alerts' user: the start's topic check creates nothing (it may describe
    each topic), the register (ListSandboxTests) is read from the beginning and the recent
    scores (ListEntityScores) are read back."""
    values = yaml.safe_load((REPO / "helm" / "suptech" / "values.yaml").read_text())
    grants = parse_grants(json.dumps(values["kafka"]["acls"]))
    prefix = f"r{uuid.uuid4().hex[:8]}."
    specs = (FINDINGS, FEEDBACK, DEAD_LETTER, REGISTRY_SANDBOX, SCORES)
    ensure_topics(secure_env, prefix, specs, timeout_s=20)
    admin = open_client(KafkaProducer, bootstrap_servers=secure_env, acks="all")
    try:
        test = sandbox_pb2.SandboxTest(test_id="t-1", institution_id="b").SerializeToString()
        admin.send(topic_name(REGISTRY_SANDBOX, prefix), key=b"t-1", value=test).get(10)
        scored = findings_pb2.AnomalyScoreBatch(institution_id="b")
        scored.scores.add(
            entity_kind="actor", entity_id="x", event_id="e-1"
        ).event_time.GetCurrentTime()
        admin.send(topic_name(SCORES, prefix), key=b"b", value=scored.SerializeToString()).get(10)
    finally:
        admin.close(timeout=5)
    users = tmp_path / "users"
    users.mkdir()
    for user in {g.user for g in grants}:
        (users / f"{user}.password").write_text(secrets.token_hex(16) + "\n")
    apply_access(secure_env, grants, prefix, users)
    monkeypatch.setenv("SUPTECH_KAFKA_SASL_USERNAME", "alerts")
    monkeypatch.setenv("SUPTECH_KAFKA_SASL_PASSWORD_FILE", str(users / "alerts.password"))
    assert ensure_topics(secure_env, prefix, specs, timeout_s=20) == []
    register = SandboxRegister(bootstrap=secure_env, topic_prefix=prefix, metadata_timeout_s=20)
    try:
        for _ in range(40):
            register.poll_once(timeout_ms=250)
            if register.complete:
                break
        assert register.complete
        assert [(t.test_id, t.institution_id) for t in register.tests.visible(ALL)] == [
            ("t-1", "b")
        ]
    finally:
        register.close()
    history = ScoreHistory()
    follower = ScoresFollower(history, bootstrap=secure_env, topic_prefix=prefix)
    try:
        for _ in range(40):
            if follower.poll_once(timeout_ms=250):
                break
        held, _ = history.query(EntityKey("b", "actor", "x"), None, None, 10)
        assert [s.event_id for s in held] == ["e-1"]
    finally:
        follower.close()


# --- three brokers (scripts/kafka.sh up-cluster): slow, a JVM per broker ---------------------


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[str]:
    port = free_pair()
    # Brokers on port..port+2, controllers on port+100..port+102.
    env = {"KAFKA_CLUSTER_PORT": str(port), "KAFKA_CLUSTER_HEAP": "-Xmx320m -Xms128m"}
    try:
        out = script("up-cluster", env=env)
        yield out.strip().splitlines()[-1].split("=", 1)[1]
    finally:
        script("wipe-cluster", env=env)


@pytest.mark.integration
@pytest.mark.slow
def test_three_brokers_replicate_and_refuse_writes_below_min_insync(
    kafka_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replication 3 / min ISR 2 with acks=all: one broker lost, writes go on; two lost, a
    write is refused (NotEnoughReplicas) rather than acknowledged on a single copy."""
    monkeypatch.setenv("SUPTECH_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("SUPTECH_KAFKA_MIN_INSYNC_REPLICAS", "2")
    prefix = f"c{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_cluster, prefix, (FINDINGS,), timeout_s=30)
    topic = topic_name(FINDINGS, prefix)
    admin = open_admin(kafka_cluster, timeout_s=10)
    try:
        # The broker answering may learn the new partitions a moment after the topic is listed.
        deadline = time.monotonic() + 15
        while True:
            (described,) = admin.describe_topics([topic])
            if described["partitions"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {len(p["replica_nodes"]) for p in described["partitions"]} == {3}
    finally:
        admin.close()
    env = {"KAFKA_CLUSTER_PORT": kafka_cluster.split(",")[0].rsplit(":", 1)[1]}
    producer = open_client(
        KafkaProducer,
        bootstrap_servers=kafka_cluster,
        acks="all",
        request_timeout_ms=5000,
        delivery_timeout_ms=15_000,
    )
    try:
        script("stop-node", "3", env=env)
        for p in range(3):
            producer.send(topic, b"one broker down", partition=p).get(timeout=20)
        script("stop-node", "2", env=env)
        with pytest.raises(KafkaError, match="NotEnoughReplicas|Timeout"):
            for p in range(3):
                producer.send(topic, b"two brokers down", partition=p).get(timeout=30)
    finally:
        producer.close(timeout=5)
