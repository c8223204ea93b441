"""Per-entity alert threshold calibrated to a false-alarm budget on the entity's own scores."""

from __future__ import annotations

__all__ = ["update_quantile"]


def update_quantile(q: float, score: float, budget: float, step: float) -> float:
    """One step of a stochastic-approximation ("frugal") quantile of level ``1 - budget``.

    It keeps one float per entity, where P² needs five markers: at equilibrium a share
    ``budget`` of the scores lies above ``q``. Callers feed only scores they did not flag, so an
    attack does not raise its own bar.
    """
    if score > q:
        return q + step * (1.0 - budget)
    return max(0.0, q - step * budget)
