"""Events per hour of one entity against its own rhythm: the hour of a working day or of a rest
day in the institution's calendar."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots, constructor_settings, set_slots

__all__ = ["SlotRate", "SLOTS"]

#: Calendar slots: local hour on a working day (0-23), local hour on a rest day (24-47).
SLOTS = 48
# Hours of silence filled in as zero-event hours at most (a week).
_MAX_GAP = 168
# A slot's mean is kept as round(log1p(mean) * _SCALE) in 16 bits (a million actors hold 48 of
# them each): relative precision 0.03 %, up to millions of events an hour; _UNSEEN marks a slot
# never observed.
_SCALE = 4096.0
_UNSEEN = 0xFFFF


class SlotRate(PackedSlots, base.AnomalyDetector):
    """How many times this entity's normal rate for the slot the current hour has reached.

    The expected count of a slot (``BusinessCalendar.slot``: the local hour, plus 24 on a rest
    day) is an exponentially weighted mean of the counts of past hours in that slot, quiet hours
    included (they are filled in as zeros when the next event comes, up to a week), so 10:00 on
    a working day is compared with 10:00 on working days, and a make-up Saturday with a Monday.
    A slot never seen is expected as busy as the busiest slot seen, which keeps a new rhythm from
    looking like a burst.

    ``x`` is ``{"hour": h, "slot": s}``: ``h`` the absolute hour of the event (event time in
    hours since the epoch), ``s`` its calendar slot; ``"events": k`` makes it ``k`` events at
    once (an hour's count). :meth:`score_one` is the count of the hour with ``x`` in it divided
    by ``max(min_events, ratio * expected)``: above 1 it is a burst
    (scraping, a runaway script) even when every single access looks ordinary. An hour that went
    over its limit is not learned when it closes, so a burst does not become the normal rate.
    The limit allows for Poisson noise above ``ratio * expected``: three of its standard
    deviations, so a partner whose traffic merely grew is not a burst.

    Parameters
    ----------
    ratio
        Times the slot's expected count that an hour may reach.
    min_events
        An hour with at most this many events is never a burst.
    alpha
        Weight of a new hour in its slot's mean once the slot has been seen (about ``1/alpha``
        days of memory per slot).
    warmup_hours
        Hours with events the entity needs before :meth:`score_one` is not 0.

    Examples
    --------
    >>> det = SlotRate(min_events=10)
    >>> h0 = 500_000  # an absolute hour number
    >>> for day in range(5):
    ...     for hour in range(24):
    ...         busy = 9 <= hour < 18
    ...         for _ in range(6 if busy else 0):
    ...             det.learn_one({"hour": h0 + 24 * day + hour, "slot": hour})
    >>> round(det.expected(10), 2), det.expected(3)
    (6.0, 0.0)
    >>> now = {"hour": h0 + 24 * 5 + 10, "slot": 10}
    >>> for _ in range(12):
    ...     det.learn_one(now)
    >>> det.score_one(now) < 1.0  # twice the usual hour: not a burst
    True
    >>> for _ in range(50):
    ...     det.learn_one(now)
    >>> det.score_one(now) > 1.0  # ten times
    True
    """

    __slots__ = (
        "ratio",
        "min_events",
        "alpha",
        "warmup_hours",
        "hour",
        "slot",
        "count",
        "hours",
        "over",
        "cap",
        "_mean",
    )

    def __init__(
        self,
        ratio: float = 5.0,
        min_events: int = 30,
        alpha: float = 0.2,
        warmup_hours: int = 12,
    ) -> None:
        self.ratio = ratio
        self.min_events = min_events
        self.alpha = alpha
        self.warmup_hours = warmup_hours
        #: Absolute hour being counted (-1 before the first event) and its slot.
        self.hour = -1
        self.slot = 0
        #: Events in that hour so far.
        self.count = 0
        #: Hours with events closed so far.
        self.hours = 0
        # The current hour went over its limit: it is not learned when it closes.
        self.over = False
        #: Events the current hour may hold (infinite until warmed up): the slot's expectation
        #: does not change within an hour, so it is worked out once, when the hour starts.
        self.cap = math.inf
        # Expected events per hour per slot, encoded (see _SCALE).
        self._mean = array("H", [_UNSEEN]) * SLOTS

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots(self, state, _SETTINGS)

    def _observe(self, slot: int, value: float) -> None:
        m = self._mean
        code = m[slot]
        if code != _UNSEEN:
            old = math.expm1(code / _SCALE)
            value = old + self.alpha * (value - old)
        m[slot] = round(math.log1p(value) * _SCALE)

    def _close(self, hour: int, slot: int) -> None:
        """Learn the hour being counted and the quiet hours since, up to ``hour``."""
        if self.hour >= 0:
            if not self.over:
                self._observe(self.slot, float(self.count))
            self.hours += 1
            gap = hour - self.hour - 1
            if gap > _MAX_GAP:
                gap = _MAX_GAP
            # Quiet hours between: on the current event's local day its day type, before it
            # the day type of the last hour counted.
            local = slot % 24
            for k in range(1, gap + 1):
                back = local - k
                s = slot - k if back >= 0 else (self.slot - self.slot % 24) + back % 24
                self._observe(s, 0.0)
        self.hour = hour
        self.slot = slot
        self.count = 0
        self.over = False
        self.cap = self.limit(slot) if self.hours >= self.warmup_hours else math.inf

    def expected(self, slot: int) -> float:
        """Expected events per hour in ``slot`` (the busiest slot's when never seen)."""
        code = self._mean[slot]
        if code == _UNSEEN:
            code = max((c for c in self._mean if c != _UNSEEN), default=0)
        return math.expm1(code / _SCALE)

    def limit(self, slot: int) -> float:
        """Events an hour of ``slot`` may hold before it is a burst."""
        e = self.ratio * self.expected(slot)
        e += 3.0 * math.sqrt(e)
        return e if e > self.min_events else float(self.min_events)

    def add(self, hour: int, slot: int, events: int = 1) -> int:
        """:meth:`learn_one` without the dict; returns the events counted in ``hour`` (an event
        of an hour already closed, a late one, counts for nothing and returns 0)."""
        if hour != self.hour:
            if hour < self.hour:
                return 0
            self._close(hour, slot)
        self.count += events
        return self.count

    def mark_over(self) -> None:
        """Do not learn the current hour (its count went over the limit)."""
        self.over = True

    def ratio_of(self, count: int, slot: int) -> float:
        """``count`` against the limit of ``slot`` (0 until warmed up)."""
        if self.hours < self.warmup_hours:
            return 0.0
        return count / self.limit(slot)

    def share(self, hours: range) -> float:
        """Share of the entity's expected weekly activity in the local ``hours`` (of working and
        rest days alike; a working slot counts five days a week, a rest slot two)."""
        m = self._mean
        total = part = 0.0
        for s in range(SLOTS):
            code = m[s]
            if code and code != _UNSEEN:
                v = math.expm1(code / _SCALE) * (5.0 if s < 24 else 2.0)
                total += v
                if s % 24 in hours:
                    part += v
        return part / total if total > 0.0 else 0.0

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.add(int(x["hour"]), int(x["slot"]), int(x.get("events", 1)))

    def score_one(self, x: dict[Any, Any]) -> float:
        hour = int(x["hour"])
        events = int(x.get("events", 1))
        count = self.count + events if hour == self.hour else events
        return self.ratio_of(count, int(x["slot"]))


# Constructor settings: shared between restored instances (slot_state.py).
_SETTINGS = constructor_settings(SlotRate)
