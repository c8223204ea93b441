"""Simulated telemetry through the real SDK, gateway and Kafka; the sandbox register through the
real compacted topic."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from suptech.common.bundles import PAYLOAD_KINDS, decode_bundle, topic_spec_for
from suptech.common.topics import REGISTRY_SANDBOX, topic_name
from suptech.v1 import sandbox_pb2

from simulators.run_pipeline import Service
from simulators.scenario import generate, write
from simulators.stream import publish_registry, read_registry, read_telemetry, stream_telemetry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
Record = tuple[bytes, bytes]
TOKENS = {"bank-sz-04": "tok-sim-" + "a" * 20, "pay-02": "tok-sim-" + "b" * 20}


def _consume(
    bootstrap: str, topics: list[tuple[str, int]], done: Callable[[list[Record]], bool]
) -> list[Record]:
    """(key, value) of the records of ``topics`` from the beginning, until ``done`` holds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(t, p) for t, n in topics for p in range(n)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[Record] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done(out):
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def test_registry_round_trips_through_the_compacted_topic(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    scen = generate(seed=4, days=1, scale=0.05, incidents="none")
    write(scen, tmp_path)
    tests = read_registry(tmp_path / "sandbox_registry.jsonl")
    assert tests == scen.registry
    assert publish_registry(kafka_bootstrap, topic_prefix, tests) == 18
    topic = topic_name(REGISTRY_SANDBOX, topic_prefix)
    values = _consume(
        kafka_bootstrap, [(topic, REGISTRY_SANDBOX.partitions)], lambda v: len(v) >= len(tests)
    )
    got = {k.decode(): sandbox_pb2.SandboxTest.FromString(v) for k, v in values}
    assert got == {t.test_id: t for t in tests}
    assert all(t.user_cap > 0 and t.approved_features for t in got.values())


def _start_gateway(kafka: str, prefix: str, workdir: Path) -> Service:
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps({tok: inst for inst, tok in TOKENS.items()}))
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}:{REPO}",
        GATEWAY_PORT="0",
        KAFKA_ADDR=kafka,
        SUPTECH_TOPIC_PREFIX=prefix,
        GATEWAY_TOKENS_FILE=str(tokens),
        GATEWAY_GRACE_S="1",
    )
    return Service("gateway", "suptech.gateway", env, workdir / "gateway.log")


def test_streamed_scenario_arrives_in_kafka_with_the_same_event_ids(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # The gateway refuses events older than 30 days: simulate the day before yesterday.
    start = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    scen = generate(seed=9, days=1, scale=0.05, incidents="silent_app", start=start.isoformat())
    write(scen, tmp_path / "scenario")
    expected = {
        e.event_id: e
        for e in read_telemetry(tmp_path / "scenario" / "telemetry.jsonl")
        if e.institution_id in TOKENS
    }
    gateway = _start_gateway(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        port = gateway.wait_for(r"gateway listening on (\d+)", 30).group(1)
        target = f"127.0.0.1:{port}"
        result = stream_telemetry(
            read_telemetry(tmp_path / "scenario" / "telemetry.jsonl"),
            target,
            TOKENS,
            tmp_path / "spool",
            institutions=set(TOKENS),
            flush_timeout_s=60,
        )
    finally:
        gateway.stop(10)
    assert set(result) == set(TOKENS)
    for inst, r in result.items():
        assert r["flushed"] and not r["rejected"] and r["unacknowledged"] == 0, (inst, r)
    assert sum(r["acknowledged"] for r in result.values()) == len(expected)

    topics = [
        (topic_name(topic_spec_for(k), topic_prefix), topic_spec_for(k).partitions)
        for k in PAYLOAD_KINDS
    ]

    def all_seen(records: list[Record]) -> bool:
        return sum(len(decode_bundle(v).events) for _, v in records) >= len(expected)

    seen = {
        env.event_id: env
        for _, value in _consume(kafka_bootstrap, topics, all_seen)
        for env in decode_bundle(value).events
    }
    assert set(seen) == set(expected)
    assert all(seen[i] == expected[i] for i in list(expected)[:500])
