"""An account spreading to systems it never touched: many new ones within a short window."""

from __future__ import annotations

from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots, constructor_settings, set_slots

__all__ = ["SystemSpread"]

_HOUR_NS = 3600 * 1_000_000_000


class SystemSpread(PackedSlots, base.AnomalyDetector):
    """Distinct systems new to the entity within ``window_ns``, as a share of ``min_new``.

    Systems are small non-negative integers (their index in the institution), kept as the bits
    of one integer. Once the entity has been watched for ``warmup_ns`` (a week by default: a
    weekly task shows its systems), a system it never touched is new; one is a new task, several
    within a day are a spread (lateral movement, a stolen account browsing). ``x`` is
    ``{"t": event time in ns, "system": i}``; :meth:`score_one` is the count of new systems in
    the window with ``x``'s, divided by ``min_new``, so 1 is the alarm.

    Parameters
    ----------
    warmup_ns
        How long an entity is watched before a system can be new for it.
    window_ns
        New systems this close together are counted together.
    min_new
        New systems within the window that make a spread.

    Examples
    --------
    >>> det = SystemSpread(warmup_ns=100, window_ns=50, min_new=2)
    >>> for t, s in [(0, 0), (10, 1), (90, 0)]:
    ...     det.learn_one({"t": t, "system": s})
    >>> det.score_one({"t": 200, "system": 2})  # one new system
    0.5
    >>> det.learn_one({"t": 200, "system": 2})
    >>> det.score_one({"t": 230, "system": 3}), det.score_one({"t": 300, "system": 3})
    (1.0, 0.5)
    """

    __slots__ = ("warmup_ns", "window_ns", "min_new", "first_ns", "mask", "recent")

    def __init__(
        self, warmup_ns: int = 7 * 24 * _HOUR_NS, window_ns: int = 24 * _HOUR_NS, min_new: int = 2
    ) -> None:
        self.warmup_ns = warmup_ns
        self.window_ns = window_ns
        self.min_new = min_new
        #: Time of the first event learned (-1 before).
        self.first_ns = -1
        #: Bit i is set once system i was touched.
        self.mask = 0
        #: Times at which new systems were first touched, within the window of the latest.
        self.recent: tuple[int, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots(self, state, _SETTINGS)

    def known(self, system: int) -> bool:
        return bool(self.mask >> system & 1)

    def score(self, t_ns: int, system: int) -> float:
        """:meth:`score_one` without the dict."""
        if self.mask >> system & 1 or self.first_ns < 0 or t_ns - self.first_ns < self.warmup_ns:
            return 0.0
        since = t_ns - self.window_ns
        return (1 + sum(1 for r in self.recent if r >= since)) / self.min_new

    def add(self, t_ns: int, system: int) -> None:
        """:meth:`learn_one` without the dict."""
        if self.first_ns < 0:
            self.first_ns = t_ns
        if self.mask >> system & 1:
            return
        if t_ns - self.first_ns >= self.warmup_ns:
            since = t_ns - self.window_ns
            self.recent = (*(r for r in self.recent if r >= since), t_ns)
        self.mask |= 1 << system

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.add(int(x["t"]), int(x["system"]))

    def score_one(self, x: dict[Any, Any]) -> float:
        return self.score(int(x["t"]), int(x["system"]))


# Constructor settings: shared between restored instances (slot_state.py).
_SETTINGS = constructor_settings(SystemSpread)
