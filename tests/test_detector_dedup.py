"""Idempotence of the engine: keyed by (institution, event id), remembered only once processed."""

from __future__ import annotations

import pytest
from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.logic.dedup import SeenEvents
from suptech.v1 import telemetry_pb2 as T

from tests.test_detection import HOUR, T0, access, office_stream


def test_same_event_id_from_two_institutions_is_two_events() -> None:
    engine = DetectionEngine()
    engine.process(access(1, T0, inst="bank-a"))
    engine.process(access(1, T0, inst="bank-b"))
    engine.process(access(1, T0, inst="bank-a"))  # a real redelivery
    stats = engine.stats()
    assert stats["events_processed"] == 2
    assert stats["duplicates_skipped"] == 1


def test_an_event_whose_detectors_raised_is_processed_when_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = DetectionEngine()
    for env in office_stream(1):
        engine.process(env)
    bad = access(9000, T0 + 12 * HOUR, records=5000, op=T.OPERATION_EXPORT)

    def broken(*_: object) -> None:
        raise RuntimeError("detector bug")

    original = engine.leakage.process
    monkeypatch.setattr(engine.leakage, "process", broken)
    with pytest.raises(RuntimeError):
        engine.process(bad)
    monkeypatch.setattr(engine.leakage, "process", original)
    before = engine.stats()["events_processed"]
    engine.process(bad)  # put back from the dead letters
    assert engine.stats()["events_processed"] == before + 1
    assert engine.stats()["duplicates_skipped"] == 0


def test_ids_are_forgotten_past_the_horizon_in_event_time() -> None:
    engine = DetectionEngine(EngineConfig(dedup_horizon_ns=2 * HOUR))
    engine.process(access(1, T0))
    for n in range(2, 40):  # the watermark moves on by ~6 hours
        engine.process(access(n, T0 + n * 10 * 60 * 10**9))
    assert ("bank-1", "e1") not in engine._seen
    assert ("bank-1", "e39") in engine._seen
    assert engine.stats()["event_ids_remembered"] < 39


def test_capacity_bounds_memory_oldest_first() -> None:
    seen = SeenEvents(horizon_ns=10 * HOUR, capacity=3)
    for n in range(5):
        seen.add("bank-a", f"e{n}", T0 + n * HOUR)
    assert len(seen) == 3
    assert ("bank-a", "e0") not in seen and ("bank-a", "e4") in seen
    seen.clear()
    assert len(seen) == 0 and ("bank-a", "e4") not in seen


def test_memory_of_processed_events_survives_a_snapshot() -> None:
    engine = DetectionEngine()
    engine.process(access(1, T0, inst="bank-a"))
    restored = DetectionEngine.restore(engine.snapshot())
    restored.process(access(1, T0, inst="bank-a"))
    restored.process(access(1, T0, inst="bank-b"))
    assert restored.stats()["duplicates_skipped"] == 1
    assert restored.stats()["events_processed"] == 2
