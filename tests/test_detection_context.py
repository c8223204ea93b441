"""What institutions declare (windows, calendars, vouched streams), metric streams, conditions
and per-event scores, through the whole engine."""

from __future__ import annotations

import csv
import datetime
import math
import random
from pathlib import Path

import pytest
from google.protobuf import json_format
from suptech.detector.logic import DetectionEngine, EngineConfig
from suptech.detector.logic.calendar import BusinessCalendar
from suptech.detector.replay import main as replay_main
from suptech.detector.replay import replay
from suptech.v1 import findings_pb2
from suptech.v1 import telemetry_pb2 as T

S = 1_000_000_000
T0 = 1_790_000_000 * S
MIN = 60 * S
HOUR = 60 * MIN
F = findings_pb2


def envelope(eid: str, t: int, inst: str = "bank-1") -> T.TelemetryEnvelope:
    env = T.TelemetryEnvelope(event_id=eid, institution_id=inst)
    env.event_time.FromNanoseconds(t)
    return env


def posture(n: int, t: int, availability: float = 0.999) -> T.TelemetryEnvelope:
    env = envelope(f"p-{n}", t)
    env.it_posture.CopyFrom(
        T.ITPostureReport(
            system_id="core",
            tier=T.SYSTEM_TIER_CORE,
            availability=availability,
            latency_ms_p95=100.0,
            error_rate=0.001,
            interval_seconds=900,
        )
    )
    return env


def window(t0: int, t1: int, kind: int = T.WINDOW_KIND_MAINTENANCE) -> T.TelemetryEnvelope:
    env = envelope("w-chg-1", t0 - HOUR)
    w = env.maintenance
    w.window_id, w.kind, w.reason = "chg-1", kind, "DB upgrade"
    w.system_ids.append("core")
    w.start.FromNanoseconds(t0)
    w.end.FromNanoseconds(t1)
    return env


def metric(n: int, t: int, value: float, name: str = "cpu_utilization") -> T.TelemetryEnvelope:
    env = envelope(f"m-{name}-{n}", t)
    env.metrics.system_id = "core"
    env.metrics.interval_seconds = 300
    env.metrics.samples.add(name=name, unit="%", value=value)
    return env


def daily(i: int, rng: random.Random) -> float:
    """A busy-by-day CPU curve with noise, one sample every 5 minutes."""
    return 40.0 + 15.0 * math.sin(2 * math.pi * (i % 288) / 288) + rng.gauss(0, 1.5)


def metric_stream(days: int, anomaly: dict[int, float] | None = None) -> list[T.TelemetryEnvelope]:
    rng = random.Random(4)
    out = []
    for i in range(days * 288):
        v = daily(i, rng)
        out.append(metric(i, T0 + i * 5 * MIN, (anomaly or {}).get(i, v)))
    return out


def test_a_system_down_in_its_declared_change_window_is_no_finding_until_the_window_ends() -> None:
    reports = [posture(i, T0 + i * 15 * MIN) for i in range(8)]
    down_in = posture(8, T0 + 8 * 15 * MIN, availability=0.2)
    declared = window(T0 + 7 * 15 * MIN, T0 + 9 * 15 * MIN)
    outside = replay([*reports, down_in])
    assert [f.rule_id for f in outside if f.rule_id == "it.outage"] == ["it.outage"]
    # The announced work: quiet while the window lasts ...
    assert [f for f in replay([declared, *reports, down_in]) if f.rule_id == "it.outage"] == []
    # ... still down after it: reported, at full grade.
    still_down = [posture(9 + k, T0 + (9 + k) * 15 * MIN, availability=0.2) for k in range(3)]
    after = [
        f for f in replay([declared, *reports, down_in, *still_down]) if f.rule_id == "it.outage"
    ]
    assert len(after) == 1 and not after[0].declared_window_id
    assert after[0].event_time.ToNanoseconds() > T0 + 9 * 15 * MIN
    assert after[0].grade == [f for f in outside if f.rule_id == "it.outage"][0].grade


def test_a_batch_window_does_not_excuse_an_outage() -> None:
    reports = [posture(i, T0 + i * 15 * MIN) for i in range(8)]
    down = posture(8, T0 + 8 * 15 * MIN, availability=0.2)
    found = replay([window(T0, T0 + 3 * HOUR, T.WINDOW_KIND_BATCH), *reports, down])
    [outage] = [f for f in found if f.rule_id == "it.outage"]
    assert outage.declared_window_id == ""


def test_business_calendar_knows_holidays_and_make_up_days() -> None:
    cal = BusinessCalendar("Asia/Shanghai", ["2026-10-01", "2026-10-02"], ["2026-09-27"])

    def at(day: str, hour: int) -> int:
        local = datetime.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+08:00")
        return int(local.timestamp()) * S

    assert cal.slot(at("2026-10-01", 10)) == 34  # Thursday, but National Day: a rest day
    assert cal.slot(at("2026-09-27", 10)) == 10  # Sunday worked in exchange (调休)
    assert cal.slot(at("2026-09-28", 23)) == 23  # ordinary Monday
    assert cal.day_of_month(at("2026-09-30", 12)) == (30, 0)


def test_metric_spike_and_drop_are_each_one_condition_and_the_plain_stream_is_quiet() -> None:
    days = 6
    at = days * 288 - 200
    quiet = [f for f in replay(metric_stream(days)) if f.model_id == "metric.anomaly"]
    assert quiet == []
    for bad in (100.0, -5.0):  # a rise and a drop are both anomalous
        burst = {at + k: bad for k in range(24)}
        found = [f for f in replay(metric_stream(days, burst)) if f.model_id == "metric.anomaly"]
        onsets = [f for f in found if f.phase == F.PHASE_ONSET]
        assert len(onsets) == 1, [(f.phase, f.summary) for f in found]
        assert onsets[0].entity_id == "core/cpu_utilization"
        assert onsets[0].contributions[0].feature == "cpu_utilization"
        assert all(f.condition_id == onsets[0].condition_id for f in found)


def test_metric_stream_silent_while_heartbeats_go_on_is_reported() -> None:
    events = metric_stream(1)[:100]
    last = events[-1].event_time.ToNanoseconds()
    for k in range(1, 40):
        hb = envelope(f"hb-{k}", last + k * 5 * MIN)
        hb.heartbeat.source_id, hb.heartbeat.interval_seconds = "core", 300
        events.append(hb)
    found = replay(events)
    assert [f.entity_id for f in found if f.rule_id == "silence.metrics"] == ["core"]
    # A heartbeat that vouches for the metrics stream keeps it alive (the SDK's own exporter).
    for hb in events[100:]:
        hb.heartbeat.vouches_for.append("metrics:core")
    assert [f for f in replay(events) if f.rule_id == "silence.metrics"] == []


def test_replay_writes_one_calibrated_score_per_sample(tmp_path: Path) -> None:
    src = tmp_path / "telemetry.jsonl"
    events = metric_stream(2, {500: 400.0})
    src.write_text(
        "".join(json_format.MessageToJson(e, indent=None) + "\n" for e in events), "utf-8"
    )
    out, scores = tmp_path / "findings.jsonl", tmp_path / "scores.csv"
    assert replay_main([str(src), "--out", str(out), "--scores", str(scores)]) == 0
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == len(events)
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    top = max(rows, key=lambda r: float(r["score"]))
    assert top["event_id"] == "m-cpu_utilization-500" and top["alarm"] == "1"


def test_scores_are_not_kept_in_snapshots_and_conditions_survive_them() -> None:
    engine = DetectionEngine(EngineConfig())
    for env in metric_stream(3, {800 + k: 100.0 for k in range(5)})[:810]:
        engine.process(env)
    assert engine.stats()["open_conditions"] == 1
    restored = DetectionEngine.restore(engine.snapshot())
    assert restored.take_scores() == [] and restored.stats()["open_conditions"] == 1
    assert len(engine.take_scores()) == 810


def test_metric_anomaly_inside_a_declared_window_on_its_system_is_no_finding() -> None:
    days = 6
    at = days * 288 - 200
    burst = {at + k: 100.0 for k in range(24)}
    start, end = T0 + (at - 6) * 5 * MIN, T0 + (at + 30) * 5 * MIN
    for kind in (T.WINDOW_KIND_MAINTENANCE, T.WINDOW_KIND_BATCH):
        engine = DetectionEngine()
        found = replay([window(start, end, kind), *metric_stream(days, burst)], engine=engine)
        assert [f for f in found if f.model_id == "metric.anomaly"] == []
        assert engine.stats()["metric_findings_in_declared_windows"] >= 1


def test_a_declared_calendar_gives_rest_days_their_own_metric_model() -> None:
    cal = envelope("cal-1", T0 - HOUR)
    cal.calendar.time_zone = "Asia/Shanghai"
    engine = DetectionEngine()
    replay([cal, *metric_stream(8)], engine=engine)
    [stream] = engine.metrics.streams.values()
    assert stream.rest is not None and stream.rest.n > 0 and stream.model.n > stream.rest.n
    plain = DetectionEngine()
    replay(metric_stream(8), engine=plain)
    assert next(iter(plain.metrics.streams.values())).rest is None


def test_unvalidated_bad_context_and_metrics_are_refused_with_a_reason() -> None:
    # What the gateway refuses can still come from a replayed file: a clear ValueError, which
    # the worker dead-letters and the replay reports, and nothing learned from it.
    engine = DetectionEngine()
    bad = metric(1, T0, 5.0)
    bad.metrics.samples.add(name="errors", value=float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        engine.process(bad)
    assert engine.stats()["metric_streams"] == 0
    for n, zone in enumerate(("Mars/Olympus", "America")):
        cal = envelope(f"cal-x{n}", T0)
        cal.calendar.time_zone = zone
        with pytest.raises(ValueError, match="time zone"):
            engine.process(cal)


DAY = 24 * HOUR
# Local midnight (UTC+8) of Monday 2026-09-21, the day T0 falls on.
MONDAY = T0 - (22 * HOUR + 13 * MIN + 20 * S)


def shaped(i: int, t: int, rng: random.Random, weekend_shape: bool) -> float:
    """Weekday: office hours load; weekend: customers all day, higher and flat."""
    if weekend_shape:
        return 70.0 + rng.gauss(0, 1.5)
    return daily(i, rng)


def week_stream(days: int, weekend_like: set[int], spike_day: int | None = None) -> list:
    """A stream shaped by the day of the week; the days in ``weekend_like`` look like weekends
    whatever day they are; a sample of ``spike_day`` at noon is far beyond both shapes."""
    rng = random.Random(8)
    cal = envelope("cal-1", MONDAY - HOUR)
    cal.calendar.time_zone = "Asia/Shanghai"
    cal.calendar.working_days.append("2026-10-10")  # a Saturday, worked: day 19
    out = [cal]
    for i in range(days * 288):
        t = MONDAY + i * 5 * MIN
        day = i // 288
        weekend = day % 7 >= 5 and day != 19
        v = shaped(i, t, rng, weekend or day in weekend_like)
        if day == spike_day and i % 288 == 144:
            v = 250.0
        out.append(metric(i, t, v))
    return out


def metric_findings_on(events: list, day: int) -> list[findings_pb2.Finding]:
    found = replay(events, engine=DetectionEngine())
    return [
        f
        for f in found
        if f.model_id == "metric.anomaly"
        and f.phase == findings_pb2.PHASE_ONSET
        and MONDAY + day * DAY <= f.event_time.ToNanoseconds() < MONDAY + (day + 1) * DAY
    ]


def test_a_make_up_day_shaped_like_a_weekend_is_no_finding_but_a_spike_on_it_is() -> None:
    # Customers keep their weekend on the worked Saturday: explained by the rest-day model.
    assert metric_findings_on(week_stream(20, weekend_like={19}), 19) == []
    # A spike beyond both kinds of day on that Saturday is still found.
    assert metric_findings_on(week_stream(20, weekend_like={19}, spike_day=19), 19)
    # An ordinary Wednesday shaped like a weekend is not excused.
    assert metric_findings_on(week_stream(20, weekend_like={16}), 16)
