"""The evidence of an entity's recent events, carried forward: a session-level tail probability."""

from __future__ import annotations

import math
from typing import Any

from river import base

from suptech.detector.logic.slot_state import PackedSlots, constructor_settings, set_slots

__all__ = ["RecentEvidence"]

# ln K per decay (K = 1 / (1 - exp(-decay))): worked out once, not held by each of 1M actors.
_LN_K: dict[float, float] = {}


def _ln_k(decay: float) -> float:
    lnk = _LN_K.get(decay)
    if lnk is None:
        lnk = _LN_K[decay] = -math.log(-math.expm1(-decay))
    return lnk


class RecentEvidence(PackedSlots, base.AnomalyDetector):
    """How unusual an entity's recent events were, as a calibrated tail probability per event.

    Fed the log tail probability ``log_tail`` (``ln p``, at most 0) that a per-event model gave
    each event of one entity, in order. An intrusion or an exfiltration is a session: the
    accesses around its one glaring event look ordinary on their own, and a per-event score
    ranks them with the entity's routine. Here the evidence of an event, ``e = -ln p`` nats,
    counts for the events that follow it too, less ``decay`` nats per event since, and at most
    ``cap`` nats (a past event lifts what follows it to a tail probability of ``exp(-cap)`` at
    most: the evidence of one absurdly improbable event does not hang over the next hundreds):

        c_t = max(e_t, min(c_{t-1}, cap) - decay)

    The session's tail probability is ``K * exp(-c_t)`` (at most 1) with
    ``K = 1 / (1 - exp(-decay))``: for independent events whose tail probabilities are uniform,
    the chance that some recent event, ``k`` events back, had ``e > c + k * decay`` is at most
    ``sum_k exp(-c - k * decay) = K * exp(-c)``, so the score keeps its meaning ("one in a
    thousand of the entity's normal events" at 0.999) while carrying the session forward.

    Parameters
    ----------
    decay
        Nats of evidence an event's surprise loses per event after it (the tail probability it
        passes on is multiplied by ``exp(decay)`` per event).
    cap
        Most nats of evidence an event passes on to the events after it.

    Examples
    --------
    >>> ev = RecentEvidence()
    >>> for lp in (-0.7, -0.2, -1.1):
    ...     ev.learn_one({"log_tail": lp})
    >>> ev.score_one({"log_tail": -0.5}) < 0.1  # routine after routine
    True
    >>> ev.learn_one({"log_tail": math.log(1e-9)})  # one access far outside the habit
    >>> ordinary = {"log_tail": -0.5}
    >>> ev.score_one(ordinary) > 0.999  # the ordinary-looking access right after it
    True
    >>> for _ in range(20):
    ...     ev.learn_one(ordinary)
    >>> ev.score_one(ordinary) < 0.5  # twenty accesses later, routine again
    True
    """

    __slots__ = ("decay", "cap", "carry")

    def __init__(self, decay: float = 1.0, cap: float = 13.815510557964274) -> None:
        self.decay = decay
        self.cap = cap
        #: Evidence, in nats, carried to the next event.
        self.carry = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        set_slots(self, state, _SETTINGS)

    def _evidence(self, x: dict[Any, Any]) -> float:
        e = -x.get("log_tail", 0.0)
        c = self.carry
        if c > self.cap:
            c = self.cap
        c -= self.decay
        return e if e > c else c

    def log_tail(self, x: dict[Any, Any]) -> float:
        """``ln`` of the session's tail probability at this event (at most 0)."""
        lp = _ln_k(self.decay) - self._evidence(x)
        return lp if lp < 0.0 else 0.0

    def learn_log_tail(self, log_tail: float) -> float:
        """:meth:`learn_one` of ``{"log_tail": log_tail}``; returns what :meth:`log_tail` of it
        was just before (one step for the family, which does both for every access)."""
        e = -log_tail
        c = self.carry
        if c > self.cap:
            c = self.cap
        c -= self.decay
        e = e if e > c else c
        self.carry = e
        lp = _ln_k(self.decay) - e
        return lp if lp < 0.0 else 0.0

    def score_one(self, x: dict[Any, Any]) -> float:
        return -math.expm1(self.log_tail(x))

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.carry = self._evidence(x)


# Constructor settings: shared between restored instances (slot_state.py).
_SETTINGS = constructor_settings(RecentEvidence)
