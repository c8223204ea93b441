"""Cumulative drift of a controllability index below the level the system held."""

from __future__ import annotations

from typing import Any

from river import base

__all__ = ["ControllabilityDrift"]

_DAY_S = 86_400.0


class ControllabilityDrift(base.AnomalyDetector):
    """How far a controllability index has fallen below its reference, in units of ``drop``.

    ``x["t"]`` is the report's event time in epoch seconds and ``x["index"]`` the index in
    [0, 1]. The reference is the highest level the index held over the trailing ``memory_days``,
    not the previous report: a slide of steps each too small to notice (a component a day)
    adds up against it, like a one-sided CUSUM of the declines with no slack. A recovery raises
    the reference again; a lowered level becomes the reference only once the higher one is older
    than the memory. The score is ``(reference - index) / drop``: 1.0 is a drift worth a finding,
    2.0 twice that. Only changes of the index are stored (inventories rarely change).

    Parameters
    ----------
    drop
        Decline below the reference that scores 1.0.
    memory_days
        How long a level stays the reference after the index left it.

    Examples
    --------
    >>> det = ControllabilityDrift(drop=0.075)
    >>> day = 86_400.0
    >>> for i, index in enumerate([0.90, 0.90, 0.87, 0.84, 0.81]):
    ...     x = {"t": i * day, "index": index}
    ...     score = det.score_one(x)
    ...     det.learn_one(x)
    >>> round(score, 2)  # three steps of 0.03, each below a report-to-report alarm
    1.2
    >>> round(det.reference(4 * day), 2)
    0.9
    >>> det.score_one({"t": 40 * day, "index": 0.81})  # a month on: the new normal
    0.0
    """

    def __init__(self, drop: float = 0.075, memory_days: float = 30.0) -> None:
        self.drop = drop
        self.memory_days = memory_days
        # (epoch seconds, index) at each change of the index, oldest first.
        self._levels: list[tuple[float, float]] = []

    def reference(self, t: float) -> float:
        """Highest index held over the ``memory_days`` before ``t`` (-1 before any report)."""
        start = t - self.memory_days * _DAY_S
        best = -1.0
        for i, (_since, level) in enumerate(self._levels):
            nxt = self._levels[i + 1][0] if i + 1 < len(self._levels) else float("inf")
            if nxt > start and level > best:  # held at some time in the window
                best = level
        return best

    def score_one(self, x: dict[Any, Any]) -> float:
        ref = self.reference(float(x["t"]))
        if ref < 0.0:
            return 0.0
        gap = ref - float(x["index"])
        return gap / self.drop if gap > 0.0 else 0.0

    def learn_one(self, x: dict[Any, Any]) -> None:
        t = float(x["t"])
        index = float(x["index"])
        levels = self._levels
        if levels and levels[-1][1] == index:
            return
        levels.append((t, index))
        # Keep the level in force at the window's start and every later one.
        start = t - self.memory_days * _DAY_S
        while len(levels) > 1 and levels[1][0] <= start:
            levels.pop(0)
