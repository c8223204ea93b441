"""The detection engine: one object holding every detector's state, driven by event time."""

from __future__ import annotations

import pickle
from typing import Any

from suptech.detector.logic.config import EngineConfig
from suptech.v1 import findings_pb2, sandbox_pb2, telemetry_pb2

__all__ = ["DetectionEngine"]


class DetectionEngine:
    """Feed telemetry with :meth:`process`, move event time with :meth:`advance`.

    Idempotent per ``event_id`` (bounded memory of recent ids); never reads the wall clock.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._events = 0
        self._findings = 0

    def process(self, env: telemetry_pb2.TelemetryEnvelope) -> list[findings_pb2.Finding]:
        self._events += 1
        return []

    def upsert_sandbox_test(self, test: sandbox_pb2.SandboxTest) -> None:
        return None

    def advance(self, event_time_ns: int) -> list[findings_pb2.Finding]:
        return []

    def snapshot(self) -> bytes:
        return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes, config: EngineConfig | None = None) -> DetectionEngine:
        engine = cls(config)
        state: dict[str, Any] = pickle.loads(blob)
        engine.__dict__.update(state)
        if config is not None:
            engine.config = config
        return engine

    def stats(self) -> dict[str, int]:
        return {"events_processed": self._events, "findings_emitted": self._findings}
