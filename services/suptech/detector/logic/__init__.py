"""Detection logic for the three risk families, plain Python (no Kafka, no faust).

The faust agents, the offline replay (``suptech.detector.replay``) and the tests all drive the same
:class:`DetectionEngine`.
"""

from suptech.detector.logic.config import EngineConfig
from suptech.detector.logic.engine import DetectionEngine

__all__ = ["DetectionEngine", "EngineConfig"]
