"""Data leakage family: volume, data class and destination per actor and per system."""

from __future__ import annotations

import math
import zlib
from array import array
from collections.abc import Callable
from typing import Any

from river import stats

from suptech.detector.logic.access_scorer import AccessScorer
from suptech.detector.logic.candidate import Candidate, grade_for
from suptech.detector.logic.config import DAY_NS, HOUR_NS, EngineConfig
from suptech.detector.logic.cusum import CusumDrift
from suptech.detector.logic.hst import ScaledHalfSpaceTrees
from suptech.detector.logic.robust_zscore import RobustZScore
from suptech.detector.logic.scores import Score, ScoreLog
from suptech.detector.logic.threshold import update_quantile
from suptech.v1 import findings_pb2, telemetry_pb2

__all__ = ["LeakageFamily"]

FAMILY = findings_pb2.FAMILY_DATA_LEAKAGE
_OUTBOUND = frozenset(
    {
        telemetry_pb2.DESTINATION_KIND_PARTNER,
        telemetry_pb2.DESTINATION_KIND_EXTERNAL,
        telemetry_pb2.DESTINATION_KIND_CROSS_BORDER,
    }
)
_FOREIGN = frozenset(
    {telemetry_pb2.DESTINATION_KIND_EXTERNAL, telemetry_pb2.DESTINATION_KIND_CROSS_BORDER}
)
_MOVING_OPS = frozenset({telemetry_pb2.OPERATION_EXPORT, telemetry_pb2.OPERATION_TRANSFER})
_DEST_NAMES = {
    telemetry_pb2.DESTINATION_KIND_PARTNER: "partner",
    telemetry_pb2.DESTINATION_KIND_EXTERNAL: "external",
    telemetry_pb2.DESTINATION_KIND_CROSS_BORDER: "cross-border",
}
_MAX_DESTINATIONS = 50_000

Emit = Callable[[Candidate], None]


def _dest_key(pseudonym: str, country: str) -> int:
    # 64 bits of the HMAC are plenty to tell destinations apart and keep the set small.
    if not pseudonym:
        return zlib.crc32(country.encode())
    try:
        return int(pseudonym[:16], 16)
    except ValueError:
        return zlib.crc32(pseudonym.encode()) | (1 << 63)


class _Actor:
    """Compact per-actor state: a few floats, a 24-slot hour histogram, the daily drip sum."""

    __slots__ = (
        "read",
        "move",
        "q",
        "hours",
        "day",
        "day_out",
        "days",
        "drip",
        "frozen_until",
        "hour",
        "hour_n",
        "rate_mean",
        "rate_hours",
        "day_flagged",
        "access",
    )

    def __init__(self, cfg: EngineConfig) -> None:
        # Reading and moving data are different habits: one baseline each.
        self.read = RobustZScore(alpha=0.02, clip=3.0, floor=0.5)
        self.move: RobustZScore | None = None
        self.q = 0.0
        self.hours = array("H", bytes(48))
        self.day = -1
        self.day_out = 0.0
        self.days = 0
        self.drip = CusumDrift(feature="out", k=cfg.cusum_k, h=cfg.cusum_h, alpha=0.1, floor=1.0)
        self.frozen_until = 0
        # Events in the current clock hour, and the mean count over past active hours.
        self.hour = -1
        self.hour_n = 0
        self.rate_mean = 0.0
        self.rate_hours = 0
        # Today already produced a finding for this actor: its total is not a drip's evidence.
        self.day_flagged = False
        # Multivariate per-event score of the actor's accesses (the per-event anomaly score).
        self.access = AccessScorer()


class _System:
    __slots__ = ("vol", "q", "frozen_until")

    def __init__(self) -> None:
        self.vol = RobustZScore(alpha=0.01, clip=3.0, floor=0.5)
        self.q = 0.0
        self.frozen_until = 0


class _Institution:
    __slots__ = ("first_ns", "destinations", "hst", "hst_q", "hst_n")

    def __init__(self, cfg: EngineConfig, first_ns: int) -> None:
        self.first_ns = first_ns
        self.destinations: set[int] = set()
        self.hst: ScaledHalfSpaceTrees | None = None
        self.hst_q: Any = None
        self.hst_n = 0


class LeakageFamily:
    def __init__(self, cfg: EngineConfig, scores: ScoreLog | None = None) -> None:
        self.cfg = cfg
        self.scores = scores or ScoreLog(False)
        self.actors: dict[tuple[str, str], _Actor] = {}
        self.systems: dict[tuple[str, str], _System] = {}
        self.institutions: dict[str, _Institution] = {}

    def stats(self) -> dict[str, int]:
        return {"actors": len(self.actors), "data_systems": len(self.systems)}

    def upgrade(self) -> None:
        """Fill what a snapshot of version 3 or older lacks (the per-event access scorers)."""
        for actor in self.actors.values():
            if not hasattr(actor, "access"):
                actor.access = AccessScorer()

    def _access_score(
        self,
        env: telemetry_pb2.TelemetryEnvelope,
        actor: _Actor,
        t: int,
        outbound: bool,
        moving: bool,
        new_destination: bool,
        flagged: bool,
        emit: Emit,
    ) -> None:
        """Score the event against the actor's multivariate habit. Alarm only on data that moves
        (an export, a transfer, anything outbound) and that the other detectors of this event
        did not already report; learn only what was not flagged."""
        da = env.data_access
        f = da.fields
        x = {
            "records": float(da.records),
            "bytes_out": float(da.bytes_out),
            "bytes_in": float(da.bytes_in),
            "duration_s": da.duration_ms / 1000.0,
            "c1": float(f.c1),
            "c2": float(f.c2),
            "c3": float(f.c3),
            "outbound": 1.0 if outbound else 0.0,
            "new_destination": 1.0 if new_destination else 0.0,
        }
        scorer = actor.access
        score = scorer.score_one(x)
        thr = self.cfg.access_alarm_score
        alarm = moving and score >= thr and scorer.n >= scorer.warmup and not flagged
        actor_id = da.actor_pseudonym
        inst_id = env.institution_id
        self.scores.add(
            Score(
                inst_id, "actor", actor_id, "leak.access", env.event_id, t, score, thr,
                float(da.records), scorer.baseline("records"), alarm or flagged,
            )
        )  # fmt: skip
        if not (alarm or flagged):
            scorer.learn_one(x)
        if not alarm:
            return
        contrib = scorer.contributions(x)
        top = sorted(contrib.items(), key=lambda kv: -kv[1])[:3]
        emit(
            Candidate(
                FAMILY,
                inst_id,
                "actor",
                actor_id,
                "leak.access",
                False,
                score,
                thr,
                findings_pb2.GRADE_SIGNIFICANT
                if 1.0 - score < 1e-7
                else findings_pb2.GRADE_GENERAL,
                f"{_op_name(da.operation)} of {da.records} records ({da.bytes_out} bytes out) "
                f"from {da.system_id} unlike this actor's accesses, mostly in "
                + ", ".join(k for k, _ in top)
                + f" (tail probability {max(1.0 - score, 0.0):.1e})",
                t,
                [env.event_id],
                [(k, x.get(k, 0.0), scorer.baseline(k), w) for k, w in top],
            )
        )

    def process(self, env: telemetry_pb2.TelemetryEnvelope, t: int, emit: Emit) -> None:
        cfg = self.cfg
        da = env.data_access
        inst_id = env.institution_id
        eid = env.event_id
        actor_id = da.actor_pseudonym
        records = da.records
        bytes_out = da.bytes_out
        dk = da.destination_kind
        op = da.operation
        outbound = dk in _OUTBOUND
        c3 = da.fields.c3 > 0 or env.classification.data_class == telemetry_pb2.DATA_CLASS_C3

        inst = self.institutions.get(inst_id)
        if inst is None:
            inst = self.institutions[inst_id] = _Institution(cfg, t)

        # Hard rule: authentication-class data never leaves the institution.
        if c3 and outbound:
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "actor",
                    actor_id,
                    "leak.c3_outbound",
                    True,
                    float(da.fields.c3 or 1),
                    0.0,
                    findings_pb2.GRADE_CRITICAL,
                    f"C3 authentication data ({da.fields.c3} fields, {records} records) sent "
                    f"to a {_DEST_NAMES.get(dk, 'foreign')} destination from {da.system_id}",
                    t,
                    [eid],
                    [("c3_fields", float(da.fields.c3), 0.0, 1.0)],
                )
            )

        new_destination = False
        if dk in _FOREIGN:
            key = _dest_key(da.destination_pseudonym, da.destination_country)
            if key not in inst.destinations:
                new_destination = True
                if t - inst.first_ns >= DAY_NS:
                    cross = dk == telemetry_pb2.DESTINATION_KIND_CROSS_BORDER
                    country = da.destination_country or "?"
                    where = f"cross-border ({country})" if cross else "external"
                    emit(
                        Candidate(
                            FAMILY,
                            inst_id,
                            "actor",
                            actor_id,
                            "leak.new_destination",
                            True,
                            float(records),
                            0.0,
                            findings_pb2.GRADE_MAJOR if cross else findings_pb2.GRADE_SIGNIFICANT,
                            f"First {where} destination of the institution: {records} records "
                            f"from {da.system_id}",
                            t,
                            [eid],
                            [("records", float(records), 0.0, 1.0)],
                        )
                    )
                if len(inst.destinations) < _MAX_DESTINATIONS:
                    inst.destinations.add(key)

        x = {"records": math.log1p(records), "bytes": math.log1p(bytes_out)}
        actor = self.actors.get((inst_id, actor_id))
        if actor is None:
            actor = self.actors[(inst_id, actor_id)] = _Actor(cfg)
        frozen = t < actor.frozen_until
        moving = outbound or op in _MOVING_OPS
        if moving:
            if actor.move is None:
                actor.move = RobustZScore(alpha=0.05, clip=3.0, floor=0.5)
            vol = actor.move
            warm = vol.n >= cfg.warmup_moves
        else:
            vol = actor.read
            warm = vol.n >= cfg.warmup_events
        score = vol.score_one(x)
        thr = max(cfg.z_threshold, actor.q)
        flagged = False
        if warm and score > thr:
            flagged = True
            actor.frozen_until = t + cfg.coalesce_window_ns
            contrib = vol.contributions(x)
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "actor",
                    actor_id,
                    "leak.actor_volume",
                    False,
                    score,
                    thr,
                    grade_for(score, thr),
                    f"{_op_name(op)} of {records} records ({bytes_out} bytes) from "
                    f"{da.system_id}, about {math.expm1(vol.baseline('records')):.0f} "
                    f"normal for this actor",
                    t,
                    [eid],
                    [
                        (k, math.expm1(x[k]), math.expm1(vol.baseline(k)), v)
                        for k, v in contrib.items()
                    ],
                )
            )
        elif not frozen:
            vol.learn_one(x)
            if warm:
                actor.q = update_quantile(actor.q, score, cfg.false_alarm_budget, 0.05)

        abs_hour = t // HOUR_NS
        if abs_hour != actor.hour:
            if actor.hour_n and actor.hour >= 0 and abs_hour > actor.hour:
                limit = max(cfg.rate_min_events, cfg.rate_ratio * actor.rate_mean)
                # A flagged hour is not learned: scraping must not become the normal rate.
                if actor.hour_n <= limit or actor.rate_hours < cfg.rate_warmup_hours:
                    actor.rate_hours += 1
                    w = max(0.05, 1.0 / actor.rate_hours)
                    actor.rate_mean += w * (actor.hour_n - actor.rate_mean)
            if abs_hour > actor.hour:
                actor.hour = abs_hour
                actor.hour_n = 0
        if abs_hour == actor.hour:
            actor.hour_n += 1
            if actor.rate_hours >= cfg.rate_warmup_hours:
                limit = max(cfg.rate_min_events, cfg.rate_ratio * actor.rate_mean)
                if actor.hour_n > limit and actor.hour_n - 1 <= limit:
                    flagged = True
                    emit(
                        Candidate(
                            FAMILY,
                            inst_id,
                            "actor",
                            actor_id,
                            "leak.actor_rate",
                            False,
                            float(actor.hour_n),
                            limit,
                            grade_for(actor.hour_n, limit),
                            f"{actor.hour_n} data accesses within this hour from {da.system_id} "
                            f"(last {records} records), about {actor.rate_mean:.0f} an hour "
                            f"normal for this actor",
                            t,
                            [eid],
                            [("events_per_hour", float(actor.hour_n), actor.rate_mean, 1.0)],
                        )
                    )

        # Off-hours: an actor who never works at night sending data out at night (internal
        # night exports are maintenance, not exfiltration).
        local_hour = (abs_hour + cfg.utc_offset_hours) % 24
        hours = actor.hours
        if cfg.off_hours_start <= local_hour < cfg.off_hours_end:
            total = sum(hours)
            night = sum(hours[cfg.off_hours_start : cfg.off_hours_end])
            if (
                total >= cfg.warmup_events
                and night * 100 < total
                and outbound
                and records >= cfg.off_hours_min_records
            ):
                flagged = True
                actor.frozen_until = t + cfg.coalesce_window_ns
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "actor",
                        actor_id,
                        "leak.off_hours",
                        True,
                        float(records),
                        0.0,
                        findings_pb2.GRADE_SIGNIFICANT,
                        f"{_op_name(op)} of {records} records at {local_hour:02d}:00 local time "
                        f"by an actor with {night} of {total} past events at night",
                        t,
                        [eid],
                        [("night_share", 1.0, night / total, 1.0)],
                    )
                )
        if not flagged and not frozen:
            if hours[local_hour] == 65535:
                for i in range(24):
                    hours[i] //= 2
            hours[local_hour] += 1

        # Slow drip: records leaving the institution summed per local day, a CUSUM over the daily
        # totals (internal exports are how many people work, and too irregular a day to call).
        day = (abs_hour + cfg.utc_offset_hours) // 24
        if day > actor.day:
            if actor.day >= 0:
                self._close_days(inst_id, actor_id, actor, day, t, eid, emit)
            actor.day = day
            actor.day_out = 0.0
            actor.day_flagged = False
        if flagged or c3 and outbound or actor.frozen_until > t:
            actor.day_flagged = True
        if outbound and day == actor.day:
            actor.day_out += records

        self._access_score(
            env, actor, t, outbound, moving, new_destination, flagged or frozen, emit
        )
        self._system(inst_id, da.system_id, x, t, eid, records, op, vol.n, flagged, emit)
        if outbound:
            self._hst(inst, inst_id, actor_id, x, c3, dk, local_hour, t, eid, flagged, emit)

    def _close_days(
        self, inst_id: str, actor_id: str, actor: _Actor, day: int, t: int, eid: str, emit: Emit
    ) -> None:
        cfg = self.cfg
        # Days without events moved nothing; at most a week of them matters to the sum.
        gap = min(day - actor.day - 1, 7)
        # A day whose moves were already reported would only repeat that finding a day late.
        days = [0.0] * gap if actor.day_flagged else [actor.day_out] + [0.0] * gap
        for out in days:
            x = {"out": math.log1p(out)}
            score = actor.drip.score_one(x)
            actor.drip.learn_one(x)
            actor.days += 1
            if actor.days > cfg.warmup_days and score >= 1.0:
                actor.drip.reset()
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "actor",
                        actor_id,
                        "leak.slow_drip",
                        False,
                        score,
                        1.0,
                        grade_for(score, 1.0),
                        f"Outbound records have run above this actor's normal for days "
                        f"(yesterday {out:.0f}, normal {math.expm1(actor.drip.mean):.0f} a day)",
                        t,
                        [eid],
                        [("daily_outbound_records", out, math.expm1(actor.drip.mean), 1.0)],
                    )
                )

    def _system(
        self,
        inst_id: str,
        system_id: str,
        x: dict[str, float],
        t: int,
        eid: str,
        records: int,
        op: int,
        actor_n: int,
        actor_flagged: bool,
        emit: Emit,
    ) -> None:
        cfg = self.cfg
        sysm = self.systems.get((inst_id, system_id))
        if sysm is None:
            sysm = self.systems[(inst_id, system_id)] = _System()
        score = sysm.vol.score_one(x)
        thr = max(cfg.z_threshold, sysm.q)
        if sysm.vol.n >= cfg.warmup_events and score > thr:
            sysm.frozen_until = t + cfg.coalesce_window_ns
            # The actor's own model speaks for an actor with a history; the system covers a
            # first move.
            if actor_n == 0 and not actor_flagged:
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "system",
                        system_id,
                        "leak.system_volume",
                        False,
                        score,
                        thr,
                        grade_for(score, thr),
                        f"{_op_name(op)} of {records} records from {system_id}, far above "
                        f"its normal {math.expm1(sysm.vol.baseline('records')):.0f}",
                        t,
                        [eid],
                        [
                            (
                                "records",
                                float(records),
                                math.expm1(sysm.vol.baseline("records")),
                                1.0,
                            )
                        ],
                    )
                )
        elif t >= sysm.frozen_until:
            sysm.vol.learn_one(x)
            if sysm.vol.n > cfg.warmup_events:
                sysm.q = update_quantile(sysm.q, score, cfg.false_alarm_budget, 0.05)

    def _hst(
        self,
        inst: _Institution,
        inst_id: str,
        actor_id: str,
        x: dict[str, float],
        c3: bool,
        dk: int,
        hour: int,
        t: int,
        eid: str,
        flagged: bool,
        emit: Emit,
    ) -> None:
        cfg = self.cfg
        if not cfg.hst_enabled:
            return
        if inst.hst is None:
            inst.hst = ScaledHalfSpaceTrees(
                n_trees=cfg.hst_trees,
                height=cfg.hst_height,
                window_size=cfg.hst_window,
                seed=cfg.seed,
            )
            inst.hst_q = stats.Quantile(cfg.hst_quantile)
        hx = {**x, "dest": float(dk), "hour": float(hour), "c3": 1.0 if c3 else 0.0}
        score = inst.hst.score_one(hx)
        thr = inst.hst_q.get() if inst.hst_n >= cfg.hst_warmup else None
        if thr is not None and score > thr and score > 0.0:
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "actor",
                    actor_id,
                    "leak.hst",
                    False,
                    score,
                    thr,
                    findings_pb2.GRADE_GENERAL,
                    "Outbound transfer unlike the institution's recent outbound traffic",
                    t,
                    [eid],
                    [(k, v, 0.0, 1.0) for k, v in hx.items()],
                )
            )
            return
        if not flagged:
            inst.hst.learn_one(hx)
            inst.hst_q.update(score)
            inst.hst_n += 1


def _op_name(op: int) -> str:
    name = telemetry_pb2.Operation.Name(op) if op in telemetry_pb2.Operation.values() else "?"
    return name.removeprefix("OPERATION_").capitalize()
