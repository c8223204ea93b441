"""Snapshot version 9 pickles the per-actor detectors as tuples (``slot_state.PackedSlots``):
an engine restored from it, or from a version-8 snapshot (dicts of slots) of the same state,
goes on exactly as the engine it was taken of, and the restored actors share their settings."""

from __future__ import annotations

import pickle
from typing import Any

from suptech.detector.logic import DetectionEngine
from suptech.detector.logic.leakage import _Actor
from suptech.detector.logic.slot_state import PackedSlots
from suptech.v1 import telemetry_pb2

from perf.detector_decode import engine_with_actors, version8_snapshot
from simulators.scenario import generate


def _run(engine: DetectionEngine, envs: list[telemetry_pb2.TelemetryEnvelope]) -> list[Any]:
    """Every finding and every published score of ``envs``, in order."""
    out: list[Any] = []
    for env in envs:
        out.extend(f.SerializeToString() for f in engine.process(env))
        out.extend(repr(s) for s in engine.scores.take())
    return out


def _halves() -> tuple[DetectionEngine, list[telemetry_pb2.TelemetryEnvelope]]:
    """An engine that has seen the first half of a scenario (with actors of every kind:
    spread, drift, partner ratios) and the second half, still to come."""
    sc = generate(seed=7, days=3)
    envs = list(sc.envelopes())
    engine = engine_with_actors(200)
    for test in sc.registry:
        engine.upsert_sandbox_test(test)
    half = len(envs) // 2
    _run(engine, envs[:half])
    return engine, envs[half:]


def test_an_engine_restored_from_either_version_goes_on_as_the_original() -> None:
    engine, rest = _halves()
    new, old = engine.snapshot(), version8_snapshot(engine)
    assert pickle.loads(new)[0] == 9 and pickle.loads(old)[0] == 8
    assert b"_rebuild" in new and b"_rebuild" not in old
    kinds = {type(v).__name__ for a in engine.leakage.actors.values() for v in _slots(a)}
    assert kinds >= {"AccessScorer", "LogVolume", "SlotRate", "SystemSpread", "DailyDrift"}
    from_new, from_old = DetectionEngine.restore(new), DetectionEngine.restore(old)
    expected = _run(engine, rest)
    assert len(expected) > 1000
    assert _run(from_new, rest) == expected
    assert _run(from_old, rest) == expected


def test_restored_actors_share_their_settings_and_rebuild_what_is_not_state() -> None:
    restored = DetectionEngine.restore(engine_with_actors(50).snapshot())
    a, b = list(restored.leakage.actors.values())[:2]
    assert isinstance(a.access, PackedSlots)
    assert a.read.alpha is b.read.alpha and a.access.features is b.access.features
    assert a.access._lay is b.access._lay and a.access._memo is None


def _slots(actor: _Actor) -> list[object]:
    return [getattr(actor, k) for k in _Actor.__slots__]
