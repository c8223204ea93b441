"""The detector service end to end, against the real broker: a worker subprocess, real topics.

Plain-function tests of the record handling and the checkpoint store come first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, KafkaProducer
from suptech.common.bundles import encode_bundle
from suptech.common.config import ConfigError
from suptech.common.topics import (
    DATA_ACCESS,
    DEAD_LETTER,
    DETECTOR_CHECKPOINTS,
    FINDINGS,
    METRICS,
    REGISTRY_SANDBOX,
    SANDBOX,
    SCORES,
    topic_name,
)
from suptech.detector.checkpoint import (
    Checkpoint,
    CheckpointStore,
    KafkaCheckpointStore,
    encode_checkpoint,
    newest_checkpoint,
)
from suptech.detector.config import DetectorConfig
from suptech.detector.health import HealthPort
from suptech.detector.processing import REASON_HEADER, DetectorCore
from suptech.v1 import findings_pb2, sandbox_pb2, telemetry_pb2

REPO = Path(__file__).resolve().parents[1]
T0_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
INST = "inst-bank-001"


# ---- events -------------------------------------------------------------------------------


def envelope(event_id: str, t_ns: int, inst: str = INST) -> telemetry_pb2.TelemetryEnvelope:
    env = telemetry_pb2.TelemetryEnvelope(event_id=event_id, institution_id=inst)
    env.event_time.FromNanoseconds(t_ns)
    return env


def routine_access(i: int, t_ns: int, inst: str = INST) -> telemetry_pb2.TelemetryEnvelope:
    env = envelope(f"ev-{inst}-{i}", t_ns, inst)
    da = env.data_access
    da.system_id = "core-banking"
    da.actor_pseudonym = f"actor{i % 5:02d}"
    da.actor_role = telemetry_pb2.ACTOR_ROLE_EMPLOYEE
    da.channel = telemetry_pb2.CHANNEL_CONSOLE
    da.operation = telemetry_pb2.OPERATION_QUERY
    da.records = 3 + i % 4
    da.fields.c2 = 2
    da.bytes_out = 2_000
    da.destination_kind = telemetry_pb2.DESTINATION_KIND_INTERNAL
    env.classification.data_class = telemetry_pb2.DATA_CLASS_C2
    return env


def c3_cross_border(event_id: str, t_ns: int, inst: str = INST) -> telemetry_pb2.TelemetryEnvelope:
    """Authentication data exported abroad: a hard rule, whatever the baseline."""
    env = envelope(event_id, t_ns, inst)
    da = env.data_access
    da.system_id = "card-auth"
    da.actor_pseudonym = "actor-x"
    da.actor_role = telemetry_pb2.ACTOR_ROLE_CONTRACTOR
    da.channel = telemetry_pb2.CHANNEL_BATCH
    da.operation = telemetry_pb2.OPERATION_EXPORT
    da.records = 500
    da.fields.c3 = 2
    da.bytes_out = 4_000_000
    da.destination_kind = telemetry_pb2.DESTINATION_KIND_CROSS_BORDER
    da.destination_pseudonym = "dest-77"
    da.destination_country = "SG"
    env.classification.data_class = telemetry_pb2.DATA_CLASS_C3
    return env


def sandbox_test() -> sandbox_pb2.SandboxTest:
    test = sandbox_pb2.SandboxTest(
        test_id="sbx-1", institution_id=INST, app_id="app-pay", name="QR pay", user_cap=1_000
    )
    test.start_time.FromNanoseconds(T0_NS - 86_400 * 10**9)
    test.end_time.FromNanoseconds(T0_NS + 365 * 86_400 * 10**9)
    return test


def sandbox_report(event_id: str, t_ns: int, users: int) -> telemetry_pb2.TelemetryEnvelope:
    env = envelope(event_id, t_ns)
    rep = env.sandbox
    rep.test_id = "sbx-1"
    rep.app_id = "app-pay"
    rep.active_users = users // 2
    rep.cumulative_users = users
    rep.transaction_count = 10
    rep.interval_seconds = 3600
    return env


def bundle(events: list[telemetry_pb2.TelemetryEnvelope], inst: str = INST) -> bytes:
    return encode_bundle(inst, uuid.uuid4().hex, time.time_ns(), events)


# ---- unit: record handling and checkpoints -------------------------------------------------

STATE_KEY = b"test-state-key-0123456789abcdef-0123"


def core_for(tmp_path: Path) -> DetectorCore:
    return DetectorCore.start(
        CheckpointStore(tmp_path / "cp", STATE_KEY),
        {"telemetry.data_access.v1"},
        "registry.sandbox.v1",
    )


def test_garbage_record_becomes_a_dead_letter_with_its_reason(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    outcome = core.handle("telemetry.data_access.v1", 0, 7, b"k", b"\xff\xfe garbage")
    assert outcome.findings == []
    [dead] = outcome.dead_letters
    assert dead.reason == "undecodable_bundle"
    assert dead.value == b"\xff\xfe garbage"
    headers = dict(dead.headers())
    assert headers[REASON_HEADER] == b"undecodable_bundle"
    assert headers["x-suptech-source-offset"] == b"7"
    # The partition carries on past the poison record.
    good = core.handle("telemetry.data_access.v1", 0, 8, b"k", bundle([routine_access(1, T0_NS)]))
    assert good.dead_letters == [] and good.events == 1


def test_event_without_id_is_dead_lettered_alone(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    value = bundle([routine_access(1, T0_NS), envelope("", T0_NS)])
    outcome = core.handle("telemetry.data_access.v1", 0, 0, b"k", value)
    assert [d.reason for d in outcome.dead_letters] == ["missing_event_id"]
    assert outcome.events == 2 and core.max_event_time_ns == T0_NS


def test_restored_core_skips_records_its_checkpoint_covers(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    for offset in range(3):
        core.handle(
            "telemetry.data_access.v1", 1, offset, b"k", bundle([routine_access(offset, T0_NS)])
        )
    CheckpointStore(tmp_path / "cp", STATE_KEY).save(core.checkpoint())
    restored = core_for(tmp_path)
    assert restored.offsets == {("telemetry.data_access.v1", 1): 3}
    assert restored.engine.stats() == core.engine.stats()
    assert restored.handle("telemetry.data_access.v1", 1, 2, b"k", b"x").skipped
    assert not restored.handle("telemetry.data_access.v1", 1, 3, b"k", bundle([])).skipped


def test_a_withdrawn_sandbox_test_is_unregistered_from_then_on(tmp_path: Path) -> None:
    """A tombstone on the compacted register withdraws the test, in the live stream as in the
    register read ahead at start; the app's next report is an unregistered test's."""
    reg, sbx = "registry.sandbox.v1", "telemetry.sandbox.v1"
    test = sandbox_test()
    key = test.test_id.encode()
    for preload in (False, True):
        core = DetectorCore.start(CheckpointStore(tmp_path / f"cp{preload}", STATE_KEY), {sbx}, reg)
        if preload:
            assert core.preload_registry([(key, test.SerializeToString()), (key, None)]) == 0
        else:
            core.handle(reg, 0, 0, key, test.SerializeToString())
            assert core.engine.stats()["sandbox_tests"] == 1
            core.handle(reg, 0, 1, key, None)
        assert core.engine.stats()["sandbox_tests"] == 0
        out = core.handle(sbx, 0, 0, INST.encode(), bundle([sandbox_report("s-1", T0_NS, 10)]))
        assert [f.rule_id for f in out.findings] == ["sandbox.unregistered_test"]


def heartbeat(event_id: str, t_ns: int, inst: str) -> telemetry_pb2.TelemetryEnvelope:
    env = envelope(event_id, t_ns, inst)
    env.heartbeat.source_id = inst
    env.heartbeat.interval_seconds = 300
    return env


def test_a_lagging_institution_is_not_taken_for_a_silent_one(tmp_path: Path) -> None:
    # Two institutions; B's stream is read far ahead of A's (A's spool drains slower, or the
    # consumer fetched B's partition first). A is not silent: it is simply behind, and the
    # watermark must wait for it while it still delivers or its partition has unread records.
    core = DetectorCore.start(
        CheckpointStore(tmp_path / "cp", STATE_KEY),
        {"telemetry.heartbeat.v1"},
        "registry.sandbox.v1",
    )
    hb = "telemetry.heartbeat.v1"
    minute = 60 * 10**9
    core.handle(hb, 0, 0, b"a", bundle([heartbeat("a-0", T0_NS, "inst-a")], "inst-a"))
    for i in range(1, 6 * 60):  # six hours of B's heartbeats, every minute
        core.handle(
            hb, 1, i, b"b", bundle([heartbeat(f"b-{i}", T0_NS + i * minute, "inst-b")], "inst-b")
        )
    assert core.watermark_ns() <= T0_NS
    assert not [f for f in core.advance() if f.institution_id == "inst-a"]
    # While the consumer knows A's partition has unread records, it holds the watermark back
    # however long it has been quiet; a lagging partition never read at all stops it.
    lagging = frozenset({(hb, 0)})
    assert core.watermark_ns(now=time.monotonic() + 3600, lagging=lagging) <= T0_NS
    assert core.watermark_ns(lagging=frozenset({(hb, 2)})) == 0
    # A's partition caught up, A quiet for a minute of wall time past the idle time (its SDK
    # backing off, its next records produced just after the end offsets were read): it is a
    # minute late, not silent for the six hours B covered meanwhile.
    soon = time.monotonic() + core.partition_idle_s + 60
    late = core.engine.config.allowed_lateness_ns
    assert T0_NS - late < core.watermark_ns(now=soon) <= T0_NS - late + 2 * minute
    assert not [f for f in core.advance(now=soon) if f.institution_id == "inst-a"]
    # Quiet as long as a real silence lasts, A is reported silent.
    later = time.monotonic() + core.partition_idle_s + 6 * 3600
    assert core.watermark_ns(now=later) > T0_NS + 5 * 60 * minute
    silent = [f for f in core.advance(now=later) if f.institution_id == "inst-a"]
    assert silent and "silent" in silent[0].summary


def test_unreadable_checkpoint_starts_cold_instead_of_crash_looping(tmp_path: Path) -> None:
    (tmp_path / "cp").write_bytes(b"not a pickle")
    assert CheckpointStore(tmp_path / "cp", STATE_KEY).load() is None


def test_config_fails_fast_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="DETECTOR_CHECKPOINT_INTERVAL_S"):
        DetectorConfig.from_env({"DETECTOR_CHECKPOINT_INTERVAL_S": "soon"})
    with pytest.raises(ConfigError, match="KAFKA_ADDR"):
        DetectorConfig.from_env({"KAFKA_ADDR": "nohost"})
    with pytest.raises(ConfigError, match="DETECTOR_HEALTH_PORT"):
        DetectorConfig.from_env({"DETECTOR_HEALTH_PORT": "70000"})
    for budget in ("0", "1.5", "lots"):  # a share of one core's time, in (0, 1]
        with pytest.raises(ConfigError, match="DETECTOR_CHECKPOINT_BUDGET"):
            DetectorConfig.from_env({"DETECTOR_CHECKPOINT_BUDGET": budget})
    cfg = DetectorConfig.from_env({"SUPTECH_TOPIC_PREFIX": "x.", "DETECTOR_STATE_DIR": "/s"})
    assert cfg.topic_prefix == "x." and cfg.checkpoint_path.parent == Path("/s")
    assert cfg.health_port == 50071


def test_restore_takes_the_newer_of_local_file_and_kafka() -> None:
    old = Checkpoint(b"old", written_unix_s=100.0)
    new = Checkpoint(b"new", written_unix_s=200.0)
    assert newest_checkpoint(old, new, "f", "k") == (new, "Kafka k")
    assert newest_checkpoint(new, old, "f", "k") == (new, "local file f")
    assert newest_checkpoint(None, old, "f", "k") == (old, "Kafka k")
    assert newest_checkpoint(None, None, "f", "k") == (None, "none")


@pytest.mark.integration
def test_kafka_checkpoint_survives_a_torn_write(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_name(DETECTOR_CHECKPOINTS, topic_prefix)
    # Small chunks so that the real 1 MiB splitting path is exercised on a small state.
    store = KafkaCheckpointStore(kafka_bootstrap, topic, "det-a", STATE_KEY, chunk_bytes=4096)
    other = KafkaCheckpointStore(kafka_bootstrap, topic, "det-b", STATE_KEY, chunk_bytes=4096)
    try:
        assert store.load() is None
        core = core_for(tmp_path)
        core.handle("telemetry.data_access.v1", 0, 0, b"k", bundle([routine_access(1, T0_NS)]))
        first = core.checkpoint()
        first.written_unix_s = 1.0
        store.save(encode_checkpoint(first, STATE_KEY), first)
        core.handle(
            "telemetry.data_access.v1",
            0,
            1,
            b"k",
            bundle([routine_access(i, T0_NS + i * 10**9) for i in range(2, 300)]),
        )
        second = core.checkpoint()
        second.written_unix_s = 2.0
        data = encode_checkpoint(second, STATE_KEY)
        assert len(data) > 3 * 4096
        second_id = store.save(data, second)
        other.save(encode_checkpoint(first, STATE_KEY), first)  # another app id on the same topic

        loaded = store.load()
        assert loaded is not None and loaded[1] == second_id
        assert loaded[0].offsets == {("telemetry.data_access.v1", 0): 2}
        # The newest checkpoint's chunks are read from its first one, not the partition's start
        # (every checkpoint of the last hour is there until compaction runs).
        for _ in range(8):
            store.save(data, second)
        newest = store.save(data, second)
        loaded = store.load()
        assert loaded is not None and loaded[1] == newest
        chunks = -(-len(data) // 4096)
        # The tail looked at for the newest manifest, then its chunks: not ten checkpoints.
        assert store.records_read <= 16 + chunks + 1 < 10 * chunks

        # A worker killed between its chunks and its manifest: the torn write is never used.
        store.send_chunks("torn", b"x" * 10_000)
        loaded = store.load()
        assert loaded is not None and loaded[1] == newest

        # A chunk that no longer hashes to its manifest: the previous good checkpoint is used.
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        producer.send(
            topic,
            key=b"det-a/1",
            value=b"garbage",
            headers=[("x-suptech-checkpoint-id", newest.encode())],
            partition=store.partition,
        )
        producer.flush()
        producer.close()
        with caplog.at_level(logging.WARNING, logger="suptech.detector.checkpoint"):
            loaded = store.load()
        assert loaded is not None and loaded[1] != newest
        assert loaded[0].offsets == {("telemetry.data_access.v1", 0): 2}
        assert f"Kafka checkpoint {newest} of det-a is torn (sha256 mismatch)" in caplog.text
        assert f"using the previous good Kafka checkpoint {loaded[1]}" in caplog.text
    finally:
        store.close()
        other.close()


# ---- health: what the Kubernetes probes ask ------------------------------------------------

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return int(reply.status)


async def test_health_port_serves_only_between_ready_and_shutdown() -> None:
    health = HealthPort("127.0.0.1", 0)
    port = await health.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            assert (await stub.Check(request, timeout=5)).status == NOT_SERVING
            await health.mark_ready()
            assert (await stub.Check(request, timeout=5)).status == SERVING
            await health.begin_shutdown()
            assert (await stub.Check(request, timeout=5)).status == NOT_SERVING
            # A late assignment during shutdown must not flip it back.
            await health.mark_ready()
            assert (await stub.Check(request, timeout=5)).status == NOT_SERVING
    finally:
        await health.stop()


# ---- integration: a real worker on the real broker -----------------------------------------


def _key_file(directory: Path) -> Path:
    path = directory / "detector-state.key"
    if not path.exists():
        path.write_bytes(STATE_KEY)
    return path


class Worker:
    """``python -m suptech.detector worker`` as a subprocess, its log in a file."""

    def __init__(self, bootstrap: str, prefix: str, state_dir: Path, log: Path) -> None:
        self.log = log
        self.state_dir = state_dir
        self.env = dict(
            os.environ,
            PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
            KAFKA_ADDR=bootstrap,
            SUPTECH_TOPIC_PREFIX=prefix,
            DETECTOR_APP_ID=f"det-{prefix.rstrip('.')}",
            DETECTOR_STATE_DIR=str(state_dir),
            DETECTOR_CHECKPOINT_INTERVAL_S="1",
            DETECTOR_WATERMARK_INTERVAL_S="0.5",
            DETECTOR_SESSION_TIMEOUT_S="6",
            DETECTOR_HEALTH_PORT="0",
            # Outside the state directory, as a Secret is: a worker that loses its volume still
            # holds the key that opens its checkpoints in Kafka.
            DETECTOR_STATE_KEY_FILE=str(_key_file(state_dir.parent)),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> None:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "suptech.detector", "worker"],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_for(r"detector ready", 60)

    @property
    def health_port(self) -> int:
        return int(self.wait_for(r"grpc.health.v1 on port (\d+)", 30).group(1))

    def text(self) -> str:
        return self.log.read_text(errors="replace")[self._log_start :]

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            assert self.proc is not None and self.proc.poll() is None, self.text()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in worker log:\n{self.text()[-3000:]}")

    def last_stats(self, label: str) -> dict[str, int]:
        """The worker's engine stats: of each shard's last ``label`` line, summed."""
        latest: dict[str, dict[str, int]] = {}
        for line in self.text().splitlines():
            found = re.search(label + r".*?stats=(\{.*\})", line)
            if found:
                shard = re.search(r"\bshard (\d+)", line)
                latest[shard.group(1) if shard else ""] = json.loads(found.group(1))
        assert latest, f"no {label!r} line in worker log"
        stats: dict[str, int] = {}
        for one in latest.values():
            for k, v in one.items():
                stats[k] = stats.get(k, 0) + v
        return stats

    def kill(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def worker(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(kafka_bootstrap, topic_prefix, tmp_path / "state", tmp_path / "worker.log")
    yield w
    if w.proc is not None and w.proc.poll() is None:
        w.kill(signal.SIGTERM)


def produce(
    bootstrap: str,
    records: list[tuple[str, bytes, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for topic, key, value in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()


def read_until(
    bootstrap: str, topic: str, done: object, timeout_s: float = 60
) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every record of ``topic`` from the start, read until ``done(records)`` is true."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for r in batch:
                    records.append((r.key, r.value, list(r.headers or [])))
            if done(records):  # type: ignore[operator]
                return records
        raise AssertionError(f"timed out reading {topic}: {len(records)} records")
    finally:
        consumer.close()


def findings_of(
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
) -> list[findings_pb2.Finding]:
    out = []
    for _, value, _ in records:
        f = findings_pb2.Finding()
        f.ParseFromString(value)
        out.append(f)
    return out


def rules(records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> set[str]:
    return {f.rule_id for f in findings_of(records)}


@pytest.mark.integration
def test_worker_turns_telemetry_into_findings_and_survives_a_poison_record(
    kafka_bootstrap: str, topic_prefix: str, worker: Worker
) -> None:
    p = topic_prefix
    da, sbx = topic_name(DATA_ACCESS, p), topic_name(SANDBOX, p)
    key = INST.encode()
    # The register exists before the worker starts, which reads it whole before any report.
    registry = topic_name(REGISTRY_SANDBOX, p)
    produce(kafka_bootstrap, [(registry, b"sbx-1", sandbox_test().SerializeToString())])
    worker.start()
    assert "sandbox register preloaded: 1 tests" in worker.text()
    # What the kubelet's gRPC probes see once the worker owns its partitions.
    assert health_status(worker.health_port) == SERVING
    produce(
        kafka_bootstrap,
        [
            (sbx, key, bundle([sandbox_report("ev-sbx", T0_NS, 5_000)])),
            (da, key, b"\x08\x96\x01 this is not a bundle \xff"),
            (da, key, bundle([routine_access(i, T0_NS + i * 10**9) for i in range(50)])),
        ],
    )
    # As the gateway writes it: the ingest call's W3C trace context in the record's headers.
    trace_id = uuid.uuid4().hex
    produce(
        kafka_bootstrap,
        [(da, key, bundle([c3_cross_border("ev-c3", T0_NS + 60 * 10**9)]))],
        headers=[("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01".encode())],
    )

    found = read_until(
        kafka_bootstrap,
        topic_name(FINDINGS, p),
        lambda rs: {"leak.c3_outbound", "sandbox.user_cap"} <= rules(rs),
    )
    by_rule = {f.rule_id: f for f in findings_of(found)}
    # The finding continues the trace of the telemetry record that carried its evidence.
    [c3_headers] = [
        h for _, v, h in found if "ev-c3" in findings_of([(None, v, h)])[0].evidence_event_ids
    ]
    traceparents = [v.decode() for k, v in c3_headers if k == "traceparent"]
    assert len(traceparents) == 1 and traceparents[0].split("-")[1] == trace_id
    c3 = by_rule["leak.c3_outbound"]
    assert c3.institution_id == INST and c3.family == findings_pb2.FAMILY_DATA_LEAKAGE
    assert list(c3.evidence_event_ids) == ["ev-c3"]
    assert by_rule["sandbox.user_cap"].family == findings_pb2.FAMILY_SANDBOX
    assert "sandbox.unregistered_test" not in by_rule
    assert {k for k, _, _ in found} == {key}

    [(dkey, dvalue, headers)] = read_until(
        kafka_bootstrap, topic_name(DEAD_LETTER, p), lambda rs: len(rs) >= 1
    )
    assert dvalue == b"\x08\x96\x01 this is not a bundle \xff" and dkey == key
    assert dict(headers)[REASON_HEADER] == b"undecodable_bundle"
    assert dict(headers)["x-suptech-source-topic"] == da.encode()

    # Every event scored is on scores.v1, a metric sample as well as a data access.
    report = envelope("ev-metrics-1", T0_NS + 120 * 10**9)
    report.metrics.system_id = "core-banking"
    report.metrics.samples.add(name="cpu_utilization", unit="%", value=37.0)
    produce(kafka_bootstrap, [(topic_name(METRICS, p), key, bundle([report]))])

    def scored(rs: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> dict[str, str]:
        out = {}
        for _, value, _ in rs:
            batch = findings_pb2.AnomalyScoreBatch.FromString(value)
            out.update({s.event_id: s.model_id for s in batch.scores})
        return out

    scores = scored(
        read_until(kafka_bootstrap, topic_name(SCORES, p), lambda rs: len(scored(rs)) >= 52)
    )
    assert scores["ev-c3"] == "leak.access" and scores["ev-metrics-1"] == "metric.anomaly"
    assert {f"ev-{INST}-{i}" for i in range(50)} <= set(scores)

    assert worker.kill(signal.SIGTERM) == 0
    assert "checkpoint written" in worker.text()


@pytest.mark.integration
def test_worker_killed_mid_stream_resumes_from_its_checkpoint(
    kafka_bootstrap: str, topic_prefix: str, worker: Worker
) -> None:
    da = topic_name(DATA_ACCESS, topic_prefix)
    key = INST.encode()
    worker.start()
    first = [
        bundle([routine_access(b * 100 + i, T0_NS + (b * 100 + i) * 10**9) for i in range(100)])
        for b in range(10)
    ]
    produce(kafka_bootstrap, [(da, key, v) for v in first])
    produce(
        kafka_bootstrap, [(da, key, bundle([c3_cross_border("ev-c3-a", T0_NS + 2000 * 10**9)]))]
    )
    read_until(kafka_bootstrap, topic_name(FINDINGS, topic_prefix), lambda rs: len(rs) >= 1)
    # Wait for a checkpoint that covers all of it, then kill without any chance to clean up,
    # and lose the disk too: the state must come back from the Kafka checkpoint topic.
    worker.wait_for(r'checkpoint written.*"events_processed": 1001\b', 30)
    learned = worker.last_stats("checkpoint written")
    assert worker.kill(signal.SIGKILL) == -signal.SIGKILL
    shutil.rmtree(worker.state_dir)

    # Past the engine's coalescing window, so the same actor makes a new finding.
    later = T0_NS + 8 * 3600 * 10**9
    produce(kafka_bootstrap, [(da, key, bundle([c3_cross_border("ev-c3-b", later)]))])
    worker.start()
    assert worker.last_stats("restored from checkpoint") == learned
    assert re.search(r"restored from checkpoint \(Kafka .*detector\.checkpoints\.v1", worker.text())
    found = read_until(
        kafka_bootstrap,
        topic_name(FINDINGS, topic_prefix),
        lambda rs: any("ev-c3-b" in f.evidence_event_ids for f in findings_of(rs)),
    )
    # The restarted engine learned the one new event on top of its baseline, nothing again.
    worker.wait_for(r'checkpoint written.*"events_processed": 1002\b', 30)
    assert learned["events_processed"] == 1001
    ids = [f.finding_id for f in findings_of(found)]
    assert len(ids) == len(set(ids))
    assert sum("ev-c3-b" in f.evidence_event_ids for f in findings_of(found)) == 1
    assert worker.kill(signal.SIGTERM) == 0
