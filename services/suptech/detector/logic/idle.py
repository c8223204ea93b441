"""Which entities have been seen lately, so that state of ones long idle can be forgotten.

A regulator's detector meets actors that leave, systems that are retired and metric streams that
are renamed; keeping each one's models for ever grows the state (and every checkpoint) without
end. Each family touches the key of an entity it models with the event time of each event; once
a day of event time the engine asks for the keys idle longer than ``EngineConfig.idle_evict_ns``
and the family drops their state. An entity that comes back starts learning again, as a new one.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from suptech.detector.logic.config import DAY_NS

__all__ = ["LastSeen"]

K = TypeVar("K", bound=Hashable)


class LastSeen(Generic[K]):
    """Key -> the event-time day it was last seen on.

    >>> seen: LastSeen[str] = LastSeen()
    >>> seen.touch("a", 0); seen.touch("b", 40 * 86_400 * 10**9)
    >>> seen.pop_idle(before_ns=30 * 86_400 * 10**9)
    ['a']
    >>> len(seen)
    1
    """

    __slots__ = ("_day",)

    def __init__(self) -> None:
        self._day: dict[K, int] = {}

    def __len__(self) -> int:
        return len(self._day)

    def touch(self, key: K, t_ns: int) -> None:
        day = t_ns // DAY_NS
        if self._day.get(key, -1) < day:
            self._day[key] = day

    def pop_idle(self, before_ns: int) -> list[K]:
        """Forget and return the keys last seen on a day wholly before ``before_ns``."""
        cutoff = before_ns // DAY_NS
        idle = [key for key, day in self._day.items() if day < cutoff]
        for key in idle:
            del self._day[key]
        return idle
