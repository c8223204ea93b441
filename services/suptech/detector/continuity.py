"""Every record of a partition, in order: the worker's own check on what faust delivers.

faust (faust-streaming 0.15 on aiokafka 0.14) can skip records of a partition that a worker keeps
through a rebalance: records fetched around its seek to the committed offsets are never handed to
the agent, and the fetch position is past them, so they do not come again before a restart. Seen
in ``tests/test_detector_workers.py`` (half the runs on a loaded machine): the worker that kept
partition 3 processed six of its twelve records and never saw the others.

A shard knows the next offset it needs of every partition it holds (its state's offsets), and the
offsets of a telemetry partition have no holes but those retention makes (the gateway's producer
is idempotent, not transactional: no control records). So:

* a record past the next offset needed is a **gap**: the partition is rewound to that offset, and
  records past it are dropped until the one needed arrives (they come again after it), unless the
  broker no longer has that offset (retention), in which case the gap is taken as it is. A
  partition the shard has never read starts where the consumer does (its committed offset, or
  the first the broker has), except one that held no record when the shard was taken on: that
  one needs its end offset of then;
* a partition whose end offset on the broker is past the next offset needed, and which has
  delivered nothing for ``stall_s``, is **stalled** (records lost at the end of a burst leave no
  gap to see) and rewound as well.

Rewinding is always safe: records below a shard's offsets are skipped, so a rewind costs a re-read
and never a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Continuity", "DROP", "GAP", "OK"]

TopicPartition = tuple[str, int]

OK = "ok"
GAP = "gap"
DROP = "drop"


@dataclass
class Continuity:
    """Per partition: where it is being rewound to, and since when it has not moved."""

    stall_s: float
    rewinds: int = 0
    gaps_accepted: int = 0
    _rewinding: dict[TopicPartition, int] = field(default_factory=dict)
    _still: dict[TopicPartition, tuple[int, float]] = field(default_factory=dict)

    def check(self, tp: TopicPartition, offset: int, needed: int | None) -> str:
        """What to do with the record at ``offset`` of ``tp`` when the shard needs ``needed``
        next: OK (process it; below ``needed`` the shard skips it), GAP (records were skipped:
        rewind, unless retention took them) or DROP (past the offset being rewound to: it comes
        again). A partition the shard has never read (``needed`` None) starts where the consumer
        does: its committed offset, or the first one the broker has."""
        if needed is None or offset <= needed:
            self._rewinding.pop(tp, None)
            return OK
        if self._rewinding.get(tp) == needed:
            return DROP
        return GAP

    def rewinding(self, tp: TopicPartition, needed: int) -> None:
        """``tp`` was sought back to ``needed``."""
        self._rewinding[tp] = needed
        self.rewinds += 1

    def accept_gap(self, tp: TopicPartition) -> None:
        """The records of a gap are gone from the broker: go on from the record that came."""
        self._rewinding.pop(tp, None)
        self.gaps_accepted += 1

    def stalled(self, tp: TopicPartition, needed: int, end: int, now: float) -> bool:
        """Whether ``tp``, with records up to ``end`` on the broker, has stayed at ``needed`` for
        ``stall_s``; each stall is reported once, the next one ``stall_s`` later."""
        if end <= needed:
            self._still.pop(tp, None)
            return False
        at, since = self._still.get(tp, (needed, now))
        if at != needed:
            at, since = needed, now
        if now - since >= self.stall_s:
            self._still[tp] = (needed, now)
            return True
        self._still[tp] = (at, since)
        return False

    def forget(self, tps: set[TopicPartition]) -> None:
        """Partitions no longer held."""
        for tp in tps:
            self._rewinding.pop(tp, None)
            self._still.pop(tp, None)
