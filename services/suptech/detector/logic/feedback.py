"""Supervisors' verdicts (``suptech.v1.Feedback`` from ``feedback.v1``) fed back into detection.

A verdict names an alert's institution, detector and entity. What it changes, per
(detector, institution, entity kind, entity id):

* ``FALSE_POSITIVE`` on a statistical detector (a model finding: volume, rate, drip, health,
  surge): that detector becomes less sensitive for that entity. Its threshold is multiplied by
  ``fp_step`` (1.5) per verdict, at most ``max_multiplier`` (4) times, and the excess over 1 halves
  every ``fp_half_life_ns`` (7 days) of event time, so the entity is watched normally again
  after a few quiet weeks. A repeat at the same level is no longer reported; a much larger one
  still is.
* ``BENIGN`` on a statistical detector: the reported level is legitimate for the entity. The
  threshold is raised to cover the finding's score with a ``benign_margin`` (20%), within the
  same cap, decaying with ``benign_half_life_ns`` (30 days): repeats of that level are quiet, as
  if the baseline had absorbed them, while the entity's real baseline keeps its own pace.
  (``leak.new_destination`` needs nothing: a destination is known to the institution as soon as
  it is first reported, and never reported again.)
* ``TRUE_POSITIVE``: the incident is real. Any muting of that detector on that entity is
  cancelled (a reversed verdict wins), repeat findings are graded one level up for
  ``tp_boost_ns`` (7 days), and a data actor's or data system's baselines stop learning for
  ``tp_freeze_ns`` (1 day) from the verdict so an ongoing incident is never learned as normal.

Rules (every ``rule_id`` finding: C3 outbound, sandbox caps, controllability regression, ...) are
never muted: a supervisor changes the registry or silences the alert instead. Such a verdict is
recorded (idempotence) and counted as ignored, as are verdicts without alert id, institution or
detector, unspecified verdicts, and verdicts already applied: the same alert id with the same
verdict changes nothing a second time. A muted finding is not coalesced, so a stronger event later
in the window is still reported. All of this is engine state, saved in its snapshots.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from suptech.detector.logic.candidate import Candidate
from suptech.detector.logic.config import DAY_NS
from suptech.detector.logic.leakage import LeakageFamily
from suptech.v1 import alerts_pb2, findings_pb2

__all__ = ["FeedbackConfig", "FeedbackMemory"]

# (detector_id, institution_id, entity_kind, entity_id)
Key = tuple[str, str, str, str]

# Detectors that report a score against a threshold (model_id findings): the only ones feedback
# may make less sensitive.
STATISTICAL_DETECTORS = frozenset(
    {
        "leak.actor_volume",
        "leak.system_volume",
        "leak.actor_rate",
        "leak.slow_drip",
        "leak.records_ratio",
        "leak.lateral_spread",
        "leak.hst",
        "it.health_anomaly",
        "sandbox.surge",
    }
)


@dataclass(frozen=True)
class FeedbackConfig:
    fp_step: float = 1.5
    benign_margin: float = 1.2
    max_multiplier: float = 4.0
    fp_half_life_ns: int = 7 * DAY_NS
    benign_half_life_ns: int = 30 * DAY_NS
    tp_boost_ns: int = 7 * DAY_NS
    tp_freeze_ns: int = DAY_NS
    # Verdicts remembered for idempotence, and findings remembered for their score.
    applied_capacity: int = 200_000
    findings_capacity: int = 100_000


@dataclass
class _Mute:
    multiplier: float
    since_ns: int
    half_life_ns: int

    def at(self, t_ns: int) -> float:
        dt = max(0, t_ns - self.since_ns)
        decay: float = 0.5 ** (dt / self.half_life_ns)
        return 1.0 + (self.multiplier - 1.0) * decay


class FeedbackMemory:
    """Verdicts applied so far and what they changed; consulted for every candidate finding."""

    def __init__(self, config: FeedbackConfig | None = None) -> None:
        self.cfg = config or FeedbackConfig()
        self.mutes: dict[Key, _Mute] = {}
        # Until when (event time) repeats of a confirmed incident are graded one level up.
        self.boosts: dict[Key, int] = {}
        self.applied: dict[tuple[str, int], None] = {}
        # finding_id -> score / threshold of recent model findings (a verdict names findings).
        self.ratios: dict[str, float] = {}
        self.n_applied = 0
        self.n_ignored = 0
        self.n_muted = 0

    def stats(self) -> dict[str, int]:
        return {
            "feedback_applied": self.n_applied,
            "feedback_ignored": self.n_ignored,
            "findings_muted_by_feedback": self.n_muted,
        }

    def apply(self, fb: alerts_pb2.Feedback, now_ns: int, leakage: LeakageFamily) -> bool:
        """Apply one verdict at event time ``now_ns``; True when it changed anything."""
        done = (fb.alert_id, int(fb.verdict))
        if (
            not fb.alert_id
            or not fb.institution_id
            or not fb.detector_id
            or done in self.applied
            or fb.verdict == alerts_pb2.VERDICT_UNSPECIFIED
        ):
            self.n_ignored += 1
            return False
        self.applied[done] = None
        if len(self.applied) > self.cfg.applied_capacity:
            del self.applied[next(iter(self.applied))]
        key = (fb.detector_id, fb.institution_id, fb.entity_kind, fb.entity_id)
        changed = False
        if fb.verdict == alerts_pb2.VERDICT_TRUE_POSITIVE:
            self.mutes.pop(key, None)
            self.boosts[key] = now_ns + self.cfg.tp_boost_ns
            _freeze(leakage, fb, now_ns + self.cfg.tp_freeze_ns)
            changed = True
        elif fb.detector_id in STATISTICAL_DETECTORS:
            changed = self._mute(key, fb, now_ns)
        if changed:
            self.n_applied += 1
        else:
            self.n_ignored += 1
        return changed

    def _mute(self, key: Key, fb: alerts_pb2.Feedback, now_ns: int) -> bool:
        cfg = self.cfg
        old = self.mutes.get(key)
        current = old.at(now_ns) if old is not None else 1.0
        if fb.verdict == alerts_pb2.VERDICT_FALSE_POSITIVE:
            target, half_life = current * cfg.fp_step, cfg.fp_half_life_ns
        elif fb.verdict == alerts_pb2.VERDICT_BENIGN:
            ratios = [self.ratios[f] for f in fb.finding_ids if f in self.ratios]
            # Without the finding's score (older than this memory) one false-positive step.
            level = max(ratios) * cfg.benign_margin if ratios else cfg.fp_step
            target, half_life = max(current, level), cfg.benign_half_life_ns
        else:
            return False
        self.mutes[key] = _Mute(min(target, cfg.max_multiplier), now_ns, half_life)
        self.boosts.pop(key, None)
        return True

    def judge(self, c: Candidate) -> Candidate | None:
        """The candidate as feedback wants it reported, or None when a verdict mutes it."""
        key = (c.detector_id, c.institution_id, c.entity_kind, c.entity_id)
        if not c.is_rule and key in self.mutes:
            m = self.mutes[key].at(c.event_time_ns)
            if c.threshold > 0 and c.score <= c.threshold * m:
                self.n_muted += 1
                return None
        until = self.boosts.get(key)
        if until is not None:
            if c.event_time_ns <= until:
                return dataclasses.replace(c, grade=min(c.grade + 1, findings_pb2.GRADE_CRITICAL))
            del self.boosts[key]
        return c

    def remember(self, finding: findings_pb2.Finding) -> None:
        """Keep a model finding's score over threshold for a later BENIGN verdict on it."""
        if finding.model_id and finding.threshold > 0:
            self.ratios[finding.finding_id] = finding.score / finding.threshold
            if len(self.ratios) > self.cfg.findings_capacity:
                del self.ratios[next(iter(self.ratios))]


def _freeze(leakage: LeakageFamily, fb: alerts_pb2.Feedback, until_ns: int) -> None:
    if fb.family != findings_pb2.FAMILY_DATA_LEAKAGE:
        return
    ent = (fb.institution_id, fb.entity_id)
    if fb.entity_kind == "actor" and ent in leakage.actors:
        actor = leakage.actors[ent]
        actor.frozen_until = max(actor.frozen_until, until_ns)
    elif fb.entity_kind == "system" and ent in leakage.systems:
        system = leakage.systems[ent]
        system.frozen_until = max(system.frozen_until, until_ns)
