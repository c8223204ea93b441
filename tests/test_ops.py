"""``suptech ops`` against the real broker and real gRPC health servers: what an SRE sees."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
from suptech.common.grpc_server import GrpcServer
from suptech.common.topics import (
    DEAD_LETTER,
    FEEDBACK,
    FINDINGS,
    HEARTBEAT,
    REGISTRY_SANDBOX,
    TOPICS,
    delete_topics_with_prefix,
    ensure_topics,
    topic_name,
)
from suptech.ops.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, main
from suptech.ops.deadletters import parse_since

pytestmark = pytest.mark.integration


def run(argv: list[str]) -> tuple[int, str]:
    lines: list[str] = []
    rc = main(argv, out=lines.append)
    return rc, "\n".join(lines)


def run_json(argv: list[str]) -> tuple[int, dict[str, object]]:
    rc, text = run([*argv, "--json"])
    return rc, json.loads(text)


@pytest.fixture
def kafka_env(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, topic_prefix: str) -> str:
    monkeypatch.setenv("KAFKA_ADDR", kafka_bootstrap)
    monkeypatch.setenv("SUPTECH_TOPIC_PREFIX", topic_prefix)
    return topic_prefix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- health ---


async def test_health_follows_readiness_and_liveness() -> None:
    server = GrpcServer(host="127.0.0.1", port=0, registrations=(), service_names=("x.v1.Foo",))
    await server.start()
    target = f"alerts=127.0.0.1:{server.port}"
    try:
        rc, doc = await asyncio.to_thread(run_json, ["health", "--target", target])
        assert rc == EXIT_OK
        (t,) = doc["targets"]  # type: ignore[misc]
        assert (t["name"], t["ready"]["status"], t["live"]["status"]) == (
            "alerts",
            "SERVING",
            "SERVING",
        )
        assert t["ready"]["latency_ms"] >= 0

        # Kafka down behind the service: not ready, still alive, and the command says so.
        await server.set_serving(False)
        rc, text = await asyncio.to_thread(run, ["health", "--target", target])
        assert rc == EXIT_UNHEALTHY
        row = next(line for line in text.splitlines() if line.startswith("alerts"))
        assert row.split()[2:4] == ["NOT_SERVING", "SERVING"]
        assert "0/1 healthy" in text

        # Shutting down: liveness drops too.
        await server.set_serving(True)
        await server.begin_shutdown()
        rc, doc = await asyncio.to_thread(run_json, ["health", "--target", target])
        assert rc == EXIT_UNHEALTHY
        assert doc["targets"][0]["live"]["status"] == "NOT_SERVING"  # type: ignore[index]
    finally:
        await server.stop(0)


async def test_health_one_target_down_among_several() -> None:
    server = GrpcServer(host="127.0.0.1", port=0, registrations=(), service_names=())
    await server.start()
    try:
        argv = [
            "health",
            "--target",
            f"gateway=127.0.0.1:{server.port}",
            "--target",
            f"detector=127.0.0.1:{free_port()}",
            "--timeout",
            "2",
        ]
        rc, doc = await asyncio.to_thread(run_json, argv)
    finally:
        await server.stop(0)
    assert rc == EXIT_UNHEALTHY
    by_name = {t["name"]: t for t in doc["targets"]}  # type: ignore[attr-defined]
    assert by_name["gateway"]["healthy"] is True
    assert by_name["detector"]["ready"]["status"] == "UNREACHABLE"
    assert "UNAVAILABLE" in by_name["detector"]["ready"]["error"]


def test_health_bad_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["health", "--target", "gateway=nowhere"])[0] == EXIT_USAGE
    assert "NAME=host:port" in capsys.readouterr().err


# --- lag ---


def test_lag_of_a_group_that_consumed_part_of_a_topic(kafka_env: str, kafka_bootstrap: str) -> None:
    topic = topic_name(FINDINGS, kafka_env)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(10):
        producer.send(topic, value=f"f{i}".encode(), partition=0)
    producer.flush()
    producer.close()

    group = f"ops-test-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    # No auto-commit: closing would commit the position (all 10 fetched), not the 4 processed.
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen: list[int] = []
    while len(seen) < 4:
        for rec in consumer.poll(timeout_ms=1000).get(tp, []):
            seen.append(rec.offset)
    consumer.commit({tp: OffsetAndMetadata(4, "", -1)})
    consumer.close()

    rc, doc = run_json(["lag", "--group", group])
    assert rc == EXIT_OK
    (g,) = doc["groups"]  # type: ignore[misc]
    assert g["total_lag"] == 6
    assert g["topics"] == {topic: 6}
    p0 = next(p for p in g["partitions"] if p["partition"] == 0)
    assert (p0["committed"], p0["end"], p0["lag"]) == (4, 10, 6)

    assert run(["lag", "--group", group, "--max-lag", "6"])[0] == EXIT_OK
    rc, text = run(["lag", "--group", group, "--max-lag", "5"])
    assert rc == EXIT_UNHEALTHY
    assert f"group {group}" in text and "lag 6" in text


def test_lag_of_a_group_that_never_committed_is_unknown(kafka_env: str) -> None:
    group = f"ops-never-{uuid.uuid4().hex[:8]}"
    rc, doc = run_json(["lag", "--group", group])
    assert rc == EXIT_OK
    assert doc["groups"][0]["total_lag"] is None  # type: ignore[index]
    # An alert on lag must fire when the consumer has never run: its lag cannot be vouched for.
    assert run(["lag", "--group", group, "--max-lag", "1000"])[0] == EXIT_UNHEALTHY


def test_lag_defaults_to_suptech_groups(kafka_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_APP_ID", "det-x")
    monkeypatch.setenv("ALERTS_CONSUMER_GROUP", "alerts-x")
    rc, doc = run_json(["lag"])
    assert [g["group"] for g in doc["groups"]] == ["det-x", "alerts-x"]  # type: ignore[attr-defined]


def test_unreachable_broker_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_ADDR", f"127.0.0.1:{free_port()}")
    assert run(["lag", "--timeout", "2"])[0] == EXIT_CHECK_FAILED
    assert "cannot check" in capsys.readouterr().err


# --- topics ---


def test_topics_as_declared_with_message_counts(kafka_env: str, kafka_bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for _ in range(3):
        producer.send(topic_name(HEARTBEAT, kafka_env), b"hb")
    producer.flush()
    producer.close()
    rc, doc = run_json(["topics"])
    assert rc == EXIT_OK
    by_name = {t["name"]: t for t in doc["topics"]}  # type: ignore[attr-defined]
    assert set(by_name) == {topic_name(s, kafka_env) for s in TOPICS}
    assert by_name[topic_name(HEARTBEAT, kafka_env)]["messages"] == 3
    assert by_name[topic_name(REGISTRY_SANDBOX, kafka_env)]["cleanup_policy"] == "compact"
    assert all(t["ok"] and not t["drift"] for t in by_name.values())


@pytest.fixture
def bare_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A topic namespace with nothing created in it; whatever the test creates there is deleted."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    delete_topics_with_prefix(kafka_bootstrap, prefix)


def test_topics_flags_drift_and_missing(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, bare_prefix: str
) -> None:
    prefix = bare_prefix
    monkeypatch.setenv("KAFKA_ADDR", kafka_bootstrap)
    monkeypatch.setenv("SUPTECH_TOPIC_PREFIX", prefix)
    wrong = (FINDINGS, REGISTRY_SANDBOX)
    ensure_topics(kafka_bootstrap, prefix, tuple(s for s in TOPICS if s not in (*wrong, FEEDBACK)))
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(name=topic_name(FINDINGS, prefix), num_partitions=1, replication_factor=1),
                NewTopic(
                    name=topic_name(REGISTRY_SANDBOX, prefix),
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "delete"},
                ),
            ]
        )
        admin.wait_for_topics([topic_name(s, prefix) for s in wrong])
    finally:
        admin.close()

    rc, doc = run_json(["topics"])
    assert rc == EXIT_UNHEALTHY
    by_name = {t["name"]: t for t in doc["topics"]}  # type: ignore[attr-defined]
    findings = by_name[topic_name(FINDINGS, prefix)]
    assert findings["drift"]["partitions"] == {"declared": "3", "actual": "1"}
    registry = by_name[topic_name(REGISTRY_SANDBOX, prefix)]
    assert registry["drift"]["cleanup.policy"] == {"declared": "compact", "actual": "delete"}
    assert by_name[topic_name(FEEDBACK, prefix)]["exists"] is False
    assert by_name[topic_name(HEARTBEAT, prefix)]["ok"] is True

    rc, text = run(["topics"])
    assert "MISSING" in text and "drift partitions: declared 3, actual 1" in text

    # --create adds what is missing; it cannot repair drift, so the command still fails.
    rc, doc = run_json(["topics", "--create"])
    assert doc["created"] == [topic_name(FEEDBACK, prefix)]
    assert rc == EXIT_UNHEALTHY
    assert sum(not t["ok"] for t in doc["topics"]) == 2  # type: ignore[attr-defined]


# --- dead letters ---


def _detector_headers(reason: str, source: str, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("x-suptech-reason", reason.encode()),
        ("x-suptech-detail", b"Error parsing message"),
        ("x-suptech-source-topic", source.encode()),
        ("x-suptech-source-partition", b"2"),
        ("x-suptech-source-offset", str(offset).encode()),
    ]


def test_dead_letters_grouped_by_reason_and_source(kafka_env: str, kafka_bootstrap: str) -> None:
    dlq = topic_name(DEAD_LETTER, kafka_env)
    data_access = f"{kafka_env}telemetry.data_access.v1"
    findings = topic_name(FINDINGS, kafka_env)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    sends = [
        _detector_headers("undecodable_bundle", data_access, 11),
        _detector_headers("undecodable_bundle", data_access, 12),
        _detector_headers("engine_error", data_access, 13),
        [("reason", b"invalid finding: no grade"), ("source", f"{findings}/1/7".encode())],
        [("reason", b"invalid finding: no family"), ("source", f"{findings}/1/8".encode())],
        [],
    ]
    for headers in sends:
        producer.send(dlq, key=b"k", value=b"\x00bad", headers=headers)
    producer.flush()
    producer.close()

    rc, doc = run_json(["deadletters", "--limit", "2"])
    assert rc == EXIT_OK
    assert doc["total"] == 6
    counts = {(g["reason"], g["source_topic"], g["writer"]): g["count"] for g in doc["groups"]}  # type: ignore[attr-defined]
    assert counts == {
        ("undecodable_bundle", data_access, "detector"): 2,
        ("invalid finding", findings, "alerts"): 2,
        ("engine_error", data_access, "detector"): 1,
        ("(no reason header)", "(unknown)", "?"): 1,
    }
    assert [r["offset"] for r in doc["latest"]] == [4, 5]  # type: ignore[attr-defined]
    assert doc["latest"][0]["detail"] == "no family"  # type: ignore[index]
    assert doc["latest"][0]["source_offset"] == 8  # type: ignore[index]

    rc, text = run(["deadletters"])
    assert f"{dlq}: 6 dead letters" in text
    assert "undecodable_bundle" in text and f"{data_access}/2/12" in text

    assert run(["deadletters", "--max-dead", "5"])[0] == EXIT_UNHEALTHY
    rc, doc = run_json(["deadletters", "--since", "2999-01-01T00:00:00"])
    assert (rc, doc["total"], doc["groups"]) == (EXIT_OK, 0, [])


def test_dead_letters_bad_since_is_a_usage_error(
    kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["deadletters", "--since", "yesterday"])[0] == EXIT_USAGE
    assert "--since must be like" in capsys.readouterr().err


def test_parse_since() -> None:
    assert parse_since("90s", now_ms=100_000) == 10_000
    assert parse_since("2h", now_ms=10_000_000) == 2_800_000
    assert parse_since("1970-01-02T00:00:00+00:00") == 86_400_000
    with pytest.raises(ValueError):
        parse_since("7 days")


def test_replay_puts_dead_letters_of_one_reason_back_on_their_source(
    kafka_env: str, kafka_bootstrap: str
) -> None:
    from suptech.common.bundles import decode_bundle
    from suptech.v1 import telemetry_pb2

    dlq = topic_name(DEAD_LETTER, kafka_env)
    data_access = f"{kafka_env}telemetry.data_access.v1"
    env = telemetry_pb2.TelemetryEnvelope(event_id="ev-1", institution_id="bank-a")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    # A failing event is dead-lettered as its bare envelope; a bad record as itself.
    producer.send(
        dlq,
        key=b"bank-a",
        value=env.SerializeToString(),
        headers=_detector_headers("engine_error", data_access, 5),
    )
    producer.send(
        dlq,
        key=b"bank-a",
        value=b"\x00bad",
        headers=_detector_headers("undecodable_bundle", data_access, 6),
    )
    producer.send(
        dlq,
        key=b"bank-b",
        value=b"x",
        headers=_detector_headers("engine_error", f"{kafka_env}gone.v1", 7),
    )
    producer.flush()
    producer.close()

    argv = ["deadletters", "--replay", "--reason", "engine_error", "--to-source"]
    rc, doc = run_json(argv)
    # One of the two could not go back (its source topic does not exist): say so, exit 1.
    assert rc == EXIT_UNHEALTHY
    replayed = {d["dead_letter_offset"]: d for d in doc["replayed"]}  # type: ignore[attr-defined]
    assert replayed[2]["skipped"] == "unknown source topic"
    assert replayed[0]["to_topic"] == data_access and replayed[0]["skipped"] == ""

    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    tp = TopicPartition(data_access, replayed[0]["partition"])
    reader.assign([tp])
    reader.seek(tp, replayed[0]["offset"])
    got: list[object] = []
    while not got:
        got = list(reader.poll(timeout_ms=1000).get(tp, []))
    reader.close()
    rec: Any = got[0]
    # The detector reads it as it reads any telemetry record: a bundle with the event.
    assert rec.key == b"bank-a"
    assert [e.event_id for e in decode_bundle(rec.value).events] == ["ev-1"]
    assert dict(rec.headers)["x-suptech-replayed-from"] == f"{dlq}/0/0".encode()

    assert run(["deadletters", "--replay", "--reason", "engine_error"])[0] == EXIT_USAGE
