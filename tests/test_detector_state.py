"""The detector's saved state is its own: sealed under its key, refused (cold start) otherwise."""

from __future__ import annotations

import hashlib
import json
import pickle
import signal
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from suptech.common.topics import DATA_ACCESS, DETECTOR_CHECKPOINTS, topic_name
from suptech.detector.checkpoint import (
    CHECKPOINT_ID_HEADER,
    REFUSED,
    Checkpoint,
    CheckpointStore,
    KafkaCheckpointStore,
)
from suptech.detector.processing import DetectorCore
from suptech.detector.state_key import load_state_key, seal

KEY = b"the-detectors-own-key-0123456789abcdef"
OTHER_KEY = b"someone-elses-key-0123456789abcdef-xx"
TOPICS = {"telemetry.data_access.v1"}


class _Payload:
    """Unpickling this creates a file: proof that foreign bytes were (or were not) executed."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.sentinel,))


def test_a_local_checkpoint_written_without_the_key_is_refused_unrun(tmp_path: Path) -> None:
    sentinel = tmp_path / "ran"
    evil = pickle.dumps(_Payload(sentinel))
    for forged in (evil, seal(evil, OTHER_KEY)):
        (tmp_path / "cp").write_bytes(forged)
        before = dict(REFUSED)
        assert CheckpointStore(tmp_path / "cp", KEY).load() is None
        assert REFUSED.get("unsealed", 0) == before.get("unsealed", 0) + 1
    assert not sentinel.exists()


def test_own_checkpoint_round_trips_and_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp", KEY)
    store.save(Checkpoint(b"engine", {("t", 0): 5}))
    loaded = store.load()
    assert loaded is not None and loaded.offsets == {("t", 0): 5}
    data = bytearray((tmp_path / "cp").read_bytes())
    data[-3] ^= 0x01
    (tmp_path / "cp").write_bytes(bytes(data))
    assert store.load() is None


def test_engine_state_of_an_unknown_version_starts_cold_not_a_crash_loop(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "cp", KEY)
    store.save(Checkpoint(pickle.dumps((99, {})), {("telemetry.data_access.v1", 0): 7}))
    before = REFUSED.get("engine_state", 0)
    core = DetectorCore.start(store, TOPICS, "registry.sandbox.v1")
    assert core.offsets == {} and core.engine.stats()["events_processed"] == 0
    assert REFUSED["engine_state"] == before + 1
    assert core.progress()["checkpoints_refused_engine_state"] == before + 1


def test_state_key_is_made_once_private_and_short_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.key"
    key = load_state_key(path, create=True)
    assert load_state_key(path, create=True) == key and len(key) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileNotFoundError):
        load_state_key(tmp_path / "absent.key", create=False)
    (tmp_path / "short.key").write_bytes(b"abc")
    with pytest.raises(ValueError, match="shorter"):
        load_state_key(tmp_path / "short.key", create=False)


@pytest.mark.integration
def test_a_checkpoint_someone_else_wrote_to_kafka_is_refused_unrun(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Write access to the topic is not enough: a complete, well-hashed forged checkpoint
    (chunks and manifest exactly as the detector writes them) is refused, and the previous good
    one is used."""
    topic = topic_name(DETECTOR_CHECKPOINTS, topic_prefix)
    store = KafkaCheckpointStore(kafka_bootstrap, topic, "det-x", KEY)
    try:
        good = Checkpoint(b"engine", {("t", 0): 3}, written_unix_s=1.0)
        good_id = store.save(CheckpointStore(tmp_path / "cp", KEY).save(good), good)
        sentinel = tmp_path / "ran"
        forged = seal(pickle.dumps(_Payload(sentinel)), OTHER_KEY)
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        producer.send(
            topic,
            key=b"det-x/0",
            value=forged,
            headers=[(CHECKPOINT_ID_HEADER, b"forged")],
            partition=store.partition,
        )
        manifest = {
            "checkpoint_id": "forged",
            "chunks": 1,
            "bytes": len(forged),
            "sha256": hashlib.sha256(forged).hexdigest(),
            "written_unix_s": 9e9,
        }
        producer.send(
            topic,
            key=b"det-x/manifest",
            value=json.dumps(manifest).encode(),
            partition=store.partition,
        )
        producer.flush()
        producer.close()
        loaded = store.load()
        assert loaded is not None and loaded[1] == good_id
        assert not sentinel.exists()
    finally:
        store.close()


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: max(0, om.offset) for tp, om in offsets.items() if tp.topic == topic}


def _max_message_bytes(bootstrap: str, topic: str, value: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(value)})]
        )
    finally:
        admin.close()


@pytest.mark.integration
def test_offsets_are_never_committed_past_the_checkpoint_kafka_has(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """faust commits acknowledged offsets by itself when it stops; with every checkpoint
    refused by Kafka, none of those commits may pass the (absent) checkpoint in Kafka. Once
    Kafka takes the checkpoint again, the shutdown commits exactly what it covers."""
    from tests.test_detector_service import Worker, bundle, produce, routine_access

    cp_topic = topic_name(DETECTOR_CHECKPOINTS, topic_prefix)
    source = topic_name(DATA_ACCESS, topic_prefix)
    group = f"det-{topic_prefix.rstrip('.')}"
    _max_message_bytes(kafka_bootstrap, cp_topic, 256)  # below any checkpoint chunk
    w = Worker(kafka_bootstrap, topic_prefix, tmp_path / "state", tmp_path / "worker.log")
    w.start()
    try:
        t0 = 1_790_000_000 * 10**9
        records = [(source, b"k", bundle([routine_access(i, t0 + i * 10**9)])) for i in range(20)]
        produce(kafka_bootstrap, records)
        w.wait_for(r"checkpoint written to .* only, not to Kafka", 60)
    finally:
        assert w.kill(signal.SIGTERM) == 0
    assert not any(_committed(kafka_bootstrap, group, source).values())

    _max_message_bytes(kafka_bootstrap, cp_topic, 2 * 1024 * 1024)
    w.start()
    try:
        produce(kafka_bootstrap, [(source, b"k", bundle([routine_access(99, t0 + 99 * 10**9)]))])
        w.wait_for(r"checkpoint written: .* and Kafka", 60)
    finally:
        assert w.kill(signal.SIGTERM) == 0
    assert sum(_committed(kafka_bootstrap, group, source).values()) == 21


def test_restored_actors_take_no_more_memory_than_fresh_ones() -> None:
    """Unpickled, every setting of every actor's detectors was a number of its own: a
    restored worker held a quarter more per actor than the one that made the state."""
    import tracemalloc

    from suptech.detector.logic import DetectionEngine, EngineConfig

    from perf.detector_speed import make_bundles

    n = 2000
    bundles = make_bundles(n, actors_per_institution=n, institutions=1, cycle_actors=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = DetectionEngine(EngineConfig(dedup_capacity=1))
        for _, _, events in bundles:
            for env in events:
                engine.process(env)
                engine.scores.take()
        fresh = tracemalloc.get_traced_memory()[0] - before
        blob = engine.snapshot()
        before = tracemalloc.get_traced_memory()[0]
        restored = DetectionEngine.restore(blob)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert restored.stats()["actors"] == n
    a, b = list(restored.leakage.actors.values())[:2]
    assert a.access.alpha is b.access.alpha and a.rate.ratio is b.rate.ratio
    assert grown < 1.1 * fresh, (grown / n, fresh / n)
