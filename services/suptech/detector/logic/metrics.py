"""Generic metric streams: every (system, component, metric name) modelled on its own.

Each stream has its own univariate model (:class:`MetricAnomaly`, with its defaults: one
configuration for every stream) that gives every sample a calibrated score in [0, 1] and raises
an alarm at the onset of an anomaly. Findings are those alarms, made one condition per stream by
the engine (onset, updates, clear).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from suptech.detector.logic.calendar import InstitutionContext
from suptech.detector.logic.candidate import Candidate
from suptech.detector.logic.config import EngineConfig
from suptech.detector.logic.idle import LastSeen
from suptech.detector.logic.metric_anomaly import MetricAnomaly
from suptech.detector.logic.scores import Score, ScoreLog
from suptech.v1 import findings_pb2, telemetry_pb2

__all__ = ["MetricsFamily", "stream_id"]

FAMILY = findings_pb2.FAMILY_IT_AUTONOMY
MODEL_ID = "metric.anomaly"
Emit = Callable[[Candidate], None]
_NS = 1_000_000_000
# On a make-up working day, the score a sample needs to be a finding: the chance that the
# stream, behaving as in its history, shows nothing this extreme in as many samples is 90 %.
_MAKEUP_SCORE = 0.9
# Grades by how rare the sample is: its per-sample tail probability.
_GRADE_TAILS = (
    (1e-7, findings_pb2.GRADE_MAJOR),
    (1e-6, findings_pb2.GRADE_SIGNIFICANT),
)


def stream_id(system_id: str, component: str, name: str) -> str:
    """Entity id of one metric stream: ``system/name`` or ``system/component/name``."""
    return f"{system_id}/{component}/{name}" if component else f"{system_id}/{name}"


class _Stream:
    """One metric stream: a model of its working days and, once one is seen, of its rest days
    (weekends and holidays of the calendar the institution declared; a make-up working day is a
    working day), each on the institution's local time of day. Without a declared calendar,
    one model on UTC time of day."""

    __slots__ = ("model", "rest", "unit", "n")

    def __init__(self, model: Any, unit: str) -> None:
        self.model = model
        self.rest: Any = None
        self.unit = unit
        self.n = 0


class MetricsFamily:
    def __init__(
        self, cfg: EngineConfig, scores: ScoreLog, context: InstitutionContext | None = None
    ) -> None:
        self.cfg = cfg
        self.scores = scores
        self.context = context or InstitutionContext(cfg.default_time_zone)
        # (institution, stream id) -> stream
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.seen: LastSeen[tuple[str, str]] = LastSeen()
        self.evicted = 0

    def stats(self) -> dict[str, int]:
        return {"metric_streams": len(self.streams), "metric_streams_evicted": self.evicted}

    def upgrade(self, now_ns: int) -> None:
        """Since snapshot version 7: when each stream was last seen (taken as ``now_ns``)."""
        if not hasattr(self, "seen"):
            self.seen = LastSeen()
            self.evicted = 0
            for key in self.streams:
                self.seen.touch(key, now_ns)

    def evict_idle(self, before_ns: int) -> int:
        """Forget streams without a sample since ``before_ns``; return how many."""
        n = 0
        for key in self.seen.pop_idle(before_ns):
            n += self.streams.pop(key, None) is not None
        self.evicted += n
        return n

    def process(self, env: telemetry_pb2.TelemetryEnvelope, t: int, emit: Emit) -> None:
        rep = env.metrics
        inst_id = env.institution_id
        # The gateway refuses these; a replayed file is not validated. One NaN or infinity would
        # leave a stream's model NaN for good: the report is refused whole, before any sample is
        # learned, so the caller can dead-letter the event with this reason.
        for sample in rep.samples:
            if not math.isfinite(sample.value):
                raise ValueError(f"metric {sample.name!r} has a non-finite value {sample.value}")
        # Only a calendar the institution declared splits its streams: guessing one would cut a
        # stream's history in two on data that follows no business week.
        cal = self.context.calendars.get(inst_id)
        local_s = t / _NS
        rest = makeup = False
        if cal is not None:
            offset = cal.local(t).utcoffset()
            local_s += offset.total_seconds() if offset is not None else 0.0
            rest = cal.is_rest_day(t)
            makeup = not rest and cal.is_makeup_day(t)
        for sample in rep.samples:
            self._sample(
                inst_id, rep.system_id, sample, env.event_id, t, local_s, rest, emit, makeup
            )

    def _sample(
        self,
        inst_id: str,
        system_id: str,
        sample: telemetry_pb2.MetricSample,
        eid: str,
        t: int,
        local_s: float,
        rest: bool,
        emit: Emit,
        makeup: bool = False,
    ) -> None:
        sid = stream_id(system_id, sample.component, sample.name)
        stream = self.streams.get((inst_id, sid))
        if stream is None:
            stream = self.streams[(inst_id, sid)] = _Stream(MetricAnomaly(), sample.unit)
        self.seen.touch((inst_id, sid), t)
        if rest:
            if stream.rest is None:
                stream.rest = MetricAnomaly()
            model = stream.rest
        else:
            model = stream.model
        x = {"t": local_s, "value": sample.value}
        expected = model.expected(x["t"])
        score, alarm = model.process_one(x)
        if makeup:
            score, alarm = _makeup_day(model, stream.rest, x, score, alarm)
        stream.n += 1
        thr = model.threshold
        self.scores.add(
            Score(
                inst_id,
                "metric",
                sid,
                MODEL_ID,
                eid,
                t,
                score,
                thr,
                sample.value,
                expected,
                model.flagged,
            )
        )
        if not alarm:
            return
        tail = model.tail_probability(score)
        grade = findings_pb2.GRADE_GENERAL
        for bound, g in _GRADE_TAILS:
            if tail <= bound:
                grade = g
                break
        direction = "above" if sample.value > expected else "below"
        unit = f" {stream.unit}" if stream.unit else ""
        emit(
            Candidate(
                FAMILY,
                inst_id,
                "metric",
                sid,
                MODEL_ID,
                False,
                score,
                thr,
                grade,
                f"{sample.name} of {system_id}"
                + (f" ({sample.component})" if sample.component else "")
                + f" at {sample.value:.6g}{unit}, {direction} the expected {expected:.6g}{unit} "
                f"(tail probability {tail:.1e})",
                t,
                [eid],
                [(sample.name, sample.value, expected, 1.0)],
            )
        )


def _makeup_day(
    work: MetricAnomaly, rest: MetricAnomaly | None, x: dict[str, float], score: float, alarm: bool
) -> tuple[float, bool]:
    """Judge a sample of a make-up working day, which the working-day model learns.

    The day is a working day for the institution's staff and often a weekend for its
    customers, and a day of its kind comes a few times a year: no model has its history. So
    what the rest-day model (once it has history) explains is no finding, and otherwise only an
    extreme the stream's whole history makes unlikely (score ``_MAKEUP_SCORE``, against the
    ordinary threshold) is one: the smaller score, and the alarm only if it clears both."""
    if rest is not None and rest.n >= rest.warmup:
        other = rest.score_one(x)
        if other < score:
            score = other
    if alarm and score < max(_MAKEUP_SCORE, work.threshold):
        # The working model opened a condition that this day does not bear out: none is open.
        work.flagged = False
        alarm = False
    return score, alarm
