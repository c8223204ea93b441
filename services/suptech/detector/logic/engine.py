"""The detection engine: one object holding every detector's state, driven by event time."""

from __future__ import annotations

import pickle
from collections import deque

from suptech.detector.logic.autonomy import AutonomyFamily
from suptech.detector.logic.candidate import Candidate, to_finding
from suptech.detector.logic.config import MINUTE_NS, EngineConfig
from suptech.detector.logic.feedback import FeedbackMemory
from suptech.detector.logic.leakage import LeakageFamily
from suptech.detector.logic.sandbox import SandboxFamily
from suptech.detector.logic.silence import SilenceWatch
from suptech.v1 import alerts_pb2, findings_pb2, sandbox_pb2, telemetry_pb2

__all__ = ["DetectionEngine"]

# Raised whenever per-entity state changes shape: an older snapshot is refused, not half-loaded.
_SNAPSHOT_VERSION = 3
# Version 2 lacked only the feedback memory: it loads with none applied yet.
_UPGRADABLE = {2}


class DetectionEngine:
    """Feed telemetry with :meth:`process`, move event time with :meth:`advance`.

    Everything is driven by event time, never the wall clock, so replaying recorded telemetry at
    any speed yields the same findings with the same ids. Processing is idempotent per
    ``event_id`` over a bounded memory of recent ids. Repeated findings of one detector on one
    entity are coalesced: at most one per coalescing window, whose id derives from the detector,
    the entity and the window, so a replay or a redelivery makes the same id.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = cfg = config or EngineConfig()
        self.leakage = LeakageFamily(cfg)
        self.autonomy = AutonomyFamily(cfg)
        self.sandbox = SandboxFamily(cfg)
        self.silence = SilenceWatch(cfg)
        self.feedback = FeedbackMemory()
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        # (detector, institution, kind, entity, window) already reported
        self._coalesced: dict[tuple[str, str, str, str, str], int] = {}
        self._max_event_ns = 0
        self._watermark_ns = 0
        self._last_check_ns = 0
        self._pruned_window = 0
        self._events = 0
        self._duplicates = 0
        self._findings = 0
        self._suppressed = 0
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
        if eid in self._seen:
            self._duplicates += 1
            return []
        self._remember(eid)
        self._events += 1
        t = env.event_time.seconds * 1_000_000_000 + env.event_time.nanos
        out: list[findings_pb2.Finding] = []
        self._out = out
        inst_id = env.institution_id
        kind = env.WhichOneof("payload")
        if kind == "data_access":
            self.leakage.process(env, t, self._emit)
            self.silence.institution_seen(inst_id, t, eid)
        elif kind == "it_posture":
            self.autonomy.process(env, t, self._emit)
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
        elif kind == "heartbeat":
            hb = env.heartbeat
            src_kind, family = self._heartbeat_source(inst_id, hb.source_id)
            self.silence.seen(inst_id, src_kind, hb.source_id, family, t, hb.interval_seconds, eid)
        if t > self._max_event_ns:
            self._max_event_ns = t
            wm = t - self.config.allowed_lateness_ns
            if self.config.auto_advance and wm - self._last_check_ns >= MINUTE_NS:
                self._advance(wm)
        self._out = []
        return out

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

    def apply_feedback(self, fb: alerts_pb2.Feedback) -> None:
        """Apply a supervisor's verdict (see :mod:`suptech.detector.logic.feedback`).

        Idempotent per alert id and verdict; its event time is the latest event time seen.
        """
        self.feedback.apply(fb, self._max_event_ns, self.leakage)

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
        # Late events land at most a window back; older coalescing keys can go.
        horizon = (wm - 2 * self.config.coalesce_window_ns) // self.config.coalesce_window_ns
        if horizon > self._pruned_window:
            self._pruned_window = horizon
            self._coalesced = {k: w for k, w in self._coalesced.items() if w >= horizon}

    def _remember(self, eid: str) -> None:
        self._seen.add(eid)
        self._seen_order.append(eid)
        if len(self._seen_order) > self.config.dedup_capacity:
            self._seen.discard(self._seen_order.popleft())

    def _emit(self, c: Candidate) -> None:
        judged = self.feedback.judge(c)
        if judged is None:
            return
        c = judged
        window = c.event_time_ns // self.config.coalesce_window_ns
        basis = c.basis if c.basis is not None else f"w{window}"
        key = (c.detector_id, c.institution_id, c.entity_kind, c.entity_id, basis)
        if key in self._coalesced:
            self._suppressed += 1
            return
        self._coalesced[key] = window
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
        if version in _UPGRADABLE:
            state.setdefault("feedback", FeedbackMemory())
        elif version != _SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {version} is not {_SNAPSHOT_VERSION}")
        engine = cls.__new__(cls)
        engine.__dict__.update(state)
        if config is not None:
            engine._set_config(config)
        return engine

    def _set_config(self, config: EngineConfig) -> None:
        self.config = config
        for part in (self.leakage, self.autonomy, self.sandbox, self.silence):
            part.cfg = config

    def stats(self) -> dict[str, int]:
        """Tracked entities per kind, events processed and findings emitted."""
        out: dict[str, int] = {}
        for part in (self.leakage, self.autonomy, self.sandbox, self.silence):
            out.update(part.stats())
        out["events_processed"] = self._events
        out["duplicates_skipped"] = self._duplicates
        out["findings_emitted"] = self._findings
        out["findings_coalesced"] = self._suppressed
        out.update(self.feedback.stats())
        return out
