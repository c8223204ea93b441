"""Supervisors' verdicts change what the detector reports: engine rules first, then the worker."""

from __future__ import annotations

import pickle
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from suptech.common.topics import DATA_ACCESS, DEAD_LETTER, FEEDBACK, FINDINGS, topic_name
from suptech.detector.checkpoint import CheckpointStore
from suptech.detector.logic import DetectionEngine
from suptech.detector.processing import DetectorCore
from suptech.v1 import alerts_pb2, findings_pb2
from suptech.v1 import telemetry_pb2 as T

from tests.test_detector_service import Worker, bundle, findings_of, produce, read_until

S = 1_000_000_000
HOUR = 3600 * S
DAY = 24 * HOUR
T0 = 1_790_000_000 * S
INST = "bank-1"
ALICE, BOB = "a" * 64, "b" * 64


def access(
    eid: str,
    t: int,
    actor: str = ALICE,
    records: int = 3,
    dest: int = T.DESTINATION_KIND_INTERNAL,
    c3: int = 0,
    inst: str = INST,
) -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=eid, institution_id=inst)
    env.event_time.FromNanoseconds(t)
    env.data_access.CopyFrom(
        T.DataAccessEvent(
            system_id="core",
            actor_pseudonym=actor,
            channel=T.CHANNEL_CONSOLE,
            operation=T.OPERATION_EXPORT if dest != T.DESTINATION_KIND_INTERNAL else 0,
            records=records,
            bytes_out=records * 500,
            destination_kind=dest,
            destination_pseudonym="d" * 16 if dest != T.DESTINATION_KIND_INTERNAL else "",
            destination_country="SG" if dest == T.DESTINATION_KIND_CROSS_BORDER else "",
            fields=T.FieldsByClass(c2=2, c3=c3),
        )
    )
    return env


def office_days(actors: tuple[str, ...] = (ALICE,), days: int = 3) -> list[T.TelemetryEnvelope]:
    """Each actor queries a few records every 10 minutes in office hours (UTC+8 09-18)."""
    rng = random.Random(5)
    out = []
    for d in range(days):
        for m in range(0, 9 * 60, 10):
            t = T0 + d * DAY + HOUR + m * 60 * S
            for a in actors:
                out.append(access(f"{a[:1]}-{d}-{m}", t, actor=a, records=rng.randint(1, 6)))
    return out


# A little after the office stream: spikes of a few hundred records, far from the coalescing
# window of one another.
SPIKE_T = T0 + 3 * DAY


def engine_after(actors: tuple[str, ...] = (ALICE,)) -> DetectionEngine:
    engine = DetectionEngine()
    for env in office_days(actors):
        assert engine.process(env) == []
    return engine


def spike(
    engine: DetectionEngine, tag: str, t: int, actor: str = ALICE, records: int = 300
) -> list[findings_pb2.Finding]:
    return [
        f
        for f in engine.process(access(f"spike-{tag}-{actor[:1]}", t, actor, records))
        # The clear of an earlier condition is not a new alarm.
        if f.model_id == "leak.actor_volume" and f.phase != findings_pb2.PHASE_CLEAR
    ]


def verdict(
    alert_id: str,
    v: int,
    finding: findings_pb2.Finding | None = None,
    detector: str = "leak.actor_volume",
    actor: str = ALICE,
) -> alerts_pb2.Feedback:
    return alerts_pb2.Feedback(
        alert_id=alert_id,
        verdict=v,  # type: ignore[arg-type]
        institution_id=INST,
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        entity_kind="actor",
        entity_id=actor,
        detector_id=detector,
        finding_ids=[finding.finding_id] if finding is not None else [],
        actor="supervisor-1",
    )


# ---- unit: the engine ------------------------------------------------------------------------


def test_false_positive_mutes_repeats_of_that_level_for_that_entity_only_then_wears_off() -> None:
    engine = engine_after((ALICE, BOB))
    [first] = spike(engine, "1", SPIKE_T)
    assert first.score < 1.5 * first.threshold  # within one false-positive step
    engine.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_FALSE_POSITIVE, first))

    # The same export again, a coalescing window later: quiet for Alice, still reported for Bob.
    assert spike(engine, "2", SPIKE_T + 7 * HOUR) == []
    assert len(spike(engine, "2", SPIKE_T + 7 * HOUR + S, actor=BOB)) == 1
    # Far larger than what the supervisor called a false positive: reported.
    assert len(spike(engine, "3", SPIKE_T + 14 * HOUR, records=20_000)) == 1
    # Five weeks of event time later the extra tolerance has decayed away.
    assert len(spike(engine, "4", SPIKE_T + 35 * DAY)) == 1
    stats = engine.stats()
    assert stats["feedback_applied"] == 1 and stats["findings_muted_by_feedback"] == 1


def test_the_same_verdict_twice_changes_nothing_more() -> None:
    engine = engine_after()
    [first] = spike(engine, "1", SPIKE_T)
    fb = verdict("alert-1", alerts_pb2.VERDICT_FALSE_POSITIVE, first)
    engine.apply_feedback(fb)
    engine.apply_feedback(fb)
    # One step of 1.5 covers 300 records; two steps (2.25) would also cover 2,000.
    big = spike(engine, "2", SPIKE_T + 7 * HOUR, records=2_000)
    assert len(big) == 1 and big[0].score > 1.5 * big[0].threshold
    stats = engine.stats()
    assert (stats["feedback_applied"], stats["feedback_ignored"]) == (1, 1)


def test_benign_covers_the_reported_level_even_far_past_the_threshold() -> None:
    engine = engine_after()
    [first] = spike(engine, "1", SPIKE_T, records=2_000)
    assert first.score > 1.5 * first.threshold  # one false-positive step would not cover it
    engine.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_BENIGN, first))
    assert spike(engine, "2", SPIKE_T + 7 * HOUR, records=2_000) == []
    # Still within the cap: an export a hundred times larger is reported.
    assert len(spike(engine, "3", SPIKE_T + 14 * HOUR, records=200_000)) == 1


def test_hard_rules_keep_alerting_whatever_the_verdict() -> None:
    engine = engine_after()
    out = T.DESTINATION_KIND_CROSS_BORDER

    def c3_rules(eid: str, t: int) -> list[str]:
        return [f.rule_id for f in engine.process(access(eid, t, records=50, dest=out, c3=2))]

    assert "leak.c3_outbound" in c3_rules("c3-1", SPIKE_T)
    for i, v in enumerate((alerts_pb2.VERDICT_FALSE_POSITIVE, alerts_pb2.VERDICT_BENIGN)):
        engine.apply_feedback(verdict(f"alert-c3-{i}", v, detector="leak.c3_outbound"))
    assert "leak.c3_outbound" in c3_rules("c3-2", SPIKE_T + 7 * HOUR)
    stats = engine.stats()
    assert (stats["feedback_applied"], stats["feedback_ignored"]) == (0, 2)


def test_true_positive_grades_repeats_up_and_overrides_an_earlier_false_positive() -> None:
    engine = engine_after()
    [first] = spike(engine, "1", SPIKE_T)
    engine.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_FALSE_POSITIVE, first))
    assert spike(engine, "2", SPIKE_T + 7 * HOUR) == []
    # The supervisor reverses the verdict on the same alert: the incident is real.
    engine.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_TRUE_POSITIVE, first))
    [repeat] = spike(engine, "3", SPIKE_T + 14 * HOUR)
    assert repeat.grade == first.grade + 1


def test_true_positive_keeps_the_incident_out_of_the_baseline() -> None:
    def drift(engine: DetectionEngine) -> list[findings_pb2.Finding]:
        # After the confirmed spike: a day of exports well above normal, each under the
        # threshold, then the spike's size again.
        t = SPIKE_T + HOUR
        for i in range(60):
            spike(engine, f"drift-{i}", t + i * 10 * 60 * S, records=40)
        return spike(engine, "again", SPIKE_T + 13 * HOUR)

    learned = engine_after()
    [first] = spike(learned, "1", SPIKE_T)
    confirmed = engine_after()
    spike(confirmed, "1", SPIKE_T)
    confirmed.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_TRUE_POSITIVE, first))
    assert drift(learned) == []  # the drift became this actor's normal
    assert len(drift(confirmed)) == 1


def test_feedback_survives_a_snapshot_and_old_snapshots_still_load() -> None:
    engine = engine_after()
    [first] = spike(engine, "1", SPIKE_T)
    engine.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_FALSE_POSITIVE, first))
    restored = DetectionEngine.restore(engine.snapshot())
    assert restored.stats()["feedback_applied"] == 1
    assert spike(restored, "2", SPIKE_T + 7 * HOUR) == []
    restored.apply_feedback(verdict("alert-1", alerts_pb2.VERDICT_FALSE_POSITIVE, first))
    assert restored.stats()["feedback_ignored"] == 1
    # A checkpoint written before feedback existed (version 2) resumes with no verdicts applied.
    state = dict(engine.__dict__)
    del state["feedback"]
    state["_out"] = []
    older = DetectionEngine.restore(pickle.dumps((2, state)))
    assert older.stats()["feedback_applied"] == 0
    assert len(spike(older, "2", SPIKE_T + 7 * HOUR)) == 1


# ---- the service: feedback records ---------------------------------------------------------


STATE_KEY = b"test-state-key-0123456789abcdef-0123"


def core_for(tmp_path: Path) -> DetectorCore:
    return DetectorCore.start(
        CheckpointStore(tmp_path / "cp", STATE_KEY),
        {"telemetry.data_access.v1"},
        "registry.sandbox.v1",
        feedback_topic="feedback.v1",
    )


def test_feedback_records_reach_the_engine_and_bad_ones_are_dead_lettered(
    tmp_path: Path,
) -> None:
    core = core_for(tmp_path)
    fb = verdict("alert-1", alerts_pb2.VERDICT_FALSE_POSITIVE)
    assert core.handle("feedback.v1", 0, 0, b"alert-1", fb.SerializeToString()).dead_letters == []
    assert core.engine.stats()["feedback_applied"] == 1
    # Redelivered after a crash: applied once.
    core.handle("feedback.v1", 0, 1, b"alert-1", fb.SerializeToString())
    assert core.engine.stats()["feedback_applied"] == 1

    [bad] = core.handle("feedback.v1", 0, 2, b"x", b"\xff\xff not a verdict").dead_letters
    assert (bad.reason, bad.source_topic, bad.value) == (
        "undecodable_feedback",
        "feedback.v1",
        b"\xff\xff not a verdict",
    )
    anonymous = alerts_pb2.Feedback(verdict=alerts_pb2.VERDICT_BENIGN, institution_id=INST)
    [bad] = core.handle("feedback.v1", 0, 3, None, anonymous.SerializeToString()).dead_letters
    assert bad.reason == "incomplete_feedback"
    # Verdicts are engine state: a restored checkpoint still knows them, and the offsets.
    restored = DetectorCore.resume(
        core.checkpoint(), "test", {"telemetry.data_access.v1"}, "registry.sandbox.v1"
    )
    assert restored.engine.stats()["feedback_applied"] == 1
    assert restored.handle("feedback.v1", 0, 3, None, b"").skipped


# ---- integration: a real worker on the real broker -----------------------------------------


@pytest.fixture
def worker(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(kafka_bootstrap, topic_prefix, tmp_path / "state", tmp_path / "worker.log")
    yield w
    if w.proc is not None and w.proc.poll() is None:
        w.kill(signal.SIGTERM)


def volume_findings(
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]], actor: str
) -> list[findings_pb2.Finding]:
    return [
        f
        for f in findings_of(records)
        if f.model_id == "leak.actor_volume" and f.entity_id == actor
    ]


@pytest.mark.integration
def test_worker_stops_reporting_what_a_supervisor_called_a_false_positive(
    kafka_bootstrap: str, topic_prefix: str, worker: Worker
) -> None:
    p = topic_prefix
    da, findings = topic_name(DATA_ACCESS, p), topic_name(FINDINGS, p)
    key = INST.encode()
    worker.start()
    # Alice and Bob share a routine, then both export 300 records.
    first_spikes = [access(f"spike-1-{a[:1]}", SPIKE_T, a, 300) for a in (ALICE, BOB)]
    history = office_days((ALICE, BOB))
    produce(
        kafka_bootstrap,
        [(da, key, bundle(history[i : i + 100], INST)) for i in range(0, len(history), 100)]
        + [(da, key, bundle(first_spikes, INST))],
    )
    found = read_until(
        kafka_bootstrap,
        findings,
        lambda rs: volume_findings(rs, ALICE) and volume_findings(rs, BOB),
    )
    [alice_first] = volume_findings(found, ALICE)

    # The alert service publishes the supervisor's verdict on Alice's alert.
    fb = verdict("alert-alice", alerts_pb2.VERDICT_FALSE_POSITIVE, alice_first)
    produce(kafka_bootstrap, [(topic_name(FEEDBACK, p), b"alert-alice", fb.SerializeToString())])
    produce(kafka_bootstrap, [(topic_name(FEEDBACK, p), b"junk", b"\xff not a verdict")])
    worker.wait_for(r'"feedback_applied": 1', 60)

    # The same exports again, Alice's first in the bundle: once Bob's repeat is out, Alice's
    # has been judged, and muted.
    again = [access(f"spike-2-{a[:1]}", SPIKE_T + 7 * HOUR, a, 300) for a in (ALICE, BOB)]
    produce(kafka_bootstrap, [(da, key, bundle(again, INST))])
    found = read_until(kafka_bootstrap, findings, lambda rs: len(volume_findings(rs, BOB)) == 2)
    assert volume_findings(found, ALICE) == [alice_first]

    [(_, value, headers)] = read_until(
        kafka_bootstrap, topic_name(DEAD_LETTER, p), lambda rs: len(rs) >= 1
    )
    assert value == b"\xff not a verdict"
    assert dict(headers)["x-suptech-reason"] == b"undecodable_feedback"
    assert worker.kill(signal.SIGTERM) == 0
    stats = worker.last_stats("checkpoint written")
    assert stats["feedback_applied"] == 1 and stats["findings_muted_by_feedback"] == 1
