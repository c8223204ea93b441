"""Per-event anomaly scores as the engine makes them: for charts, ROC/PR and the scores topic."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import NamedTuple, TextIO

from suptech.v1 import findings_pb2

__all__ = ["Score", "ScoreLog", "SCORE_CSV_FIELDS", "to_batches", "write_csv"]


class Score(NamedTuple):
    institution_id: str
    entity_kind: str
    entity_id: str
    model_id: str
    event_id: str
    event_time_ns: int
    score: float
    threshold: float
    observed: float
    expected: float
    alarm: bool


SCORE_CSV_FIELDS = Score._fields


class ScoreLog:
    """Scores of the events processed since the last :meth:`take`, when ``enabled``.

    Not engine state: it is never part of a snapshot, only what the caller has yet to publish.
    """

    __slots__ = ("enabled", "_items")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._items: list[Score] = []

    def __getstate__(self) -> tuple[bool]:
        # Pending scores are the caller's to publish, not state to restore.
        return (self.enabled,)

    def __setstate__(self, state: tuple[bool]) -> None:
        self.enabled = state[0]
        self._items = []

    def add(self, s: Score) -> None:
        if self.enabled:
            self._items.append(s)

    def take(self) -> list[Score]:
        out, self._items = self._items, []
        return out


def to_batches(scores: Iterable[Score]) -> list[findings_pb2.AnomalyScoreBatch]:
    """One ``AnomalyScoreBatch`` per institution, in first-seen order (Kafka key = institution)."""
    batches: dict[str, findings_pb2.AnomalyScoreBatch] = {}
    for s in scores:
        batch = batches.get(s.institution_id)
        if batch is None:
            batch = batches[s.institution_id] = findings_pb2.AnomalyScoreBatch(
                institution_id=s.institution_id
            )
        m = batch.scores.add(
            institution_id=s.institution_id,
            entity_kind=s.entity_kind,
            entity_id=s.entity_id,
            model_id=s.model_id,
            event_id=s.event_id,
            score=s.score,
            threshold=s.threshold,
            observed=s.observed,
            expected=s.expected,
            alarm=s.alarm,
        )
        m.event_time.FromNanoseconds(s.event_time_ns)
    return list(batches.values())


def write_csv(scores: Iterable[Score], out: TextIO, header: bool = True) -> int:
    """Write scores as CSV rows (columns :data:`SCORE_CSV_FIELDS`); return how many."""
    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(SCORE_CSV_FIELDS)
    n = 0
    for s in scores:
        w.writerow(
            (
                *s[:6],
                f"{s.score:.6g}",
                f"{s.threshold:.6g}",
                f"{s.observed:.6g}",
                f"{s.expected:.6g}",
                int(s.alarm),
            )
        )
        n += 1
    return n
