"""Per-entity baseline by hour of day and weekday/weekend, with re-baselining on a regime change."""

from __future__ import annotations

from typing import Any

from river import base

__all__ = ["SeasonalBaseline"]

_MAD_TO_SIGMA = 1.2533
_SLOTS = 48


def _slot(epoch_s: float, utc_offset_hours: int) -> int:
    local = int(epoch_s) // 3600 + utc_offset_hours
    hour = local % 24
    weekday = (local // 24 + 3) % 7  # 1970-01-01 was a Thursday (index 3, Monday = 0)
    return hour + (24 if weekday >= 5 else 0)


class SeasonalBaseline(base.AnomalyDetector):
    """Upward z-score of features against the same hour of day (weekday or weekend) in the past.

    ``x[time_key]`` is the observation's event time in epoch seconds; every other key is a feature
    where larger means worse. A slot with fewer than ``min_slot`` observations falls back to the
    all-hours baseline. A regime change (for example a resized cluster) is a new normal, not weeks
    of alarms: after ``rebaseline_after`` consecutive observations all shifted the same way by more
    than ``threshold`` deviations, every slot moves by the median shift.

    Examples
    --------
    >>> det = SeasonalBaseline(rebaseline_after=5)
    >>> for i in range(24 * 14):
    ...     det.learn_one({"t": i * 3600.0, "latency": 100.0 + (50.0 if i % 24 == 12 else 0.0)})
    >>> det.score_one({"t": 24 * 14 * 3600.0 + 12 * 3600, "latency": 150.0}) < 2.0
    True
    >>> det.score_one({"t": 24 * 14 * 3600.0 + 3 * 3600, "latency": 150.0}) > 5.0
    True
    """

    def __init__(
        self,
        alpha: float = 0.1,
        floor: float = 0.01,
        min_slot: int = 3,
        threshold: float = 5.0,
        rebaseline_after: int = 24,
        time_key: str = "t",
        utc_offset_hours: int = 8,
        floors: dict[str, float] | None = None,
    ) -> None:
        self.alpha = alpha
        self.floor = floor
        # Per-feature smallest deviation: the effect size below which a change is not news.
        self.floors = dict(floors or {})
        self.min_slot = min_slot
        self.threshold = threshold
        self.rebaseline_after = rebaseline_after
        self.time_key = time_key
        self.utc_offset_hours = utc_offset_hours
        self.n = 0
        self.rebaselines = 0
        # feature -> [mean, dev, count] per slot, index _SLOTS is the all-hours baseline
        self._stats: dict[str, list[list[float]]] = {}
        self._shifted: list[dict[str, float]] = []

    def _expect(self, feature: str, slot: int) -> tuple[float, float] | None:
        rows = self._stats.get(feature)
        if rows is None:
            return None
        row = rows[slot] if rows[slot][2] >= self.min_slot else rows[_SLOTS]
        if row[2] == 0:
            return None
        return row[0], max(row[1] * _MAD_TO_SIGMA, self.floors.get(feature, self.floor))

    def _residuals(self, x: dict[Any, Any]) -> tuple[int, dict[str, float]]:
        # Inlined _expect: this runs for every health report of every system.
        tk = self.time_key
        slot = _slot(x[tk], self.utc_offset_hours)
        stats = self._stats
        min_slot = self.min_slot
        floors = self.floors
        default_floor = self.floor
        out = {}
        for k, v in x.items():
            if k == tk:
                continue
            rows = stats.get(k)
            if rows is None:
                continue
            row = rows[slot]
            if row[2] < min_slot:
                row = rows[_SLOTS]
                if row[2] == 0:
                    continue
            dev = row[1] * _MAD_TO_SIGMA
            floor = floors.get(k, default_floor)
            out[k] = (v - row[0]) / (dev if dev > floor else floor)
        return slot, out

    @property
    def shifted_run(self) -> int:
        """Consecutive recent observations that were too far from the baseline to learn."""
        return len(self._shifted)

    def score_one(self, x: dict[Any, Any]) -> float:
        _, z = self._residuals(x)
        return max(z.values(), default=0.0)

    def contributions(self, x: dict[Any, Any]) -> dict[str, tuple[float, float]]:
        """Observed value and baseline per feature, for explanations."""
        slot = _slot(x[self.time_key], self.utc_offset_hours)
        out = {}
        for k, v in x.items():
            e = self._expect(k, slot) if k != self.time_key else None
            if e is not None:
                out[k] = (v, e[0])
        return out

    def score_learn_one(self, x: dict[Any, Any]) -> dict[str, float]:
        """Signed z-score per feature before learning ``x``, then learn it: :meth:`_residuals`
        and :meth:`_learn` in one pass over the features (this runs for every health report of
        every system: a fifth of the engine's time on the simulator's mix before). Its scoring
        loop is :meth:`_residuals` inlined, and its learning :meth:`_learn`'s: keep them in step
        (``test_seasonal_score_learn_one_is_score_then_learn`` compares the two paths)."""
        tk = self.time_key
        slot = _slot(x[tk], self.utc_offset_hours)
        stats = self._stats
        min_slot = self.min_slot
        floors = self.floors
        default_floor = self.floor
        z: dict[str, float] = {}
        known: list[tuple[list[list[float]] | None, str, float, float]] = []
        checked = 0
        warm = True
        largest = 0.0
        for k, v in x.items():
            if k == tk:
                continue
            rows = stats.get(k)
            floor = floors.get(k, default_floor)
            known.append((rows, k, v, floor))
            if rows is None:
                continue
            checked += 1
            row = rows[slot]
            if row[2] < min_slot:
                warm = False
                row = rows[_SLOTS]
                if row[2] == 0:
                    continue
            dev = row[1] * _MAD_TO_SIGMA
            r = z[k] = (v - row[0]) / (dev if dev > floor else floor)
            if r > largest:
                largest = r
            elif -r > largest:
                largest = -r
        if warm and checked < len(stats):
            # Features of the history that ``x`` lacks count too.
            warm = all(rows[slot][2] >= min_slot for rows in stats.values())
        self.n += 1
        if warm and z and largest > self.threshold:
            self._shift(x, slot)
            return z
        self._shifted.clear()
        alpha = self.alpha
        for rows, k, v, floor in known:
            _learn_rows(rows or self._new_rows(k), slot, v, floor, alpha)
        return z

    def _new_rows(self, feature: str) -> list[list[float]]:
        rows = [[0.0, 0.0, 0.0] for _ in range(_SLOTS + 1)]
        self._stats[feature] = rows
        return rows

    def learn_one(self, x: dict[Any, Any]) -> None:
        slot, z = self._residuals(x)
        self._learn(x, slot, z)

    def _learn(self, x: dict[Any, Any], slot: int, z: dict[str, float]) -> None:
        self.n += 1
        warm = all(rows[slot][2] >= self.min_slot for rows in self._stats.values())
        if warm and z and max(abs(v) for v in z.values()) > self.threshold:
            self._shift(x, slot)
            return
        self._shifted.clear()
        self._update(x, slot)

    def _shift(self, x: dict[Any, Any], slot: int) -> None:
        """A shifted observation is not learned; a long stable run of them is a new normal."""
        self._shifted.append({k: v for k, v in x.items() if k != self.time_key} | {"_s": slot})
        if len(self._shifted) >= self.rebaseline_after:
            self._rebaseline()

    def _update(self, x: dict[Any, Any], slot: int) -> None:
        tk = self.time_key
        alpha = self.alpha
        floors = self.floors
        default_floor = self.floor
        for k, v in x.items():
            if k == tk:
                continue
            rows = self._stats.get(k)
            if rows is None:
                rows = self._new_rows(k)
            _learn_rows(rows, slot, v, floors.get(k, default_floor), alpha)

    def _rebaseline(self) -> None:
        for k, rows in self._stats.items():
            shifts = sorted(
                o[k]
                - (rows[int(o["_s"])] if rows[int(o["_s"])][2] >= self.min_slot else rows[_SLOTS])[
                    0
                ]
                for o in self._shifted
                if k in o
            )
            if not shifts:
                continue
            shift = shifts[len(shifts) // 2]
            for row in rows:
                row[0] += shift
        self._shifted.clear()
        self.rebaselines += 1


def _learn_rows(rows: list[list[float]], slot: int, v: float, floor: float, alpha: float) -> None:
    """Learn ``v`` into its slot's row and the all-hours row: a running mean (weight at least
    ``alpha``) and mean absolute deviation, the residual clipped at 3 deviations (not below the
    floor) once the row has 3 observations."""
    for row in (rows[slot], rows[_SLOTS]):
        n = row[2] + 1
        row[2] = n
        if n == 1:
            row[0] = v
            continue
        w = 1.0 / n
        if w < alpha:
            w = alpha
        r = v - row[0]
        if n > 3:
            lim = row[1] * _MAD_TO_SIGMA
            lim = 3.0 * (lim if lim > floor else floor)
            if r > lim:
                r = lim
            elif r < -lim:
                r = -lim
        row[0] += w * r
        row[1] += w * ((r if r >= 0.0 else -r) - row[1])
