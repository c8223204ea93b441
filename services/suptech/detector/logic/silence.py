"""Silence as a signal: streams whose reports stopped, sources whose heartbeats stopped,
institutions gone quiet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suptech.detector.logic.calendar import InstitutionContext
from suptech.detector.logic.candidate import Candidate
from suptech.detector.logic.config import EngineConfig
from suptech.v1 import findings_pb2

__all__ = ["SilenceWatch"]

Emit = Callable[[Candidate], None]
_S = 1_000_000_000
# Source kinds whose entity is a system (declared windows name systems).
_SYSTEM_KINDS = ("system", "metrics")


class _Source:
    """One stream (posture, sandbox or metrics reports of an entity) and, when the entity has
    its own agent, that agent's heartbeats: two channels, judged apart."""

    __slots__ = (
        "last_ns",
        "interval_s",
        "silent",
        "family",
        "kind",
        "last_event",
        "hb_ns",
        "hb_interval_s",
    )

    def __init__(self, family: int, kind: str) -> None:
        self.last_ns = 0  # last report (or a heartbeat that vouched for the stream)
        self.interval_s = 0
        self.silent = False
        self.family = family
        self.kind = kind
        self.last_event = ""
        self.hb_ns = 0  # last heartbeat of the entity's own agent
        self.hb_interval_s = 0

    def __setstate__(self, state: Any) -> None:
        # Checkpoints from before the heartbeat channel: no heartbeats seen yet.
        self.hb_ns = 0
        self.hb_interval_s = 0
        slots = state[1] if isinstance(state, tuple) else state
        for key, value in (slots or {}).items():
            setattr(self, key, value)


class SilenceWatch:
    """Tracks when each stream was last heard of; :meth:`check` reports the newly silent ones.

    A stream is silent when nothing came from it for ``silence_intervals`` intervals of the
    channel heard last (its reports, or its agent's heartbeats), and also when its reports
    stopped while its heartbeats go on: a heartbeat says the agent lives, not that the reports
    flow (only a heartbeat that names the stream in ``vouches_for`` says that). Inside a
    maintenance or change window the institution declared for the entity, silence is expected:
    it counts from the window's end. A whole institution gone quiet is one finding, not one per
    source.
    """

    context: InstitutionContext | None = None

    def __init__(self, cfg: EngineConfig, context: InstitutionContext | None = None) -> None:
        self.cfg = cfg
        self.context = context
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
        """A report of the stream (or a heartbeat vouching for it)."""
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

    def heartbeat(
        self,
        inst_id: str,
        kind: str,
        source_id: str,
        family: int,
        t: int,
        interval_s: int,
        event_id: str,
    ) -> None:
        """A heartbeat of the source itself (an institution, or an entity's agent)."""
        if kind == "institution":
            self.seen(inst_id, kind, source_id, family, t, interval_s, event_id)
            return
        if kind == "system":
            # An agent that beat before its system's first report was taken for an app.
            ghost = self.sources.get((inst_id, "app", source_id))
            if ghost is not None and ghost.last_ns == 0:
                del self.sources[(inst_id, "app", source_id)]
        key = (inst_id, kind, source_id)
        src = self.sources.get(key)
        if src is None:
            src = self.sources[key] = _Source(family, kind)
        if t >= src.hb_ns:
            src.hb_ns = t
            if not src.last_ns:
                src.last_event = event_id
            if src.hb_ns > src.last_ns and src.last_ns == 0:
                src.silent = False
        if interval_s:
            src.hb_interval_s = interval_s
        self.institution_seen(inst_id, t, event_id)

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

    def _allowed_ns(self, interval_s: int) -> int:
        interval = interval_s or self.cfg.default_heartbeat_interval_s
        return int(self.cfg.silence_intervals * interval * _S)

    def _due(self, src: _Source) -> tuple[int, int]:
        """(time the source is silent from, quiet since)."""
        reports_due = src.last_ns + self._allowed_ns(src.interval_s) if src.last_ns else 0
        if src.hb_ns > src.last_ns:
            heard_due = src.hb_ns + self._allowed_ns(src.hb_interval_s)
            if not src.last_ns:
                return heard_due, src.hb_ns
            # The reports stopped first (the agent may beat on), or everything stopped.
            return min(reports_due, heard_due), src.last_ns
        return reports_due, src.last_ns

    def _declared_end(self, inst_id: str, src: _Source, source_id: str, t0: int, t1: int) -> int:
        """End of a declared window over the entity when its silence began or now (0: none)."""
        ctx = self.context
        if ctx is None or not ctx.windows.get(inst_id):
            return 0
        system = source_id if src.kind in _SYSTEM_KINDS or src.kind == "app" else ""
        end = 0
        for t in (t0, t1):
            wid = ctx.window_at(inst_id, system, src.family, t)
            if wid:
                end = max(end, ctx.windows[inst_id][wid].end_ns)
        return end

    def check(self, wm: int, emit: Emit) -> None:
        silent_insts: set[str] = set()
        allowed = self._allowed_ns
        for inst_id, inst in self.institutions.items():
            if inst.silent or not inst.interval_s or wm - inst.last_ns <= allowed(inst.interval_s):
                continue
            inst.silent = True
            silent_insts.add(inst_id)
            due = inst.last_ns + allowed(inst.interval_s)
            emit(self._candidate(inst_id, "institution", inst_id, inst, wm, due, inst.last_ns))
        # Runs every minute of event time over every source: the common case is inlined.
        k = self.cfg.silence_intervals * _S
        default = self.cfg.default_heartbeat_interval_s
        for (inst_id, kind, source_id), src in self.sources.items():
            if src.silent:
                continue
            last, hb = src.last_ns, src.hb_ns
            if last:
                if wm - last <= k * (src.interval_s or default) and (
                    hb <= last or wm - hb <= k * (src.hb_interval_s or default)
                ):
                    continue
            elif wm - hb <= k * (src.hb_interval_s or default):
                continue
            due, since = self._due(src)
            if wm <= due:
                continue
            declared_end = self._declared_end(inst_id, src, source_id, since, wm)
            if declared_end:
                # Expected while the institution said so: silent only if it stays so after.
                interval = src.interval_s if src.last_ns else src.hb_interval_s
                due = max(due, declared_end + allowed(interval))
                if wm <= due:
                    continue
            src.silent = True
            if inst_id in silent_insts or self.institutions[inst_id].silent:
                continue
            emit(self._candidate(inst_id, kind, source_id, src, wm, due, since))

    def _candidate(
        self,
        inst_id: str,
        kind: str,
        source_id: str,
        src: _Source,
        wm: int,
        due_ns: int,
        since_ns: int,
    ) -> Candidate:
        quiet_s = (wm - since_ns) // _S
        interval = (src.interval_s if since_ns == src.last_ns else src.hb_interval_s) or (
            self.cfg.default_heartbeat_interval_s
        )
        beating = (
            since_ns == src.last_ns
            and src.hb_ns > src.last_ns
            and wm - src.hb_ns <= self._allowed_ns(src.hb_interval_s)
        )
        what = "Institution" if kind == "institution" else kind.capitalize()
        summary = (
            f"{what} {source_id}: reports stopped {quiet_s // 60} minutes ago (expected every "
            f"{interval} s) while its heartbeats go on"
            if beating
            else f"{what} {source_id} silent for {quiet_s // 60} minutes (expected every "
            f"{interval} s)"
        )
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
            summary,
            due_ns,
            [src.last_event],
            [("seconds_silent", float(quiet_s), float(interval), 1.0)],
            basis=f"since{since_ns}",
        )
