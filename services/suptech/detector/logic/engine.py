"""The detection engine: one object holding every detector's state, driven by event time."""

from __future__ import annotations

import pickle

from suptech.detector.logic.autonomy import AutonomyFamily
from suptech.detector.logic.calendar import InstitutionContext
from suptech.detector.logic.candidate import Candidate, to_finding
from suptech.detector.logic.conditions import Conditions
from suptech.detector.logic.config import DAY_NS, MINUTE_NS, EngineConfig
from suptech.detector.logic.dedup import SeenEvents
from suptech.detector.logic.feedback import FeedbackMemory
from suptech.detector.logic.leakage import LeakageFamily
from suptech.detector.logic.metrics import MetricsFamily
from suptech.detector.logic.sandbox import SandboxFamily
from suptech.detector.logic.scores import Score, ScoreLog
from suptech.detector.logic.silence import SilenceWatch
from suptech.detector.logic.vendor_stage import VendorStage
from suptech.v1 import alerts_pb2, findings_pb2, sandbox_pb2, telemetry_pb2, vendor_facts_pb2

__all__ = ["DetectionEngine"]

# Raised whenever per-entity state changes shape: an older snapshot is refused, not half-loaded.
_SNAPSHOT_VERSION = 9
# Version 2 lacked the feedback memory, 3 the metric streams, conditions and declared context:
# they load with those empty. Version 4 held the data-leakage state of before the calendar.
# Version 5 remembered bare event ids: it loads with an empty memory of processed events.
# Version 6 did not know when entities were last seen: they load as seen at its last event.
# Up to version 7 the IT-autonomy family held the vendor state: it moves to the vendor stage.
# Version 8 pickled per-actor detectors as dicts of their slots (9: slot_state.PackedSlots).
_UPGRADABLE = {2, 3}
_NEW_DEDUP = {2, 3, 5}
# Findings of a system being down, which a maintenance or change window on it explains away.
_PLANNED_DOWNTIME = frozenset({"it.outage", "it.outage_cascade"})
_GRADE_DOWN: dict[int, int] = {
    findings_pb2.GRADE_CRITICAL: findings_pb2.GRADE_MAJOR,
    findings_pb2.GRADE_MAJOR: findings_pb2.GRADE_SIGNIFICANT,
    findings_pb2.GRADE_SIGNIFICANT: findings_pb2.GRADE_GENERAL,
}


class DetectionEngine:
    """Feed telemetry with :meth:`process`, move event time with :meth:`advance`.

    Everything is driven by event time, never the wall clock, so replaying recorded telemetry at
    any speed yields the same findings with the same ids. Processing is idempotent per
    (institution, ``event_id``) over ``dedup_horizon_ns`` of event time; an event is remembered
    only once processed, so one that raised is processed when it comes again. A statistical
    detector's alarms on one entity are one condition (:class:`Conditions`): a finding at onset,
    an update when the grade rises, a clear once it has been quiet for ``condition_clear_ns``.
    Repeated rule findings are coalesced, at most one per coalescing window. Ids derive from the
    detector, the entity and the onset or window, so a replay or a redelivery makes the same ids.
    Findings whose evidence falls in a window the institution declared (maintenance, change,
    batch) are graded down and say so. Every scored event leaves a :class:`Score` in
    :attr:`scores` for the caller to take. Vendor findings (concentration, shared outages) come
    from :attr:`vendor_stage`, fed the IT-autonomy family's vendor facts as they are made; with
    ``EngineConfig.external_vendor_stage`` the facts wait in :meth:`take_vendor_facts` instead.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = cfg = config or EngineConfig()
        self.scores = ScoreLog(cfg.record_scores)
        self.context = InstitutionContext(cfg.default_time_zone)
        self.leakage = LeakageFamily(cfg, self.scores, self.context)
        self.autonomy = AutonomyFamily(cfg, self.context)
        self.vendor_stage = VendorStage(cfg)
        self._vendor_facts: list[vendor_facts_pb2.VendorFact] = []
        self.sandbox = SandboxFamily(cfg, self.context)
        self.silence = SilenceWatch(cfg, self.context)
        self.feedback = FeedbackMemory()
        self.metrics = MetricsFamily(cfg, self.scores, self.context)
        self.conditions = Conditions(cfg.condition_clear_ns)
        self._seen = SeenEvents(cfg.dedup_horizon_ns, cfg.dedup_capacity)
        # (detector, institution, kind, entity, window) already reported
        self._coalesced: dict[tuple[str, str, str, str, str], int] = {}
        self._max_event_ns = 0
        self._watermark_ns = 0
        self._last_check_ns = 0
        self._pruned_window = 0
        # The event-time day of the last eviction of idle entities.
        self._evicted_day = 0
        self._events = 0
        self._duplicates = 0
        self._findings = 0
        self._suppressed = 0
        self._in_windows = 0
        self._out: list[findings_pb2.Finding] = []

    @property
    def watermark_ns(self) -> int:
        return self._watermark_ns

    def process(self, env: telemetry_pb2.TelemetryEnvelope) -> list[findings_pb2.Finding]:
        """Run every detector of the event's family; return the findings it triggered.

        The event time moves the watermark forward (minus the allowed lateness), which may also
        report sources that fell silent meanwhile.
        """
        eid = env.event_id
        inst_id = env.institution_id
        key = (inst_id, eid)
        seen = self._seen
        if key in seen:
            self._duplicates += 1
            return []
        et = env.event_time
        t = et.seconds * 1_000_000_000 + et.nanos
        out: list[findings_pb2.Finding] = []
        self._out = out
        try:
            self._dispatch(env, inst_id, eid, t)
        finally:
            self._out = []
        # Only now: an event whose detectors raised is not a duplicate when it is replayed.
        seen.add_key(key, t)
        self._events += 1
        if t > self._max_event_ns:
            self._max_event_ns = t
            cfg = self.config
            wm = t - cfg.allowed_lateness_ns
            if cfg.auto_advance and wm - self._last_check_ns >= MINUTE_NS:
                self._out = out
                self._advance(wm)
                self._out = []
        return out

    def _dispatch(
        self, env: telemetry_pb2.TelemetryEnvelope, inst_id: str, eid: str, t: int
    ) -> None:
        kind = env.WhichOneof("payload")
        if kind == "data_access":
            self.leakage.process(env, t, self._emit)
            self.silence.institution_seen(inst_id, t, eid)
        elif kind == "it_posture":
            self.autonomy.process(env, t, self._emit, self._vendor_fact)
            rep = env.it_posture
            self.silence.seen(
                inst_id,
                "system",
                rep.system_id,
                findings_pb2.FAMILY_IT_AUTONOMY,
                t,
                rep.interval_seconds,
                eid,
            )
        elif kind == "sandbox":
            self.sandbox.process(env, t, self._emit)
            rep_s = env.sandbox
            self.silence.seen(
                inst_id,
                "app",
                rep_s.app_id,
                findings_pb2.FAMILY_SANDBOX,
                t,
                rep_s.interval_seconds,
                eid,
            )
        elif kind == "metrics":
            self.metrics.process(env, t, self._emit)
            rep_m = env.metrics
            self.silence.seen(
                inst_id,
                "metrics",
                rep_m.system_id,
                findings_pb2.FAMILY_IT_AUTONOMY,
                t,
                rep_m.interval_seconds,
                eid,
            )
        elif kind == "heartbeat":
            self._heartbeat(inst_id, env.heartbeat, t, eid)
        elif kind == "maintenance":
            self.context.upsert_window(inst_id, env.maintenance)
        elif kind == "calendar":
            self.context.upsert_calendar(inst_id, env.calendar)

    def _vendor_fact(self, fact: vendor_facts_pb2.VendorFact) -> None:
        if self.config.external_vendor_stage:
            self._vendor_facts.append(fact)
            return
        for c in self.vendor_stage.process(fact):
            self._emit(c)

    def process_vendor_fact(self, fact: vendor_facts_pb2.VendorFact) -> list[findings_pb2.Finding]:
        """A fact read back from the vendor stage's topic (``external_vendor_stage``): this
        engine's :attr:`vendor_stage` (the stage of one partition of that topic, in the same
        snapshot) decides, and its findings take the engine's path (verdicts, windows, ids)."""
        out: list[findings_pb2.Finding] = []
        self._out = out
        try:
            for c in self.vendor_stage.process(fact):
                self._emit(c)
        finally:
            self._out = []
        return out

    def take_vendor_facts(self) -> list[vendor_facts_pb2.VendorFact]:
        """The vendor facts made since the last call, in order (with
        ``EngineConfig.external_vendor_stage``; otherwise always empty): send each to the
        vendor stage's topic under ``vendor_stage.vendor_fact_key(fact)``, and one whose key is
        None to every partition of it."""
        facts, self._vendor_facts = self._vendor_facts, []
        return facts

    def _heartbeat(self, inst_id: str, hb: telemetry_pb2.Heartbeat, t: int, eid: str) -> None:
        """A heartbeat keeps alive its source's heartbeats, and exactly the streams it vouches
        for: reports that stopped are reported silent even while their system's heartbeats go
        on."""
        src_kind, family = self._heartbeat_source(inst_id, hb.source_id)
        self.silence.heartbeat(inst_id, src_kind, hb.source_id, family, t, hb.interval_seconds, eid)
        for stream in hb.vouches_for:
            kind, _, sid = stream.partition(":")
            key_kind = {"it_posture": "system", "sandbox": "app"}.get(kind, kind)
            if key_kind in ("system", "app", "metrics") and sid:
                fam = (
                    findings_pb2.FAMILY_SANDBOX
                    if key_kind == "app"
                    else findings_pb2.FAMILY_IT_AUTONOMY
                )
                self.silence.seen(inst_id, key_kind, sid, fam, t, 0, eid)

    def _heartbeat_source(self, inst_id: str, source_id: str) -> tuple[str, int]:
        if source_id == inst_id:
            return "institution", findings_pb2.FAMILY_SANDBOX
        if (inst_id, source_id) in self.autonomy.systems:
            return "system", findings_pb2.FAMILY_IT_AUTONOMY
        return "app", findings_pb2.FAMILY_SANDBOX

    def upsert_sandbox_test(self, test: sandbox_pb2.SandboxTest) -> None:
        """Register or replace the approved boundaries of a sandbox test."""
        if not test.test_id or not test.institution_id:
            raise ValueError("a SandboxTest needs test_id and institution_id")
        self.sandbox.upsert(test)

    def remove_sandbox_test(self, test_id: str) -> None:
        """Withdraw a sandbox test: its app's later reports are those of an unregistered test."""
        self.sandbox.tests.pop(test_id, None)

    def apply_feedback(self, fb: alerts_pb2.Feedback) -> None:
        """Apply a supervisor's verdict (see :mod:`suptech.detector.logic.feedback`).

        Idempotent per alert id and verdict; its event time is the latest event time seen.
        """
        self.feedback.apply(fb, self._max_event_ns, self.leakage)

    def take_scores(self) -> list[Score]:
        """The per-event scores made since the last call (empty when record_scores is off)."""
        return self.scores.take()

    def advance(self, event_time_ns: int) -> list[findings_pb2.Finding]:
        """Move the watermark to ``event_time_ns``: report silent sources, forget old windows."""
        out: list[findings_pb2.Finding] = []
        self._out = out
        if event_time_ns > self._watermark_ns:
            self._advance(event_time_ns)
        self._out = []
        return out

    def _advance(self, wm: int) -> None:
        self._watermark_ns = max(self._watermark_ns, wm)
        self._last_check_ns = wm
        self.silence.check(wm, self._emit)
        self.conditions.expire(wm, self._report)
        self._seen.forget_before(wm)
        if wm // DAY_NS > self._evicted_day:
            self._evicted_day = wm // DAY_NS
            idle_since = wm - self.config.idle_evict_ns
            self.leakage.evict_idle(idle_since)
            self.metrics.evict_idle(idle_since)
            self.vendor_stage.advance(wm)
        # Late events land at most a window back; older coalescing keys can go.
        horizon = (wm - 2 * self.config.coalesce_window_ns) // self.config.coalesce_window_ns
        if horizon > self._pruned_window:
            self._pruned_window = horizon
            self._coalesced = {k: w for k, w in self._coalesced.items() if w >= horizon}
            self.context.forget_before(wm - DAY_NS)

    def _emit(self, c: Candidate) -> None:
        judged = self.feedback.judge(c)
        if judged is None:
            return
        marked = self._in_declared_window(judged)
        if marked is None:
            self._in_windows += 1
            return
        c = marked
        if not c.is_rule and c.basis is None:
            tracked = self.conditions.alarm(c)
            if tracked is None:
                self._suppressed += 1
                return
            self._report(tracked)
            return
        window = c.event_time_ns // self.config.coalesce_window_ns
        basis = c.basis if c.basis is not None else f"w{window}"
        key = (c.detector_id, c.institution_id, c.entity_kind, c.entity_id, basis)
        if key in self._coalesced:
            self._suppressed += 1
            return
        self._coalesced[key] = window
        self._report(c, basis)

    def _in_declared_window(self, c: Candidate) -> Candidate | None:
        """Mark (and grade down) a finding whose evidence fell in a window the institution
        declared; None for a metric stream's statistical finding inside any declared window on
        its system (maintenance, a change or a batch job is what moves a system's metrics, and
        the window was announced before it), and for a system down inside a maintenance or
        change window on it."""
        if c.entity_kind == "metric" and not c.is_rule:
            system = c.entity_id.split("/", 1)[0]
            if self.context.window_at(c.institution_id, system, c.family, c.event_time_ns, True):
                return None
        # A system down inside a maintenance or change window declared for it is the work that
        # was announced; still down once the window is over, it is reported then.
        if c.detector_id in _PLANNED_DOWNTIME and self.context.window_at(
            c.institution_id, c.entity_id, c.family, c.event_time_ns
        ):
            return None
        # An actor's finding does not name the system its evidence came from: the family that
        # knows it marks the window itself (a window for one system says nothing of another).
        wid = c.declared_window_id
        if not wid and c.entity_kind != "actor":
            system = c.entity_id.split("/", 1)[0] if c.entity_kind in ("system", "metric") else ""
            wid = self.context.window_at(c.institution_id, system, c.family, c.event_time_ns)
        if not wid:
            return c
        c.declared_window_id = wid
        c.grade = _GRADE_DOWN.get(c.grade, c.grade)
        c.summary = f"[in declared window {wid}] {c.summary}"
        return c

    def _report(self, c: Candidate, basis: str | None = None) -> None:
        basis = basis if basis is not None else (c.basis or "")
        detected = max(self._max_event_ns, c.event_time_ns)
        finding = to_finding(c, basis, detected, self.config.evidence_cap)
        self.feedback.remember(finding)
        self._out.append(finding)
        self._findings += 1

    def snapshot(self) -> bytes:
        """Every detector's state, river models included, as one pickle."""
        state = dict(self.__dict__)
        state["_out"] = []
        return pickle.dumps((_SNAPSHOT_VERSION, state), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes, config: EngineConfig | None = None) -> DetectionEngine:
        """Rebuild an engine from :meth:`snapshot`; a given ``config`` replaces the saved one."""
        version, state = pickle.loads(blob)
        state.setdefault("_in_windows", 0)
        state.setdefault("_evicted_day", state.get("_max_event_ns", 0) // DAY_NS)
        if version in _UPGRADABLE:
            state.setdefault("feedback", FeedbackMemory())
            cfg = config or state["config"]
            state["scores"] = ScoreLog(cfg.record_scores)
            state["metrics"] = MetricsFamily(cfg, state["scores"])
            state["context"] = InstitutionContext(cfg.default_time_zone)
            state["conditions"] = Conditions(cfg.condition_clear_ns)
        elif version not in (_SNAPSHOT_VERSION, 5, 6, 7, 8):
            raise ValueError(f"snapshot version {version} is not {_SNAPSHOT_VERSION}")
        if version in _NEW_DEDUP:
            cfg = config or state["config"]
            state.pop("_seen_order", None)
            state["_seen"] = SeenEvents(cfg.dedup_horizon_ns, cfg.dedup_capacity)
        state.setdefault("_vendor_facts", [])
        engine = cls.__new__(cls)
        engine.__dict__.update(state)
        if "vendor_stage" not in state:
            engine.vendor_stage = _legacy_vendor_stage(engine.autonomy, engine.config)
        engine.leakage.upgrade(engine._max_event_ns)
        engine.metrics.upgrade(engine._max_event_ns)
        engine.metrics.scores = engine.leakage.scores = engine.scores
        engine.autonomy.context = engine.sandbox.context = engine.silence.context = engine.context
        engine.leakage.context = engine.metrics.context = engine.context
        if config is not None:
            engine._set_config(config)
        return engine

    def _set_config(self, config: EngineConfig) -> None:
        self.config = config
        for part in (self.leakage, self.autonomy, self.sandbox, self.silence, self.metrics):
            part.cfg = config
        self.vendor_stage.cfg = config
        self.scores.enabled = config.record_scores
        self.conditions.clear_after_ns = config.condition_clear_ns
        self._seen.horizon_ns = config.dedup_horizon_ns
        self._seen.capacity = config.dedup_capacity

    def stats(self) -> dict[str, int]:
        """Tracked entities per kind, events processed and findings emitted."""
        out: dict[str, int] = {}
        for part in (self.leakage, self.autonomy, self.sandbox, self.silence, self.metrics):
            out.update(part.stats())
        out.update(self.vendor_stage.stats())
        out["vendor_facts_queued"] = len(self._vendor_facts)
        out.update(self.context.stats())
        out["open_conditions"] = len(self.conditions)
        out["events_processed"] = self._events
        out["duplicates_skipped"] = self._duplicates
        out["event_ids_remembered"] = len(self._seen)
        out["findings_emitted"] = self._findings
        out["findings_coalesced"] = self._suppressed
        out["metric_findings_in_declared_windows"] = self._in_windows
        out.update(self.feedback.stats())
        return out


def _legacy_vendor_stage(autonomy: AutonomyFamily, cfg: EngineConfig) -> VendorStage:
    """The vendor stage of a snapshot from before it (the family held its state)."""
    legacy = autonomy.take_legacy_vendor_state()
    return VendorStage.from_legacy(cfg, **legacy) if legacy else VendorStage(cfg)
