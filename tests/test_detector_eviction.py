"""Bounded memory: actors, data systems and metric streams idle too long are forgotten."""

from __future__ import annotations

import pickle

from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.v1 import telemetry_pb2 as T

from tests.test_detection import HOUR, T0, access

DAY = 24 * HOUR


def metric(n: int, t: int, name: str) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=f"m{n}", institution_id="bank-1")
    env.event_time.FromNanoseconds(t)
    env.metrics.system_id = "core"
    sample = env.metrics.samples.add()
    sample.name, sample.unit, sample.value = name, "ms", 10.0
    return env


def two_actors(engine: DetectionEngine, days: int) -> None:
    """Actor a works on day 0 only; actor b every day; one metric stream each way."""
    engine.process(access(0, T0, actor="a" * 64))
    engine.process(metric(0, T0, "latency_p99"))
    for d in range(days):
        engine.process(access(1 + d, T0 + d * DAY + HOUR, actor="b" * 64))
        engine.process(metric(1 + d, T0 + d * DAY + HOUR, "cpu"))


def test_entities_idle_longer_than_the_horizon_are_evicted_and_counted() -> None:
    engine = DetectionEngine(EngineConfig(idle_evict_ns=3 * DAY))
    two_actors(engine, days=6)
    stats = engine.stats()
    assert stats["actors"] == 1 and ("bank-1", "b" * 64) in engine.leakage.actors
    assert stats["metric_streams"] == 1
    assert stats["data_entities_evicted"] >= 1 and stats["metric_streams_evicted"] == 1
    # One that returns is a new actor, learnt again; nothing breaks.
    engine.process(access(100, T0 + 6 * DAY, actor="a" * 64))
    assert engine.stats()["actors"] == 2


def test_nothing_within_the_default_thirty_days_is_forgotten() -> None:
    engine = DetectionEngine()
    two_actors(engine, days=6)
    assert engine.stats()["actors"] == 2 and engine.stats()["metric_streams"] == 2


def test_an_older_snapshot_gets_last_seen_times_and_evicts_later() -> None:
    engine = DetectionEngine(EngineConfig(idle_evict_ns=3 * DAY))
    two_actors(engine, days=1)
    state = dict(engine.__dict__)
    state["_out"] = []
    state.pop("_evicted_day")
    leakage, metrics = state["leakage"], state["metrics"]
    del leakage.actors_seen, leakage.systems_seen, leakage.evicted, metrics.seen, metrics.evicted
    older = DetectionEngine.restore(pickle.dumps((6, state)))
    assert older.stats()["actors"] == 2
    for d in range(1, 6):
        older.process(access(50 + d, T0 + d * DAY + HOUR, actor="b" * 64))
    assert older.stats()["actors"] == 1
