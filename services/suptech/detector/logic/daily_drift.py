"""Long-horizon drift of an entity's daily counts against a reference frozen while a drift
builds up: a few events a day more than usual, for days on end."""

from __future__ import annotations

import math
from array import array
from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots

__all__ = ["DailyDrift"]


class DailyDrift(PackedSlots, base.AnomalyDetector):
    """Poisson CUSUM of daily event counts (exports out of the institution, say) against the
    entity's own rate, working days and rest days apart.

    **Reference.** The daily rate ``r0`` of each kind of day (working day, rest day) is the
    entity's mean count per day of that kind, shrunk by ``prior_days`` pseudo-days towards
    ``prior_rate`` (working days: an entity that has shown nothing yet is not expected to send
    nothing ever) or towards the working-day rate (rest days, seen less often), plus two
    standard deviations of that estimate (a Gamma posterior's): a reference of a few days is
    uncertain, and a rate only guessed low must not read as a drift. It learns the first
    ``reference_days`` working days and the rest days among them, and after that only days on
    which the sum is back at 0: while evidence of a drift builds up the reference is frozen, so
    a thin exfiltration spread over weeks is never learned as normal.

    **Test.** Each day adds the log-likelihood ratio of its count ``x`` under a raised rate
    ``r1 = max(ratio * r0, r0 + shift)`` against ``r0``: ``x * log(r1 / r0) - (r1 - r0)``,
    at most ``h / 2`` (one exceptional day is not a drift: it takes two days at least), and the
    sum never goes below 0. :meth:`score_one` is the sum with ``x`` in it divided by ``h``:
    1 is the alarm, ``h`` nats of evidence that the rate went up (Page's CUSUM; about
    ``exp(h)`` days between false alarms for counts that are Poisson). ``x`` is
    ``{"count": n, "rest": r}``, one day (``r`` true on a rest day), and optionally
    ``"prior": p`` to shrink towards ``p`` rather than ``prior_rate`` (the working-day rate of
    the entity's peers, say). Call :meth:`reset` after an alarm.

    Parameters
    ----------
    ratio
        The raised rate tested is at least this many times the reference...
    shift
        ... and at least this many events a day above it.
    h
        Decision interval, in nats.
    reference_days
        Working days learned before the score is not 0.
    prior_rate
        Daily rate an entity is assumed to have before it has shown any (unless ``x`` says)...
    prior_days
        ... weighted as this many days.

    Examples
    --------
    >>> det = DailyDrift(reference_days=5)
    >>> for x in [0, 1, 0, 0, 1]:  # an employee's exports out of the institution per day
    ...     det.learn_one({"count": x})
    >>> round(det.rate(), 2)
    0.79
    >>> det.score_one({"count": 2}) < 1.0  # one busier day: not a drift
    True
    >>> days = []
    >>> for x in [3, 3, 4, 3, 3]:
    ...     days.append(det.score_one({"count": x}))
    ...     det.learn_one({"count": x})
    >>> days[0] < 1.0 < days[-1]
    True
    >>> round(det.rate(), 2)  # the reference did not follow
    0.79
    """

    __slots__ = ("ratio", "shift", "h", "reference_days", "prior_rate", "prior_days", "_st")

    def __init__(
        self,
        ratio: float = 3.0,
        shift: float = 1.5,
        h: float = 5.0,
        reference_days: int = 5,
        prior_rate: float = 0.5,
        prior_days: float = 3.0,
    ) -> None:
        self.ratio = ratio
        self.shift = shift
        self.h = h
        self.reference_days = reference_days
        self.prior_rate = prior_rate
        self.prior_days = prior_days
        # working days seen, then per kind of day (working, rest): days learned, events on
        # them; then the CUSUM sum
        self._st = array("d", bytes(48))

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    @property
    def n(self) -> int:
        """Working days seen."""
        return int(self._st[0])

    def prime(self, working: int, rest: int) -> None:
        """Start from that many working and rest days without events (those before the
        entity's first one)."""
        st = self._st
        st[0] = st[1] = float(working)
        st[3] = float(rest)
        st[2] = st[4] = st[5] = 0.0

    def rate(self, rest: bool = False, prior: float | None = None) -> float:
        """The reference daily rate of a working day (of a rest day); ``prior`` replaces
        ``prior_rate`` (the rate of the entity's peers, say)."""
        st = self._st
        p = self.prior_rate if prior is None else prior
        if rest:
            p = (p * self.prior_days + st[2]) / (self.prior_days + st[1])
            events = p * self.prior_days + st[4]
            days = self.prior_days + st[3]
        else:
            events = p * self.prior_days + st[2]
            days = self.prior_days + st[1]
        rate = (events + 1.5 * math.sqrt(events)) / days
        return rate if rate > 1e-3 else 1e-3

    def _next(self, x: float, rest: bool, prior: float | None) -> float:
        st = self._st
        if st[0] < self.reference_days:
            return 0.0
        r0 = self.rate(rest, prior)
        r1 = self.ratio * r0
        if r1 < r0 + self.shift:
            r1 = r0 + self.shift
        step = x * math.log(r1 / r0) - (r1 - r0)
        cap = 0.5 * self.h
        if step > cap:
            step = cap
        s = st[5] + step
        return s if s > 0.0 else 0.0

    def score(self, count: float, rest: bool = False, prior: float | None = None) -> float:
        """:meth:`score_one` without the dict."""
        return self._next(count, rest, prior) / self.h

    def learn(self, count: float, rest: bool = False, prior: float | None = None) -> None:
        """:meth:`learn_one` without the dict: one day's count."""
        st = self._st
        s = self._next(count, rest, prior)
        st[5] = s
        reference = st[0] < self.reference_days
        if not rest:
            st[0] += 1.0
        if reference or s == 0.0:
            i = 3 if rest else 1
            st[i] += 1.0
            st[i + 1] += count

    def reset(self) -> None:
        """Start a new sum after an alarm, keeping the reference."""
        self._st[5] = 0.0

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.learn(float(x.get("count", 0.0)), bool(x.get("rest", False)), x.get("prior"))

    def score_one(self, x: dict[Any, Any]) -> float:
        return self.score(float(x.get("count", 0.0)), bool(x.get("rest", False)), x.get("prior"))
