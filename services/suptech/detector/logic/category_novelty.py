"""Categories an entity never showed before, once it has been watched for a whole cycle."""

from __future__ import annotations

from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots, constructor_settings, set_slots

__all__ = ["CategoryNovelty"]

_WEEK_NS = 7 * 24 * 3600 * 1_000_000_000


class CategoryNovelty(PackedSlots, base.AnomalyDetector):
    """1 for a category the entity never showed, once it has been watched for ``warmup_ns``.

    Categories are small non-negative integers (a combination of channel, data class and
    direction, say), kept as the bits of one integer: an entity that showed 30 of them costs a
    few bytes. ``x`` is ``{"t": event time in ns, "category": c}``. Until ``warmup_ns`` after
    the entity's first event nothing is new (the default covers a week, so a weekly job is seen
    before it could look new); the first time is that of the first event learned.

    Parameters
    ----------
    warmup_ns
        How long an entity is watched before a category can be new for it.

    Examples
    --------
    >>> det = CategoryNovelty(warmup_ns=100)
    >>> det.learn_one({"t": 0, "category": 3})
    >>> det.score_one({"t": 50, "category": 5})  # still warming up
    0.0
    >>> det.learn_one({"t": 60, "category": 5})
    >>> det.score_one({"t": 150, "category": 5}), det.score_one({"t": 150, "category": 9})
    (0.0, 1.0)
    >>> det.seen(3), det.seen(9)
    (True, False)
    """

    __slots__ = ("warmup_ns", "first_ns", "mask")

    def __init__(self, warmup_ns: int = _WEEK_NS) -> None:
        self.warmup_ns = warmup_ns
        #: Time of the first event learned (-1 before).
        self.first_ns = -1
        #: Bit c is set once category c was learned.
        self.mask = 0

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots(self, state, _SETTINGS)

    def warm(self, t_ns: int) -> bool:
        """Watched long enough at ``t_ns`` for a category to be new."""
        return self.first_ns >= 0 and t_ns - self.first_ns >= self.warmup_ns

    def seen(self, category: int) -> bool:
        return bool(self.mask >> category & 1)

    def is_new(self, t_ns: int, category: int) -> bool:
        """:meth:`score_one` without the dict, as a bool."""
        return not self.mask >> category & 1 and self.warm(t_ns)

    def add(self, t_ns: int, category: int) -> None:
        """:meth:`learn_one` without the dict."""
        if self.first_ns < 0:
            self.first_ns = t_ns
        self.mask |= 1 << category

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.add(int(x["t"]), int(x["category"]))

    def score_one(self, x: dict[Any, Any]) -> float:
        return 1.0 if self.is_new(int(x["t"]), int(x["category"])) else 0.0


# Constructor settings: shared between restored instances (slot_state.py).
_SETTINGS = constructor_settings(CategoryNovelty)
