"""River's HalfSpaceTrees on min-max scaled features, a secondary model shared per institution."""

from __future__ import annotations

from typing import Any

from river import anomaly, base, preprocessing

__all__ = ["ScaledHalfSpaceTrees"]


class ScaledHalfSpaceTrees(base.AnomalyDetector):
    """``MinMaxScaler | HalfSpaceTrees`` with its settings in ``__init__``.

    HST scores crowd near 1.0 at realistic sizes, so callers threshold it by a quantile of its own
    scores, never by a fixed value; and it learns any burst longer than its window as normal, so
    callers must not feed it points they flagged.

    Examples
    --------
    >>> det = ScaledHalfSpaceTrees(n_trees=5, height=6, window_size=50, seed=1)
    >>> for i in range(300):
    ...     det.learn_one({"a": (i % 10) / 10.0, "b": 0.5})
    >>> det.score_one({"a": 0.5, "b": 0.5}) < det.score_one({"a": 30.0, "b": 9.0})
    True
    """

    def __init__(
        self, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int = 7
    ) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self._model: Any = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )

    def learn_one(self, x: dict[Any, Any]) -> None:
        self._model.learn_one(x)

    def score_one(self, x: dict[Any, Any]) -> float:
        return float(self._model.score_one(x))
