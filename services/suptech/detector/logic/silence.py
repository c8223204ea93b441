"""Silence as a signal: sources whose heartbeats or reports stopped, institutions gone quiet."""

from __future__ import annotations

from collections.abc import Callable

from suptech.detector.logic.candidate import Candidate
from suptech.detector.logic.config import EngineConfig
from suptech.v1 import findings_pb2

__all__ = ["SilenceWatch"]

Emit = Callable[[Candidate], None]
_S = 1_000_000_000


class _Source:
    __slots__ = ("last_ns", "interval_s", "silent", "family", "kind", "last_event")

    def __init__(self, family: int, kind: str) -> None:
        self.last_ns = 0
        self.interval_s = 0
        self.silent = False
        self.family = family
        self.kind = kind
        self.last_event = ""


class SilenceWatch:
    """Tracks when each source was last heard of; :meth:`check` reports the newly silent ones.

    A whole institution gone quiet is one finding, not one per source.
    """

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.sources: dict[tuple[str, str, str], _Source] = {}
        self.institutions: dict[str, _Source] = {}

    def stats(self) -> dict[str, int]:
        return {"sources": len(self.sources), "institutions": len(self.institutions)}

    def seen(
        self,
        inst_id: str,
        kind: str,
        source_id: str,
        family: int,
        t: int,
        interval_s: int,
        event_id: str,
    ) -> None:
        key = (inst_id, kind, source_id)
        src = self.sources.get(key)
        if src is None:
            src = self.sources[key] = _Source(family, kind)
        if t >= src.last_ns:
            src.last_ns = t
            src.last_event = event_id
            src.silent = False
        if interval_s:
            src.interval_s = interval_s
        # Only the institution's own heartbeat says how often the institution as a whole speaks.
        self.institution_seen(inst_id, t, event_id, interval_s if kind == "institution" else 0)

    def institution_seen(self, inst_id: str, t: int, event_id: str, interval_s: int = 0) -> None:
        inst = self.institutions.get(inst_id)
        if inst is None:
            inst = self.institutions[inst_id] = _Source(findings_pb2.FAMILY_SANDBOX, "institution")
        if t >= inst.last_ns:
            inst.last_ns = t
            inst.last_event = event_id
            inst.silent = False
        if interval_s and (inst.interval_s == 0 or interval_s < inst.interval_s):
            inst.interval_s = interval_s

    def _overdue(self, src: _Source, wm: int) -> bool:
        interval = src.interval_s or self.cfg.default_heartbeat_interval_s
        return wm - src.last_ns > self.cfg.silence_intervals * interval * _S

    def check(self, wm: int, emit: Emit) -> None:
        silent_insts: set[str] = set()
        for inst_id, inst in self.institutions.items():
            if inst.silent or not inst.interval_s or not self._overdue(inst, wm):
                continue
            inst.silent = True
            silent_insts.add(inst_id)
            emit(self._candidate(inst_id, "institution", inst_id, inst, wm))
        for (inst_id, kind, source_id), src in self.sources.items():
            if src.silent or not self._overdue(src, wm):
                continue
            src.silent = True
            if inst_id in silent_insts or self.institutions[inst_id].silent:
                continue
            emit(self._candidate(inst_id, kind, source_id, src, wm))

    def _candidate(
        self, inst_id: str, kind: str, source_id: str, src: _Source, wm: int
    ) -> Candidate:
        quiet_s = (wm - src.last_ns) // _S
        interval = src.interval_s or self.cfg.default_heartbeat_interval_s
        what = "Institution" if kind == "institution" else kind.capitalize()
        return Candidate(
            src.family,
            inst_id,
            kind,
            source_id,
            f"silence.{kind}",
            True,
            float(quiet_s),
            self.cfg.silence_intervals * interval,
            findings_pb2.GRADE_SIGNIFICANT,
            f"{what} {source_id} silent for {quiet_s // 60} minutes (expected every {interval} s)",
            src.last_ns + int(self.cfg.silence_intervals * interval * _S),
            [src.last_event],
            [("seconds_silent", float(quiet_s), float(interval), 1.0)],
            basis=f"since{src.last_ns}",
        )
