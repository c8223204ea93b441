"""Sandbox family: registered boundaries as hard rules, surges relative to users."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from suptech.detector.logic.calendar import InstitutionContext
from suptech.detector.logic.candidate import Candidate, grade_for
from suptech.detector.logic.config import DAY_NS, HOUR_NS, EngineConfig
from suptech.detector.logic.count_surge import CountSurge
from suptech.detector.logic.robust_zscore import RobustZScore
from suptech.detector.logic.threshold import update_quantile
from suptech.v1 import findings_pb2, sandbox_pb2, telemetry_pb2

__all__ = ["SandboxFamily"]

FAMILY = findings_pb2.FAMILY_SANDBOX
Emit = Callable[[Candidate], None]


# Grades of a count surge by its tail probability.
_SURGE_TAILS = (
    (1e-12, findings_pb2.GRADE_MAJOR),
    (1e-8, findings_pb2.GRADE_SIGNIFICANT),
)


class _App:
    __slots__ = ("surge", "q", "days", "counts")

    def __init__(self) -> None:
        self.surge = RobustZScore(alpha=0.05, clip=3.0, floor=0.3)
        self.q = 0.0
        # local day -> amount reported that day (fen); a few recent days for late reports
        self.days: dict[int, int] = {}
        self.counts = _counts()

    def __setstate__(self, state: Any) -> None:
        # Checkpoints from before the count surges start them afresh.
        self.counts = _counts()
        slots = state[1] if isinstance(state, tuple) else state
        for key, value in (slots or {}).items():
            setattr(self, key, value)


def _counts() -> dict[str, CountSurge]:
    """One count model per field of the report that counts trouble."""
    return {"complaints": CountSurge(), "incidents": CountSurge()}


class SandboxFamily:
    context: InstitutionContext | None = None

    def __init__(self, cfg: EngineConfig, context: InstitutionContext | None = None) -> None:
        self.cfg = cfg
        # Business calendars (the local hour of a report); the engine's, shared.
        self.context = context
        self.tests: dict[str, sandbox_pb2.SandboxTest] = {}
        self.apps: dict[tuple[str, str], _App] = {}

    def stats(self) -> dict[str, int]:
        return {"apps": len(self.apps), "sandbox_tests": len(self.tests)}

    def upsert(self, test: sandbox_pb2.SandboxTest) -> None:
        copy = sandbox_pb2.SandboxTest()
        copy.CopyFrom(test)
        self.tests[test.test_id] = copy

    def process(self, env: telemetry_pb2.TelemetryEnvelope, t: int, emit: Emit) -> None:
        cfg = self.cfg
        rep = env.sandbox
        inst_id = env.institution_id
        app_id = rep.app_id
        eid = env.event_id

        def rule(rule_id: str, observed: float, limit: float, grade: int, summary: str) -> None:
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "app",
                    app_id,
                    rule_id,
                    True,
                    observed,
                    limit,
                    grade,
                    summary,
                    t,
                    [eid],
                    [(rule_id.split(".")[-1], observed, limit, 1.0)],
                )
            )

        test = self.tests.get(rep.test_id)
        if test is None or test.institution_id != inst_id:
            rule(
                "sandbox.unregistered_test",
                1.0,
                0.0,
                findings_pb2.GRADE_SIGNIFICANT,
                f"App {app_id} reports under test {rep.test_id!r}, not registered to this "
                f"institution",
            )
        else:
            start = test.start_time.ToNanoseconds() if test.HasField("start_time") else None
            end = test.end_time.ToNanoseconds() if test.HasField("end_time") else None
            if (start is not None and t < start) or (end is not None and t > end):
                rule(
                    "sandbox.outside_period",
                    float(t),
                    float(end or start or 0),
                    findings_pb2.GRADE_SIGNIFICANT,
                    f"App {app_id} operating outside its approved test period",
                )
            if test.user_cap and rep.cumulative_users > test.user_cap:
                rule(
                    "sandbox.user_cap",
                    float(rep.cumulative_users),
                    float(test.user_cap),
                    findings_pb2.GRADE_MAJOR,
                    f"App {app_id} has {rep.cumulative_users} users, cap {test.user_cap}",
                )
            cap = test.single_amount_cap_fen
            if cap and rep.max_transaction_amount_fen > cap:
                rule(
                    "sandbox.single_amount_cap",
                    float(rep.max_transaction_amount_fen),
                    float(cap),
                    findings_pb2.GRADE_MAJOR,
                    f"App {app_id} made a transaction of {rep.max_transaction_amount_fen / 100:.2f}"
                    f" CNY, cap {cap / 100:.2f}",
                )
            if test.approved_features:
                extra = sorted(set(rep.features_in_use) - set(test.approved_features))
                if extra:
                    rule(
                        "sandbox.unapproved_feature",
                        float(len(extra)),
                        0.0,
                        findings_pb2.GRADE_MAJOR,
                        f"App {app_id} uses features not approved: {', '.join(extra[:5])}",
                    )
        app = self.apps.get((inst_id, app_id))
        if app is None:
            app = self.apps[(inst_id, app_id)] = _App()
        if test is not None and test.daily_amount_cap_fen:
            day = (t // HOUR_NS + cfg.utc_offset_hours) // 24
            total = app.days.get(day, 0) + rep.transaction_amount_fen
            app.days[day] = total
            for d in [d for d in app.days if d < day - 3]:
                del app.days[d]
            cap = test.daily_amount_cap_fen
            if total > cap:
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "app",
                        app_id,
                        "sandbox.daily_amount_cap",
                        True,
                        float(total),
                        float(cap),
                        findings_pb2.GRADE_MAJOR,
                        f"App {app_id} moved {total / 100:.2f} CNY in one day, cap {cap / 100:.2f}",
                        t,
                        [eid],
                        [("daily_amount_fen", float(total), float(cap), 1.0)],
                        basis=f"day{day}",
                    )
                )

        self._count_surges(app, rep, inst_id, app_id, t, eid, emit)
        # Surges: complaints, incidents and losses per active user against the app's own rates.
        users = max(rep.active_users, 1)
        x = {
            "complaints_per_1k_users": math.log1p(1000.0 * rep.complaints / users),
            "incidents_per_1k_users": math.log1p(1000.0 * rep.incidents / users),
            "loss_fen_per_user": math.log1p(rep.fund_loss_fen / users),
        }
        score = app.surge.score_one(x)
        thr = max(cfg.z_threshold, app.q)
        count = rep.complaints + rep.incidents
        if (
            app.surge.n >= cfg.warmup_events
            and score > thr
            and (count >= cfg.surge_min_count or rep.fund_loss_fen > 0)
        ):
            contrib = app.surge.contributions(x)
            emit(
                Candidate(
                    FAMILY,
                    inst_id,
                    "app",
                    app_id,
                    "sandbox.surge",
                    False,
                    score,
                    thr,
                    grade_for(score, thr),
                    f"Surge at {app_id}: {rep.complaints} complaints, {rep.incidents} incidents, "
                    f"{rep.fund_loss_fen / 100:.2f} CNY losses for {rep.active_users} active users",
                    t,
                    [eid],
                    [
                        (k, math.expm1(x[k]), math.expm1(app.surge.baseline(k)), v)
                        for k, v in contrib.items()
                    ],
                )
            )
            return
        app.surge.learn_one(x)
        if app.surge.n > cfg.warmup_events:
            app.q = update_quantile(app.q, score, cfg.false_alarm_budget, 0.05)

    def _count_surges(
        self,
        app: _App,
        rep: telemetry_pb2.SandboxMetricsReport,
        inst_id: str,
        app_id: str,
        t: int,
        eid: str,
        emit: Emit,
    ) -> None:
        """Complaints and incidents against their expected counts for the users active: a small
        app's slow surge over a day, a large app's proportional one within hours."""
        ctx = self.context
        if ctx is None:
            hour = (t // HOUR_NS + self.cfg.utc_offset_hours) % 24
        else:
            hour = ctx.calendar(inst_id).local(t).hour
        # The user base: an hour's share of it that complains is what the hour profile learns.
        users = rep.cumulative_users or rep.active_users or 1
        for name, count in (("complaints", rep.complaints), ("incidents", rep.incidents)):
            det = app.counts[name]
            x = {"count": count, "exposure": users, "slot": hour}
            score = det.score_one(x)
            if det.alarm(score):
                tail = max(1.0 - score, 0.0)
                grade = findings_pb2.GRADE_GENERAL
                for bound, g in _SURGE_TAILS:
                    if tail <= bound:
                        grade = g
                        break
                emit(
                    Candidate(
                        FAMILY,
                        inst_id,
                        "app",
                        app_id,
                        "sandbox.count_surge",
                        False,
                        score,
                        1.0 - det.alpha,
                        grade,
                        f"Surge of {name} at {app_id}: {det.observed:.0f} in recent reports "
                        f"where {det.expected:.1f} were expected for {users} users "
                        f"(tail probability {tail:.1e})",
                        t,
                        [eid],
                        [(name, det.observed, det.expected, 1.0)],
                    )
                )
            det.learn_one(x)


_ = DAY_NS
