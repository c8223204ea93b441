"""Persistent conditions: one finding at onset, an update when it worsens, a clear when it ends.

A statistical detector alarms on every event of an ongoing anomaly; a supervisor needs one alert
for the condition, told when it got worse and when it is over, not a fresh alarm every window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from suptech.detector.logic.candidate import Candidate, finding_id
from suptech.v1 import findings_pb2

__all__ = ["Conditions"]

ONSET = findings_pb2.PHASE_ONSET
UPDATE = findings_pb2.PHASE_UPDATE
CLEAR = findings_pb2.PHASE_CLEAR

# (detector, institution, entity kind, entity)
Key = tuple[str, str, str, str]


class _Open:
    __slots__ = ("basis", "condition_id", "grade", "last_alarm_ns", "last")

    def __init__(self, basis: str, condition_id: str, c: Candidate) -> None:
        self.basis = basis
        self.condition_id = condition_id
        self.grade = c.grade
        self.last_alarm_ns = c.event_time_ns
        self.last = c


class Conditions:
    """Open conditions per (detector, entity); cleared after ``clear_after_ns`` without an alarm.

    Ids stay deterministic: the onset's basis is its event time, so a replay makes the same
    onset, update and clear findings with the same ids.
    """

    def __init__(self, clear_after_ns: int) -> None:
        self.clear_after_ns = clear_after_ns
        self._open: dict[Key, _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    def alarm(self, c: Candidate) -> Candidate | None:
        """The candidate to report for this alarm (onset or update), or None while it persists."""
        key = (c.detector_id, c.institution_id, c.entity_kind, c.entity_id)
        cond = self._open.get(key)
        if cond is None or c.event_time_ns - cond.last_alarm_ns > self.clear_after_ns:
            basis = f"c{c.event_time_ns}"
            cid = finding_id(c, basis)
            self._open[key] = _Open(basis, cid, c)
            return dataclasses.replace(c, basis=basis, phase=ONSET, condition_id=cid)
        if c.event_time_ns > cond.last_alarm_ns:
            cond.last_alarm_ns = c.event_time_ns
            cond.last = c
        if c.grade <= cond.grade:
            return None
        cond.grade = c.grade
        return dataclasses.replace(
            c, basis=f"{cond.basis}:g{c.grade}", phase=UPDATE, condition_id=cond.condition_id
        )

    def expire(self, watermark_ns: int, emit: Callable[[Candidate], None]) -> None:
        """Report the clear of every condition with no alarm for ``clear_after_ns``."""
        done = [
            k for k, v in self._open.items() if watermark_ns - v.last_alarm_ns > self.clear_after_ns
        ]
        for key in done:
            cond = self._open.pop(key)
            last = cond.last
            emit(
                dataclasses.replace(
                    last,
                    basis=f"{cond.basis}:clear",
                    phase=CLEAR,
                    condition_id=cond.condition_id,
                    grade=findings_pb2.GRADE_GENERAL,
                    summary=f"cleared: {last.summary}",
                    event_time_ns=cond.last_alarm_ns + self.clear_after_ns,
                )
            )
